// The demo page: one buyer's view of the shop, live over the gateway. Talks to the
// gateway with the browser client and to the dev-only endpoints (/dev/...) that stand
// in for the shop backend and the payment provider. Card keys are shown on the page
// (from order.get / gift.claim) and never written to the console or the event log.
import { GatewayClient, GatewayError, gatewayURL } from '/client/gateway-client.js';

const $ = (id) => document.getElementById(id);

const S = {
  user: null,
  client: null,
  products: [],
  titles: {},
  orders: new Map(),    // order id -> order fields as last seen (no keys)
  keys: new Map(),      // order id -> keys, shown on the page only
  group: null,          // product id of the joined group
  fp: null,             // last friendpay.view result
  presenceTimer: null,
  events: 0,
  connectedOnce: false, // per sign-in: later connections resume, or say `resync`
  ordersLoad: null,     // the history read in flight, shared by whoever asks meanwhile
  member: null,         // GET /dev/me as last read: {points, level, next_level?}
  alsoBoughtFor: null,  // the product whose "also bought" list is shown or asked for
  holdTimer: null,      // ticks the restock holds' countdowns
  sale: null,           // the flash sale shown: the sale object's fields as last known, plus `buying`
  saleTimer: null,      // ticks its countdown
  saleLooked: false,    // per sign-in: the current demo sale was looked for once
};

const RANK = { pending_payment: 0, canceled: 1, paid: 2, abnormal: 3, delivered: 3, refunded: 4 };
const STATUS_TEXT = {
  pending_payment: 'awaiting payment', paid: 'paid', delivered: 'delivered', canceled: 'canceled',
  refunded: 'refunded', abnormal: 'paid, out of stock',
};

// ---------- helpers ----------

