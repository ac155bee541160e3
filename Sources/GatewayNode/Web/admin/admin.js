// The operators' page: polls GET /api/v1/admin/overview with the shop key and draws it.
// The key lives in this module's scope only: never in a URL, a cookie or web storage, and
// it is dropped on a refusal, on sign out and with the page.

const POLL_MS = 1500;
const SPAN_MS = 5 * 60 * 1000;
const COLORS = ['#2f6fed', '#13804b', '#b25e00', '#8e44ad', '#c2352b', '#0f8b8d', '#6b7280', '#d4a017'];
const SVG = 'http://www.w3.org/2000/svg';

let shopKey = null;
let timer = null;
// Bumped on sign in and out, so an answer to an older session is ignored.
let session = 0;

const $ = (id) => document.getElementById(id);

function setState(state, text) {
  const badge = $('state');
  badge.dataset.state = state;
  badge.textContent = text;
}

function signIn(key) {
  shopKey = key;
  session += 1;
  $('refusal').hidden = true;
  setState('loading', 'loading');
  poll(session);
}

function signOut(state = 'signed-out', text = 'signed out') {
  shopKey = null;
  session += 1;
  clearTimeout(timer);
  $('board').hidden = true;
  $('sign-out').hidden = true;
  $('key-form').hidden = false;
  $('updated').textContent = '';
  setState(state, text);
}

function refuse(message) {
  signOut('refused', 'refused');
  const refusal = $('refusal');
  refusal.textContent = message;
  refusal.hidden = false;
  $('key').focus();
}

// One poll, then the next one while the session lasts, whatever this one met: a body that
// is not the overview (a proxy's page, an answer cut off) or a drawing error shows as an
// error and the page keeps polling, so it recovers by itself.
async function poll(mine) {
  try {
    await pollOnce(mine);
  } catch (e) {
    if (mine === session) setState('error', 'unreadable answer');
  }
  if (mine === session) timer = setTimeout(() => poll(mine), POLL_MS);
}

async function pollOnce(mine) {
  let response;
  try {
    response = await fetch('/api/v1/admin/overview', {
      headers: { Authorization: 'Bearer ' + shopKey }, cache: 'no-store', credentials: 'omit',
    });
  } catch (e) {
    if (mine === session) setState('error', 'gateway unreachable');
    return;
  }
  if (mine !== session) return;
  if (response.status === 401) return refuse('Refused: that is not the shop key.');
  if (response.status === 403) return refuse('Refused: a merchant key cannot open this page; it needs the shop key.');
  if (!response.ok) return setState('error', 'error ' + response.status);
  const overview = await response.json();
  if (mine !== session) return;
  render(overview);
  $('key-form').hidden = true;
  $('board').hidden = false;
  $('sign-out').hidden = false;
  setState('live', 'live');
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}

// MARK: Drawing (textContent only: every name on the page is data)

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function fill(list, items, empty, make) {
  list.replaceChildren(...(items.length ? items.map(make) : [el('li', empty, { class: 'empty' })]));
}

const ago = (nowMs, ms) => Math.max(0, Math.round((nowMs - ms) / 1000)) + ' s ago';
const fixed = (v, digits) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));