function money(amount, currency) {
  if (typeof amount !== 'number') return '';
  return (amount / 100).toFixed(2) + ' ' + (currency || '');
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function say(id, text, kind) {
  const e = $(id);
  e.textContent = text;
  e.classList.remove('ok', 'error');
  if (kind) e.classList.add(kind);
}

function sayError(id, err) {
  const code = err && err.code ? `${err.code}: ` : '';
  say(id, code + (err && err.message ? err.message : String(err)), 'error');
}

function title(product) { return S.titles[product] || product; }

async function api(method, path, body, auth = true) {
  const headers = { 'Content-Type': 'application/json' };
  if (auth && S.token) headers.Authorization = 'Bearer ' + S.token;
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  let json = null;
  try { json = await res.json(); } catch (e) { /* empty body */ }
  if (!res.ok) {
    const e = (json && json.error) || {};
    throw new GatewayError(e.code || `http_${res.status}`, e.message || res.statusText, { status: res.status });
  }
  return json;
}

function needClient(resultId) {
  if (S.client && S.client.state === 'open') return true;
  say(resultId, S.client ? `not connected (${S.client.state}), try again in a moment` : 'sign in first', 'error');
  return false;
}

// ---------- products ----------

async function loadProducts() {
  try {
    const { products } = await api('GET', '/dev/products', null, false);
    S.products = products;
    const select = $('buy-product');
    const list = $('demo-product-list');
    select.textContent = '';
    list.textContent = '';
    for (const p of products) {
      S.titles[p.id] = p.title;
      const o = el('option', null, `${p.title} — ${money(p.price, p.currency)}`);
      o.value = p.id;
      select.appendChild(o);
      const d = el('option');
      d.value = p.id;
      d.label = p.title;
      list.appendChild(d);
    }
    if (products.length) {
      const first = products[0];
      for (const id of ['group-product', 'watch-product', 'price-product']) if (!$(id).value) $(id).value = first.id;
      if (!$('price-value').value) $('price-value').value = Math.max(0, first.price - 200);
      if (!S.alsoBoughtFor) loadAlsoBought();
    } else {
      // A fresh dev node stocks its demo products a moment after Redis answers.
      setTimeout(loadProducts, 1000);
    }
  } catch (err) {
    const n = $('notice');
    n.hidden = false;
    n.textContent = err.status === 404
      ? 'The dev endpoints are off. Start the gateway with `gateway serve --dev` to use this page.'
      : 'Could not load the demo products: ' + err.message;
  }
}

function updateProductPrice(product, price, currency) {
  const p = S.products.find((x) => x.id === product);
  if (!p) return;
  p.price = price;
  const option = [...$('buy-product').options].find((o) => o.value === product);
  if (option) option.textContent = `${p.title} — ${money(price, currency || p.currency)}`;
}

// ---------- sign in ----------

async function login() {
  const user = $('login-user').value.trim();
  if (!user) return showNotice('Type a user id first.');
  let issued;
  try {
    issued = await api('POST', '/dev/token', { user }, false);
  } catch (err) {
    return showNotice(err.status === 404 ? 'The dev endpoints are off: start the gateway with --dev.' : `Sign-in failed: ${err.message}`);
  }
  hideNotice();
  if (S.client) S.client.close();
  resetUser();
  S.user = issued.user;
  S.token = issued.token;
  $('me').textContent = S.user;
  const client = new GatewayClient(gatewayURL(), {
    token: issued.token,
    getToken: async () => {
      const fresh = await api('POST', '/dev/token', { user: S.user }, false);
      S.token = fresh.token;
      return fresh.token;
    },
    backoff: { base: 300, cap: 5000 },
  });
  S.client = client;
  window.demo.client = client;
  client.addEventListener('state', (e) => showState(e.detail.state));
  client.addEventListener('push', (e) => onPush(e.detail));
  client.addEventListener('connected', (e) => onConnected(e.detail));
  client.addEventListener('resync', (e) => onResync(e.detail));
  client.addEventListener('subscribe_error', (e) => onSubscribeError(e.detail));
  client.addEventListener('closed', (e) => showNotice(e.detail.code === 4010
    ? `Disconnected by the shop: ${e.detail.reason || ''}. Sign in again later.`
    : `Connection closed by the gateway (${e.detail.code}): ${e.detail.reason || ''}. Sign in again.`));
  client.connect();
}

function resetUser() {
  S.orders.clear();
  S.keys.clear();
  S.group = null;
  S.fp = null;
  S.connectedOnce = false;
  S.ordersLoad = null;
  S.sale = null;
  S.saleLooked = false;
  renderSale();
  sayOutcome('', '');
  clearInterval(S.presenceTimer);
  $('orders').textContent = '';
  $('orders').appendChild(el('p', 'empty', 'No orders yet.'));
  $('chat-log').textContent = '';
  $('alerts').textContent = '';
  $('alerts').appendChild(el('p', 'empty', 'No alerts yet.'));
  $('events').textContent = '';
  clearInterval(S.holdTimer);
  S.holdTimer = null;
  S.member = null;
  renderMember(null);
  S.alsoBoughtFor = null;
  $('also-bought').textContent = '';
  $('also-bought-note').textContent = '';
  $('reminders').textContent = '';
  $('reminders').appendChild(el('p', 'empty', 'No reminders.'));
  for (const id of ['member-result', 'buy-result', 'gift-result', 'fp-result', 'chat-result', 'watch-result', 'price-result']) say(id, '');
  $('group-name').textContent = 'not in a group';
  $('group-buyers').textContent = '0 buyers';
  $('group-others').textContent = '';
  $('group-online').textContent = '0';
  $('group-users').textContent = '';
}

function showState(state) {
  const b = $('conn-state');
  b.dataset.state = state;
  b.textContent = state;
}

function showNotice(text) { const n = $('notice'); n.hidden = false; n.textContent = text; }
function hideNotice() { $('notice').hidden = true; }

function onConnected(ok) {
  // A reconnect that could not resume the personal channel also fires `resync`: loadOrders
  // shares one read between the two.
  if (!S.connectedOnce || !ok.recovered) loadOrders();
  S.connectedOnce = true;
  loadMember();
  loadAlsoBought();
  loadHolds();
  if (S.sale) loadSale(S.sale.id);
  else if (!S.saleLooked) findSale();
}

function onResync({ channel }) {
  if (channel === S.client.personalChannel) loadOrders();
  if (S.group && channel === 'group:' + S.group) {
    // The channel's history was lost or trimmed: a new epoch restarts offsets at 1, so the
    // old lines cannot be merged with the new ones by offset.
    $('chat-log').textContent = '';
    loadChatHistory(S.group);
  }
}

/** The group could not be (re)joined, e.g. the order that made us a buyer was refunded. */
function onSubscribeError({ channel, error }) {
  leftGroup(channel, error);
}

/** Out of the group shown: a failed (re)join, or `channel.removed` (a refund took it away). */
function leftGroup(channel, error) {
  if (!S.group || channel !== 'group:' + S.group) return;
  S.group = null;
  clearInterval(S.presenceTimer);
  $('group-name').textContent = 'not in a group';
  sayError('chat-result', error);
}

/** Orders from the personal channel's history (there is no "list my orders" command). */
function loadOrders() {
  if (!S.ordersLoad) {
    const load = S.ordersLoad = readOrders().finally(() => { if (S.ordersLoad === load) S.ordersLoad = null; });
  }
  return S.ordersLoad;
}

async function readOrders() {
  const client = S.client;
  if (!client) return;
  try {
    const page = await client.command('history', { channel: client.personalChannel, limit: 500 });
    const ids = new Set();
    for (const p of page.publications || []) {
      if (p.push === 'membership.expiring' || p.push === 'membership.expired') addReminder(p);
      if (p.push !== 'order.status') continue;
      upsertOrder({ id: p.data.order, product: p.data.product, kind: p.data.kind, status: p.data.status,
        amount: p.data.amount, currency: p.data.currency }, false);
      ids.add(p.data.order);
    }
    for (const id of ids) fetchOrder(id);
  } catch (err) { /* reconnecting: loaded again on the next connect */ }
}

// ---------- orders ----------

/** Merges fields into the order; `live` pushes set the status, older reads only move it forward. */
function upsertOrder(fields, live) {
  const known = S.orders.get(fields.id);
  const order = Object.assign({}, known || {});
  for (const [k, v] of Object.entries(fields)) {
    if (k === 'keys' || v === undefined) continue;
    if (k === 'status' && known && !live && (RANK[v] ?? 0) < (RANK[known.status] ?? 0)) continue;
    order[k] = v;
  }
  S.orders.set(order.id, order);
  renderOrder(order);
  return order;
}

async function fetchOrder(id) {
  if (!S.client) return;
  try {
    const o = await S.client.command('order.get', { order: id });
    if (Array.isArray(o.keys) && o.keys.length) S.keys.set(o.id, o.keys);
    upsertOrder(o, false);
  } catch (err) { /* not ours any more, or reconnecting */ }
}

function renderOrder(order) {
  const box = $('orders');
  const empty = box.querySelector('.empty');
  if (empty) empty.remove();
  let card = box.querySelector(`[data-order-id="${CSS.escape(order.id)}"]`);
  if (!card) {
    card = el('div', 'order');
    card.dataset.orderId = order.id;
    box.prepend(card);
  }
  card.dataset.status = order.status || 'pending_payment';
  card.textContent = '';

  const line = el('div', 'line');
  line.appendChild(el('span', 'title', title(order.product)));
  line.appendChild(el('span', 'status-text', STATUS_TEXT[order.status] || order.status));
  card.appendChild(line);

  const who = [];
  if (order.kind === 'gift') who.push(order.buyer === S.user ? `gift${order.gift && order.gift.to ? ' for ' + order.gift.to : ''}` : `gift from ${order.buyer}`);
  if (order.kind === 'friendpay') who.push(order.buyer === S.user ? `friend pay${order.friend ? ' asked of ' + order.friend : ''}` : `you pay for ${order.buyer}`);
  if (order.paid_by && order.paid_by !== S.user) who.push(`paid by ${order.paid_by}`);
  if (order.sale) who.push(`flash sale ${order.sale}`);
  if (order.gift && order.gift.status && order.gift.status !== 'pending') who.push(`gift ${order.gift.status}`);
  card.appendChild(el('div', 'meta', [order.id, money(order.amount, order.currency), ...who].filter(Boolean).join(' · ')));

  if (order.gift && order.gift.code && order.buyer === S.user) {
    const g = el('div', 'meta');
    g.append('gift code: ');
    g.appendChild(el('span', 'code gift-code', order.gift.code));
    card.appendChild(g);
  }
  if (order.pay_code) {
    const f = el('div', 'meta');
    f.append('pay code for your friend: ');
    f.appendChild(el('span', 'code pay-code', order.pay_code));
    card.appendChild(f);
  }
  const keys = S.keys.get(order.id);
  if (keys && order.status === 'delivered') {
    card.appendChild(el('div', 'keys', 'card key' + (keys.length > 1 ? 's' : '') + ': ' + keys.join('  ')));
  }
  if (order.note) card.appendChild(el('div', 'meta note', order.note));
  if (order.status === 'pending_payment') {
    const b = el('button', null, order.kind === 'friendpay' && order.buyer === S.user ? 'Pay it myself (sandbox)' : 'Pay (sandbox)');
    b.type = 'button';
    b.dataset.pay = order.id;
    card.appendChild(b);
  }
}

async function payOrder(id, button) {
  if (button) button.disabled = true;
  try {
    const r = await api('POST', '/dev/pay', { order: id });
    upsertOrder(r.order, false);
  } catch (err) {
    const o = S.orders.get(id);
    if (o) { o.note = `payment failed: ${err.code}: ${err.message}`; renderOrder(o); }
    if (button) button.disabled = false;
  }
}

async function buy() {
  const product = $('buy-product').value;
  const kind = $('buy-kind').value || 'normal';
  const to = $('buy-to').value.trim();
  if (!S.token) return say('buy-result', 'sign in first', 'error');
  if (!product) return say('buy-result', 'choose a product', 'error');
  const body = { product, kind };
  if (kind === 'gift') body.gift = to ? { to } : {};
  if (kind === 'friendpay') body.friendpay = to ? { to } : {};
  try {
    const order = await api('POST', '/dev/orders', body);
    upsertOrder(order, false);
    if (kind === 'gift') say('buy-result', `Gift order ${order.id} created. Pay it; then ${to || 'whoever has the code'} can claim it with ${order.gift.code}.`, 'ok');
    else if (kind === 'friendpay') say('buy-result', `Pay request ${order.id} created. Give your friend the pay code ${order.pay_code}.`, 'ok');
    else say('buy-result', `Order ${order.id} created: pay it below.`, 'ok');
  } catch (err) { sayError('buy-result', err); }
}

// ---------- gifts and friend pay ----------

async function claimGift() {
  const code = $('gift-code').value.trim();
  if (!code) return say('gift-result', 'enter a gift code', 'error');
  if (!needClient('gift-result')) return;
  try {
    const o = await S.client.command('gift.claim', { code });
    if (Array.isArray(o.keys) && o.keys.length) S.keys.set(o.id, o.keys);
    upsertOrder(o, false);
    say('gift-result', `Claimed ${title(o.product)} (${o.id}) — it is yours now; the key is in My orders.`, 'ok');
  } catch (err) { sayError('gift-result', err); }
}

async function viewPayRequest() {
  const code = $('fp-code').value.trim();
  if (!code) { say('fp-result', 'enter a pay code', 'error'); return null; }
  if (!needClient('fp-result')) return null;
  try {
    const v = await S.client.command('friendpay.view', { code });
    S.fp = Object.assign({ code }, v);
    say('fp-result', `${v.requester} asks you to pay ${money(v.amount, v.currency)} for ${v.title} (${v.order}), status ${STATUS_TEXT[v.status] || v.status}.`, 'ok');
    return S.fp;
  } catch (err) { S.fp = null; sayError('fp-result', err); return null; }
}

async function payForFriend() {
  const code = $('fp-code').value.trim();
  let v = S.fp && S.fp.code === code ? S.fp : await viewPayRequest();
  if (!v) return;
  try {
    const r = await api('POST', '/dev/pay', { order: v.order });
    const refunded = r.payment && r.payment.status === 'refunded';
    say('fp-result', refunded
      ? `Someone paid first: your payment ${r.payment.id} was refunded.`
      : `Paid ${money(r.payment.amount, r.payment.currency)} for ${v.requester}: order ${r.order.id} is ${STATUS_TEXT[r.order.status] || r.order.status}.`,
    refunded ? 'error' : 'ok');
  } catch (err) { sayError('fp-result', err); }
}

// ---------- group chat ----------

async function joinGroup() {
  const product = $('group-product').value.trim();
  if (!product) return say('chat-result', 'enter a product id', 'error');
  if (!needClient('chat-result')) return;
  const client = S.client;
  if (S.group && S.group !== product) {
    const old = S.group;
    client.unsubscribe('group:' + old).catch(() => {});
    client.unsubscribe('product:' + old).catch(() => {});
  }
  S.group = product;
  $('chat-log').textContent = '';
  $('group-name').textContent = 'group:' + product;
  say('chat-result', 'joining…');
  try {
    await client.subscribe('group:' + product);
  } catch (err) {
    if (S.group === product) S.group = null;
    $('group-name').textContent = 'not in a group';
    return say('chat-result', err.code === 'forbidden' ? `Only buyers of ${product} may join: buy it and pay first. (${err.message})` : `${err.code}: ${err.message}`, 'error');
  }
  say('chat-result', `You are in the group of ${title(product)}. Ask something like “how do I activate it?” — the shop's bot answers.`, 'ok');
  client.subscribe('product:' + product).catch(() => {});
  await loadChatHistory(product);
  refreshPresence();
  clearInterval(S.presenceTimer);
  S.presenceTimer = setInterval(refreshPresence, 5000);
}

async function loadChatHistory(product) {
  try {
    const page = await S.client.command('history', { channel: 'group:' + product, limit: 50 });
    if (S.group !== product) return;
    for (const p of page.publications || []) showGroupPush(p);
  } catch (err) { /* shown live anyway */ }
}

async function refreshPresence() {
  const product = S.group;
  if (!product || !S.client || S.client.state !== 'open') return;
  try {
    const p = await S.client.command('presence', { channel: 'group:' + product });
    if (S.group !== product) return;
    showBuyers(p.buyers);
    $('group-online').textContent = String(p.online);
    $('group-users').textContent = p.users && p.users.length ? '(' + p.users.join(', ') + ')' : '';
  } catch (err) { /* try again on the next tick */ }
}

function showBuyers(n) {
  $('group-buyers').textContent = `${n} buyer${n === 1 ? '' : 's'}`;
  const others = Math.max(0, n - 1);
  $('group-others').textContent = ` · ${others} other${others === 1 ? '' : 's'} bought this`;
}

function showGroupPush(p) {
  if (!S.group || p.channel !== 'group:' + S.group) return;
  if (p.push === 'group.message') addChat(p);
  if (p.push === 'group.deleted') {
    const m = $('chat-log').querySelector(`.chat-msg[data-epoch="${CSS.escape(p.epoch || '')}"][data-offset="${p.data.offset}"]`);
    if (m) m.classList.add('deleted');
  }
}

function addChat(p) {
  const log = $('chat-log');
  // Keyed by epoch and offset: a group whose history was recreated starts again at offset 1.
  const epoch = p.epoch || '';
  if (log.querySelector(`.chat-msg[data-epoch="${CSS.escape(epoch)}"][data-offset="${p.offset}"]`)) return;
  const d = p.data || {};
  const m = el('div', 'chat-msg');
  m.dataset.offset = String(p.offset);
  m.dataset.epoch = epoch;
  if (d.from === S.user) m.classList.add('mine');
  if (d.role === 'bot') m.classList.add('bot');
  if (d.reply_to) {
    const q = log.querySelector(`.chat-msg[data-epoch="${CSS.escape(epoch)}"][data-offset="${d.reply_to}"] .chat-text`);
    m.appendChild(el('span', 'quote', '↪ ' + (q ? q.textContent.slice(0, 80) : `#${d.reply_to}`)));
  }
  m.appendChild(el('span', 'chat-from', (d.name || d.from) + (d.role && d.role !== 'buyer' ? ` (${d.role})` : '')));
  m.appendChild(el('span', 'chat-text', d.text));
  let before = null;
  for (const c of log.children) { if (Number(c.dataset.offset) > p.offset) { before = c; break; } }
  log.insertBefore(m, before);
  log.scrollTop = log.scrollHeight;
}

async function sendChat() {
  const text = $('chat-input').value.trim();
  if (!S.group) return say('chat-result', 'join a group first', 'error');
  if (!text) return;
  if (!needClient('chat-result')) return;
  try {
    await S.client.command('publish', { channel: 'group:' + S.group, data: { text } });
    $('chat-input').value = '';
    say('chat-result', '');
  } catch (err) {
    if (err.code === 'rate_limited') say('chat-result', `Slow down: try again in ${Math.ceil((err.retry_after_ms || 1000) / 1000)} s.`, 'error');
    else sayError('chat-result', err);
  }
}

// ---------- watches and prices ----------

/** The watch form's fields, or null once it said what is wrong. */
function watchFields() {
  const product = $('watch-product').value.trim();
  if (!product) { say('watch-result', 'enter a product id', 'error'); return null; }
  if (!needClient('watch-result')) return null;
  const fields = { product };
  const belowText = String($('watch-below').value).trim();
  if (belowText) {
    const below = Number(belowText);
    if (!Number.isInteger(below) || below <= 0) {
      say('watch-result', 'the threshold is a whole number of cents above 0', 'error');
      return null;
    }
    fields.below = below;
  }
  return fields;
}

async function watch() {
  const fields = watchFields();
  if (!fields) return;
  try {
    const r = await S.client.command('watch', fields);
    const currency = (S.products.find((x) => x.id === r.product) || {}).currency || '';
    say('watch-result', `Watching ${title(r.product)}: now ${money(r.price, currency)}, alert below ${money(r.below, currency)}.`, 'ok');
  } catch (err) { sayError('watch-result', err); }
}

async function setPrice() {
  const product = $('price-product').value.trim();
  const price = Number(String($('price-value').value).trim());
  if (!product) return say('price-result', 'enter a product id', 'error');
  if (!S.token) return say('price-result', 'sign in first', 'error');
  if (!Number.isInteger(price) || price < 0) return say('price-result', 'the price is a whole number of cents', 'error');
  try {
    const p = await api('POST', '/dev/price', { product, price });
    updateProductPrice(p.id, p.price, p.currency);
    say('price-result', `${p.title} now costs ${money(p.price, p.currency)}; ${p.watchers} watching.`, 'ok');
  } catch (err) { sayError('price-result', err); }
}

function addAlert(p) {
  const d = p.data || {};
  const box = $('alerts');
  const empty = box.querySelector('.empty');
  if (empty) empty.remove();
  const a = el('div', 'alert', `Price drop: ${d.title || d.product} ${money(d.previous, d.currency)} → ${money(d.price, d.currency)}` +
    (d.below ? ` (your alert: below ${money(d.below, d.currency)})` : ''));
  a.dataset.product = d.product || '';
  a.dataset.price = String(d.price);
  box.prepend(a);
}

// ---------- restock holds ----------

/** A restock watch (`watch` with `restock:true`); it is also the product's price watch. */
async function watchRestock() {
  const fields = watchFields();
  if (!fields) return;
  fields.restock = true;
  try {
    const r = await S.client.command('watch', fields);
    // A gateway without restock alerts answers a plain price watch.
    if (r.restock !== true) return say('watch-result', `Watching the price of ${title(r.product)}; this gateway does not send restock alerts.`, 'error');
    say('watch-result', `You will be told when ${title(r.product)} is back in stock; the first in line get a key held for them.`, 'ok');
  } catch (err) { sayError('watch-result', err); }
}

/** `product.restock`: back in stock, with a countdown and a buy button when a key is held for us. */
function addRestockAlert(d) {
  const box = $('alerts');
  const empty = box.querySelector('.empty');
  if (empty) empty.remove();
  for (const old of box.querySelectorAll('.alert[data-restock]')) if (old.dataset.product === d.product) old.remove();
  const a = el('div', 'alert restock');
  a.dataset.restock = '1';
  a.dataset.product = d.product || '';
  const stock = typeof d.stock === 'number' ? ` · ${d.stock} for everyone` : '';
  a.appendChild(el('span', 'text', `Back in stock: ${d.title || title(d.product)} at ${money(d.price, d.currency)}${stock}. `));
  const until = d.hold && typeof d.hold.until === 'number' ? d.hold.until : null;
  if (until !== null) {
    a.dataset.holdUntil = String(until);
    a.dataset.holdState = 'held';
    a.appendChild(el('span', 'hold', 'A key is held for you for '));
    const c = el('span', 'countdown');
    c.setAttribute('role', 'timer');
    a.appendChild(c);
    const b = el('button', null, 'Buy it now');
    b.type = 'button';
    b.dataset.buyHeld = d.product || '';
    a.appendChild(b);
  }
  box.prepend(a);
  tickHolds();
  if (until !== null && !S.holdTimer) S.holdTimer = setInterval(tickHolds, 1000);
}

function tickHolds() {
  let live = 0;
  for (const a of $('alerts').querySelectorAll('.alert[data-hold-state="held"]')) {
    const left = Number(a.dataset.holdUntil) - Date.now();
    const c = a.querySelector('.countdown');
    if (left > 0) {
      live++;
      const s = Math.ceil(left / 1000);
      c.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
      continue;
    }
    a.dataset.holdState = 'expired';
    a.querySelector('.hold').textContent = 'Your hold has run out: the key went back to stock.';
    c.remove();
    const b = a.querySelector('button[data-buy-held]');
    if (b) b.remove();
  }
  if (!live) { clearInterval(S.holdTimer); S.holdTimer = null; }
}

/** An order against our hold: the held key is ours until the hold ends (contract 4.6). */
async function buyHeld(product, button) {
  button.disabled = true;
  try {
    const order = await api('POST', '/dev/orders', { product, kind: 'normal' });
    upsertOrder(order, false);
    const a = button.closest('.alert');
    button.remove();
    if (a) a.dataset.holdState = 'ordered';
    say('buy-result', `Order ${order.id} created against your hold: pay it below.`, 'ok');
  } catch (err) {
    button.disabled = false;
    sayError('buy-result', err);
  }
}

/** After a reload: holds still running, from the `watches` list. */
async function loadHolds() {
  const client = S.client;
  if (!client) return;
  try {
    const { watches } = await client.command('watches', {});
    for (const w of watches || []) {
      if (!w.hold || typeof w.hold.until !== 'number' || w.hold.until <= Date.now()) continue;
      if ($('alerts').querySelector(`.alert[data-restock][data-product="${CSS.escape(w.product)}"]`)) continue;
      const p = S.products.find((x) => x.id === w.product) || {};
      addRestockAlert({ product: w.product, title: title(w.product), price: w.price, currency: p.currency, hold: w.hold });
    }
  } catch (err) { /* the pushes still come */ }
}

// ---------- flash sale ----------

const SALE_STATUS = { scheduled: 'starts soon', open: 'on now', sold_out: 'sold out', closed: 'ended' };

/** The sale to show after sign-in: `?sale=` or the dev node's latest demo sale, if it is still on. */
async function findSale() {
  S.saleLooked = true;
  const asked = new URLSearchParams(location.search).get('sale');
  if (asked) return watchSale(asked);
  try {
    const sale = await api('GET', '/dev/sales', null, false);
    if (sale && sale.state !== 'closed' && !S.sale) watchSale(sale.id);
  } catch (err) { /* no demo sale: the card waits for one */ }
}

/** Shows sale `id`: subscribes to its channel first, so no push falls between the read and the live ones. */
async function watchSale(id) {
  id = String(id || '').trim();
  if (!id) return say('sale-result', 'enter a sale id', 'error');
  if (!needClient('sale-result')) return;
  const client = S.client;
  if (S.sale && S.sale.id !== id) client.unsubscribe('sale:' + S.sale.id).catch(() => {});
  if (!S.sale || S.sale.id !== id) S.sale = { id, state: '', remaining: null, buying: false, pushes: 0 };
  $('sale-id').value = id;
  sayOutcome('', '');
  renderSale();
  try {
    await client.subscribe('sale:' + id);
  } catch (err) {
    if (S.sale && S.sale.id === id) { S.sale = null; renderSale(); }
    return sayOutcome('unknown', err.code === 'not_found' ? `No sale ${id}.` : `${err.code}: ${err.message}`, 'error');
  }
  await loadSale(id);
}

/** The sale as it stands (also after a reload or a reconnect, when its pushes may be long past). */
async function loadSale(id) {
  const pushes = S.sale.pushes;
  try {
    const sale = await api('GET', '/dev/sales/' + encodeURIComponent(id), null, false);
    if (S.sale && S.sale.id === id) applySale(sale, pushes);
  } catch (err) {
    if (S.sale && S.sale.id === id) sayError('sale-result', err);
  }
}

/**
 * A read of the sale. A push that came while it was out may be older than the read, but every
 * later change pushes again (the last `sale.stock` always goes out): the pushes' counts and
 * state win, while the read's may be older than the last push (e.g. `sale.sold_out`, never followed).
 */
function applySale(sale, pushesBefore) {
  const shown = S.sale;
  const keep = {};
  if (shown.pushes !== pushesBefore) {
    if (shown.state) keep.state = shown.state;
    if (typeof shown.remaining === 'number') keep.remaining = shown.remaining;
  }
  Object.assign(shown, sale, keep, { buying: shown.buying, pushes: shown.pushes });
  renderSale();
}

/** A push on `sale:<id>`: the live state. */
function onSalePush(p) {
  const sale = S.sale;
  const d = p.data || {};
  if (!sale || p.channel !== 'sale:' + sale.id) return;
  if (typeof d.remaining === 'number') sale.remaining = d.remaining;
  if (p.push !== 'sale.countdown') sale.pushes++;
  switch (p.push) {
    case 'sale.countdown':
      if (S.client) S.client.refineClock(d.server_time);
      if (typeof d.starts_at === 'number') sale.starts_at = d.starts_at;
      break;
    case 'sale.open':
      sale.starts_at = d.starts_at ?? sale.starts_at;
      sale.ends_at = d.ends_at ?? sale.ends_at;
      if (sale.state !== 'closed') sale.state = d.remaining === 0 ? 'sold_out' : 'open';
      break;
    case 'sale.stock':
      // Only an open sale's stock moves (a page that missed sale.open learns it here).
      if (sale.state !== 'closed') sale.state = d.remaining === 0 ? 'sold_out' : 'open';
      break;
    case 'sale.sold_out':
      if (sale.state !== 'closed') sale.state = 'sold_out';
      break;
    case 'sale.closed':
      sale.state = 'closed';
      sale.closed_reason = d.reason;
      break;
    default:
      return;
  }
  renderSale();
}

function renderSale() {
  const sale = S.sale;
  const box = $('sale');
  box.hidden = !sale;
  if (!sale) {
    clearInterval(S.saleTimer);
    S.saleTimer = null;
    return;
  }
  box.dataset.state = sale.state || '';
  $('sale-title').textContent = sale.title || title(sale.product) || sale.id;
  $('sale-price').textContent = typeof sale.price === 'number' ? `at ${money(sale.price, sale.currency)}` +
    (sale.per_user ? ` · at most ${sale.per_user} per buyer` : '') : '';
  $('sale-status').textContent = sale.state === 'closed' && sale.closed_reason === 'closed' ? 'closed by the shop' : (SALE_STATUS[sale.state] || 'loading…');
  const left = $('sale-left');
  left.dataset.left = typeof sale.remaining === 'number' ? String(sale.remaining) : '';
  left.textContent = typeof sale.remaining === 'number' ? `${sale.remaining} left` + (sale.quantity ? ` of ${sale.quantity}` : '') : '–';
  // Only the gateway opens the sale (sale.open, or a read saying it is open): never the local countdown.
  // Sold out stays pressable: an unpaid order's units come back when its time runs out.
  const b = $('sale-buy');
  b.disabled = sale.buying || !(sale.state === 'open' || sale.state === 'sold_out');
  b.textContent = sale.state === 'sold_out' ? 'Sold out · try anyway' : sale.state === 'open' ? 'Buy now' : 'Buy';
  tickSale();
  if (!S.saleTimer && sale.state !== 'closed') S.saleTimer = setInterval(tickSale, 250);
}

/** The countdown, on the server's clock (the connect reply's `server_time`, refined by `sale.countdown`). */
function tickSale() {
  const sale = S.sale;
  const c = $('sale-countdown');
  if (!sale || typeof sale.starts_at !== 'number' || sale.state === 'closed') {
    c.textContent = '';
    c.dataset.leftMs = '';
    if (sale && sale.state === 'closed') { clearInterval(S.saleTimer); S.saleTimer = null; }
    return;
  }
  const now = S.client ? S.client.serverNow() : Date.now();
  const opening = sale.state === 'scheduled' || sale.state === '';
  const left = Math.max(0, (opening ? sale.starts_at : sale.ends_at) - now);
  c.dataset.leftMs = String(Math.round(left));
  const s = Math.ceil(left / 1000);
  const clock = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  c.textContent = opening ? (left > 0 ? `opens in ${clock}` : 'opening…') : `ends in ${clock}`;
}

/** One `sale.buy`; the answer is the order (pay it in My orders) or why not. */
async function buySale() {
  const sale = S.sale;
  if (!sale || !needClient('sale-result')) return;
  sale.buying = true;
  renderSale();
  try {
    const order = await S.client.command('sale.buy', { sale: sale.id, quantity: 1 });
    upsertOrder(order, false);
    const until = typeof order.expires_at === 'number' ? ` before ${new Date(order.expires_at).toLocaleTimeString()}` : '';
    sayOutcome('ordered', `You got one: order ${order.id} at ${money(order.amount, order.currency)}. Pay it in My orders${until}, or it goes back to the sale.`, 'ok');
  } catch (err) {
    const [outcome, text] = saleRefusal(err);
    sayOutcome(outcome, text, 'error');
  } finally {
    sale.buying = false;
    renderSale();
  }
}

/** A refused `sale.buy` (contract 4.8): what it means for the buyer. */
function saleRefusal(err) {
  const message = err.message || '';
  switch (err.code) {
    case 'conflict':
      return /sold out/i.test(message) ? ['sold_out', 'Sold out: every unit is taken. Unpaid ones come back when their time runs out.']
        : ['short', `Not enough left: ${message}.`];
    case 'bad_request':
      if (typeof err.retry_after_ms === 'number') return ['too_early', `Too early: the sale opens in ${Math.ceil(err.retry_after_ms / 1000)} s.`];
      return ['error', `${err.code}: ${message}`];
    case 'forbidden': return ['over_limit', `Over the limit: ${message}.`];
    case 'gone': return ['ended', 'The sale has ended.'];
    case 'not_found': return ['unknown', `No such sale: ${message}.`];
    default: return ['error', `${err.code}: ${message}`];
  }
}

function sayOutcome(outcome, text, kind) {
  say('sale-result', text, kind);
  $('sale-result').dataset.outcome = outcome;
}

/** `POST /dev/sales`: a demo sale 30 s ahead, then shown here. */
async function scheduleSale() {
  if (!needClient('sale-result')) return;
  try {
    const sale = await api('POST', '/dev/sales', {}, false);
    say('sale-result', `Sale ${sale.id} scheduled: ${sale.quantity} × ${sale.title} at ${money(sale.price, sale.currency)}.`, 'ok');
    await watchSale(sale.id);
  } catch (err) { sayError('sale-result', err); }
}

// ---------- level and points ----------

async function loadMember() {
  if (!S.token) return;
  const user = S.user;
  try {
    const u = await api('GET', '/dev/me');
    if (S.user !== user) return;
    S.member = u;
    renderMember(u);
  } catch (err) {
    if (S.user === user) sayError('member-result', err);
  }
}

function renderMember(u) {
  const level = $('level'), points = $('points'), next = $('next-level');
  level.dataset.level = u && u.level ? u.level : '';
  level.textContent = u ? (u.level || 'no level yet') : 'no level yet';
  points.dataset.points = u ? String(u.points) : '';
  points.textContent = u ? String(u.points) : '–';
  if (!u) next.textContent = '–';
  else if (u.next_level) next.textContent = `${u.next_level.name} at ${u.next_level.min_points} points (${Math.max(0, u.next_level.min_points - u.points)} to go)`;
  else next.textContent = u.level ? 'you are at the top level' : 'the shop has no levels';
}

/** `member.level`: shown at once, then read again for the next level. */
function showLevelChange(d) {
  S.member = Object.assign({}, S.member || {}, { level: d.level, points: d.points });
  renderMember(S.member);
  say('member-result', d.level ? `You are now ${d.level}${d.previous ? ` (was ${d.previous})` : ''}.`
    : `You no longer have a level (was ${d.previous}).`, 'ok');
  loadMember();
}

// ---------- also bought ----------

/** "Buyers of this also bought" for the product chosen in the Buy card (WS `also_bought`). */
async function loadAlsoBought() {
  const product = $('buy-product').value;
  const client = S.client;
  if (!product || !client || client.state !== 'open') return;
  S.alsoBoughtFor = product;
  try {
    const r = await client.command('also_bought', { product, limit: 5 });
    if (S.alsoBoughtFor !== product) return;
    const list = $('also-bought');
    list.textContent = '';
    for (const x of r.also_bought || []) {
      const li = el('li', null, `${x.title || title(x.product)} — ${money(x.price, x.currency)} · ${x.buyers} buyer${x.buyers === 1 ? '' : 's'}`);
      li.dataset.product = x.product;
      li.dataset.buyers = String(x.buyers);
      list.appendChild(li);
    }
    $('also-bought-note').textContent = list.children.length ? '' : `No other purchases by buyers of ${title(product)} yet.`;
  } catch (err) {
    if (S.alsoBoughtFor !== product) return;
    $('also-bought').textContent = '';
    $('also-bought-note').textContent = `Recommendations are not available (${err.code || 'error'}).`;
  }
}

// ---------- membership reminders ----------

/** `membership.expiring` / `membership.expired`, live or from the personal channel's history. */
function addReminder(p) {
  const d = p.data || {};
  const box = $('reminders');
  const key = `${p.push}/${d.product}/${d.ends_at}`;
  if ([...box.querySelectorAll('.reminder')].some((r) => r.dataset.key === key)) return;
  const empty = box.querySelector('.empty');
  if (empty) empty.remove();
  const ends = typeof d.ends_at === 'number' ? new Date(d.ends_at).toLocaleString() : 'unknown';
  const r = el('div', 'reminder', p.push === 'membership.expired'
    ? `Your membership of ${title(d.product)} ended on ${ends}. Buy it again to renew.`
    : `Your membership of ${title(d.product)} ends on ${ends}. Buy it again to extend it from that day.`);
  r.dataset.key = key;
  r.dataset.type = p.push;
  r.dataset.product = d.product || '';
  box.prepend(r);
}

// ---------- pushes ----------

function logEvent(p) {
  const box = $('events');
  const e = el('div', 'event');
  e.dataset.type = p.push;
  e.dataset.channel = p.channel || '';
  if (typeof p.offset === 'number') e.dataset.offset = String(p.offset);
  const time = new Date(p.ts || Date.now()).toLocaleTimeString();
  e.appendChild(el('span', 'time', time + ' '));
  e.appendChild(el('span', 'type', p.push));
  e.appendChild(el('span', 'chan', ` ${p.channel || ''} #${p.offset ?? ''} `));
  e.appendChild(el('span', 'data', JSON.stringify(p.data)));
  box.prepend(e);
  S.events++;
  while (box.children.length > 300) box.lastElementChild.remove();
}

function onPush(p) {
  logEvent(p);
  const d = p.data || {};
  if (p.push.startsWith('sale.')) return onSalePush(p);
  switch (p.push) {
    case 'order.status': {
      const o = upsertOrder({ id: d.order, product: d.product, kind: d.kind, status: d.status, amount: d.amount, currency: d.currency }, true);
      if (d.status === 'delivered' || !o.buyer) fetchOrder(d.order);
      if (d.status === 'delivered' || d.status === 'refunded') { loadMember(); loadAlsoBought(); }
      break;
    }
    case 'gift.created':
    case 'gift.claimed':
    case 'gift.declined':
    case 'gift.expired':
    case 'friendpay.paid':
      fetchOrder(d.order);
      if (p.push === 'gift.claimed') say('gift-result', `${d.by || 'Your friend'} claimed your gift (${d.order}).`, 'ok');
      break;
    case 'gift.received':
      $('gift-code').value = d.code;
      say('gift-result', `${d.from} sent you a gift: ${d.title}${d.message ? ' — “' + d.message + '”' : ''}. Code ${d.code} — press Claim.`, 'ok');
      break;
    case 'friendpay.requested':
      $('fp-code').value = d.code;
      S.fp = null;
      say('fp-result', `${d.from} asks you to pay ${money(d.amount, d.currency)} for ${d.title}. Code ${d.code} — press Pay.`, 'ok');
      break;
    case 'friendpay.receipt':
      // Our own Pay's answer may have told it already: on Redis Cluster the push (relayed
      // through the outbox) can come after that answer, and must not replace it.
      if (!$('fp-result').textContent.includes(d.order)) say('fp-result', `Receipt: you paid ${money(d.amount, d.currency)} for ${d.for} (${d.order}).`, 'ok');
      break;
    case 'friendpay.expired':
      fetchOrder(d.order);
      break;
    case 'payment.refund_required': {
      const o = S.orders.get(d.order);
      if (o) { o.note = `payment ${d.payment} will be refunded: ${d.reason}`; renderOrder(o); }
      break;
    }
    case 'payment.refunded': {
      const o = S.orders.get(d.order);
      if (o) { o.note = `payment ${d.payment} refunded (${d.refund_no})`; renderOrder(o); }
      break;
    }
    case 'price.drop':
      addAlert(p);
      updateProductPrice(d.product, d.price, d.currency);
      break;
    case 'product.price':
      updateProductPrice(d.product, d.price, d.currency);
      break;
    case 'product.buyers':
      if (S.group && d.product === S.group) showBuyers(d.buyers);
      break;
    case 'group.message':
    case 'group.deleted':
      showGroupPush(p);
      break;
    case 'member.level':
      showLevelChange(d);
      break;
    case 'product.restock':
      addRestockAlert(d);
      break;
    case 'membership.expiring':
    case 'membership.expired':
      addReminder(p);
      break;
    case 'channel.removed':
      leftGroup(d.channel, { code: 'removed', message: `you left ${d.channel} (${d.reason})` });
      break;
    default:
      break;
  }
}

// ---------- wiring ----------

function onClick(id, fn) { $(id).addEventListener('click', (e) => { e.preventDefault(); fn(); }); }

function onEnter(id, fn) {
  $(id).addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); fn(); } });
}

function kindChanged() {
  const kind = $('buy-kind').value;
  const label = $('buy-to-label');
  label.firstChild.textContent = kind === 'gift' ? 'Gift for (optional) ' : kind === 'friendpay' ? 'Ask friend (optional) ' : 'Friend (not needed) ';
  $('buy-to').disabled = false;
}

onClick('login', login);
onEnter('login-user', login);
onClick('buy', buy);
onClick('gift-claim', claimGift);
onEnter('gift-code', claimGift);
onClick('fp-view', viewPayRequest);
onClick('fp-pay', payForFriend);
onClick('group-join', joinGroup);
onEnter('group-product', joinGroup);
onClick('chat-send', sendChat);
onEnter('chat-input', sendChat);
onClick('watch', watch);
onClick('price-set', setPrice);
onClick('watch-restock', watchRestock);
onClick('sale-watch', () => watchSale($('sale-id').value));
onEnter('sale-id', () => watchSale($('sale-id').value));
onClick('sale-schedule', scheduleSale);
onClick('sale-buy', buySale);
$('buy-product').addEventListener('change', loadAlsoBought);
$('alerts').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-buy-held]');
  if (b) { e.preventDefault(); buyHeld(b.dataset.buyHeld, b); }
});
$('buy-kind').addEventListener('change', kindChanged);
$('buy-kind').addEventListener('input', kindChanged);
$('fp-code').addEventListener('input', () => { S.fp = null; });
$('orders').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-pay]');
  if (b) { e.preventDefault(); payOrder(b.dataset.pay, b); }
});