function render(o) {
  const nodes = o.nodes || [];
  const live = nodes.filter((n) => n.live);
  $('total-connections').textContent = live.reduce((sum, n) => sum + n.connections, 0);
  $('live-nodes').textContent = live.length;
  $('nodes').replaceChildren(...nodes.map((n) => {
    const row = el('tr', undefined, { 'data-node': n.name, 'data-live': String(n.live) });
    const cells = [
      ['name', n.name], ['state', n.live ? 'live' : 'silent'], ['connections', n.connections],
      ['subscriptions', n.subscriptions], ['channels', n.channels], ['pushes', fixed(n.pushes_per_s, 1)],
      ['p99', n.p99_ms === null ? '–' : fixed(n.p99_ms, 1) + ' ms'],
      ['started', new Date(n.started_ms).toLocaleString()], ['seen', ago(o.now_ms, n.seen_ms)],
    ];
    for (const [field, value] of cells) row.append(el('td', String(value), { 'data-field': field }));
    return row;
  }));

  fill($('channels'), o.channels || [], 'no group or product channel has subscribers', (c) =>
    el('li', `${c.channel} · ${c.subscribers} on ${c.nodes} node${c.nodes === 1 ? '' : 's'}`, { 'data-channel': c.channel }));

  fill($('groups'), o.groups || [], 'no group has subscribers or mutes', (g) => {
    const li = el('li', `${g.group} · ${g.subscribers} subscribers`, { 'data-group': g.group });
    if (g.mutes.length) {
      const mutes = g.mutes.map((m) => `${m.user} until ${new Date(m.until_ms).toLocaleTimeString()}`);
      li.append(el('div', 'muted: ' + mutes.join(', '), { class: 'mutes', 'data-mutes': g.mutes.map((m) => m.user).join(' ') }));
    }
    return li;
  });

  fill($('refunds'), o.refund_required || [], 'none', (p) =>
    el('li', [p.id, p.order && 'order ' + p.order, p.amount !== undefined && `${p.amount} ${p.currency || ''}`].filter(Boolean).join(' · ')));

  const hooks = o.webhooks || { backlog: 0, oldest_seconds: 0 };
  $('webhook-backlog').textContent = hooks.backlog;
  $('webhook-oldest').textContent = fixed(hooks.oldest_seconds, 0) + ' s';
  $('webhook-dead').textContent = hooks.dead || 0;
  fill($('webhook-retrying'), hooks.retrying || [], 'none', (r) => {
    const next = r.in_flight ? 'in flight' : 'next in ' + Math.max(0, Math.round((r.next_attempt_ms - o.now_ms) / 1000)) + ' s';
    return el('li', [r.key, r.type || r.event, `${r.attempts} attempts`, next].join(' · '), { 'data-key': r.key, title: r.event });
  });

  const series = o.series || [];
  const color = new Map(series.map((s, i) => [s.node, COLORS[i % COLORS.length]]));
  const span = { nowMs: o.now_ms, spanMs: SPAN_MS, width: 600, height: 170 };
  drawChart($('chart-pushes'), chartLines(series, 'pushes_per_s', span), color, (v) => v.toFixed(0) + '/s');
  drawChart($('chart-p99'), chartLines(series, 'p99_ms', span), color, (v) => v.toFixed(1) + ' ms');
  $('legend').replaceChildren(...series.map((s) => {
    const item = el('span', s.node + (s.live ? '' : ' (silent)'));
    item.style.setProperty('--swatch', color.get(s.node));
    return item;
  }));
}

// MARK: The chart (no library: one SVG polyline per node)

const PAD = { left: 44, right: 8, top: 10, bottom: 20 };

// A round top for the y axis: 1, 2 or 5 times a power of ten, at least `max`.
function niceTop(max) {
  if (!(max > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(max)));
  return [1, 2, 5, 10].map((m) => m * step).find((v) => v >= max);
}

// Points of `field` within the last `spanMs` before `nowMs`, per node, in plot coordinates.
// Pure: an empty series (or one with no point in the window) gives no lines.
export function chartLines(series, field, { nowMs, spanMs, width, height }) {
  const from = nowMs - spanMs;
  const visible = series.map((s) => ({
    node: s.node,
    points: (s.points || []).filter((p) => p.at_ms >= from && p.at_ms <= nowMs && Number.isFinite(p[field])),
  })).filter((s) => s.points.length > 0);
  const top = niceTop(Math.max(0, ...visible.flatMap((s) => s.points.map((p) => p[field]))));
  const plotW = width - PAD.left - PAD.right, plotH = height - PAD.top - PAD.bottom;
  const x = (at) => PAD.left + ((at - from) / spanMs) * plotW;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  return {
    top,
    lines: visible.map((s) => {
      const xy = s.points.map((p) => [x(p.at_ms).toFixed(1), y(p[field]).toFixed(1)]);
      return { node: s.node, points: xy.map((p) => p.join(',')).join(' '), last: xy[xy.length - 1] };
    }),
  };
}

function drawChart(svg, { top, lines }, color, label) {
  const width = 600, height = 170, bottom = height - PAD.bottom;
  const parts = [];
  const make = (tag, attrs, text) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    parts.push(e);
  };
  make('line', { class: 'axis', x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: bottom });
  make('line', { class: 'axis', x1: PAD.left, y1: bottom, x2: width - PAD.right, y2: bottom });
  make('text', { x: 2, y: PAD.top + 8 }, label(top));
  make('text', { x: 2, y: bottom }, label(0));
  make('text', { x: PAD.left, y: height - 4 }, '5 min ago');
  make('text', { x: width - PAD.right, y: height - 4, 'text-anchor': 'end' }, 'now');
  if (lines.length === 0) {
    make('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'no-data' }, 'no data yet');
  }
  for (const line of lines) {
    const stroke = color.get(line.node) || COLORS[0];
    make('polyline', { points: line.points, stroke, 'data-node': line.node });
    // The latest value as a dot: visible even while a node has a single point.
    make('circle', { cx: line.last[0], cy: line.last[1], r: 3, fill: stroke });
  }
  svg.dataset.empty = String(lines.length === 0);
  svg.replaceChildren(...parts);
}

// MARK: Start

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('key');
  const key = input.value.trim();
  input.value = '';
  if (key) signIn(key);
});
$('sign-out').addEventListener('click', () => signOut());

// For the browser tests: draw an overview as if polled (no key involved).
window.adminPage = { render, chartLines };