window.demo = {
  client: null,
  state() {
    return {
      user: S.user,
      connection: S.client ? S.client.state : 'idle',
      orders: [...S.orders.values()].map((o) => ({ id: o.id, status: o.status, kind: o.kind, product: o.product })),
      ordersWithKeys: [...S.keys.keys()],
      group: S.group,
      chat: $('chat-log').children.length,
      alerts: $('alerts').querySelectorAll('.alert').length,
      level: S.member ? S.member.level : null,
      points: S.member ? S.member.points : null,
      alsoBought: [...$('also-bought').children].map((li) => li.dataset.product),
      holds: [...$('alerts').querySelectorAll('.alert[data-hold-until]')].map((a) => ({ product: a.dataset.product, state: a.dataset.holdState })),
      sale: S.sale ? { id: S.sale.id, state: S.sale.state, remaining: S.sale.remaining, canBuy: !$('sale-buy').disabled } : null,
      reminders: [...$('reminders').querySelectorAll('.reminder')].map((r) => ({ type: r.dataset.type, product: r.dataset.product })),
      events: S.events,
      positions: S.client ? Object.fromEntries(S.client.positions) : {},
    };
  },
};

kindChanged();
loadProducts();
const remembered = new URLSearchParams(location.search).get('user');
if (remembered) { $('login-user').value = remembered; login(); }
