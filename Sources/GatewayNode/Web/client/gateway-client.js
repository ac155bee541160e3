// Browser client for the card-shop gateway (protocol v1). An ES module with no dependencies.
//
//   import { GatewayClient } from '/client/gateway-client.js';
//   const client = new GatewayClient('wss://shop.example/ws', { getToken: async () => fetchToken() });
//   client.addEventListener('order.status', (e) => console.log(e.detail.data));
//   client.connect();
//   await client.subscribe('product:p1');
//   const order = await client.command('order.get', { order: 'o-…' });
//
// What it does for you: one connection with the personal channel, commands as promises
// matched by id, pushes as events (`push` for all, and one per push type), reconnects
// with exponential backoff and full jitter, resumes every channel with `since` so no
// publication is lost, drops duplicates by offset, and honours the close codes.
//
// Events: state, connected, disconnected, reconnect_scheduled, closed (for good), push and
// one per push type, resync (history could not fill a gap, or what was missed is more than
// one reply may carry: reload what you show of that channel; the newest publications the
// reply did carry follow as push events), subscribe_error, error. On `channel.removed` (a
// right lost, e.g. a refund) the channel is forgotten and not resubscribed; on
// `token.expiring` a fresh token from getToken is sent with `refresh`.
//
// `command('history', ...)` answers at most `history.max_reply_bytes`: a page with
// `truncated: true` is the newest that fit, and older ones can be asked for with `since`
// and a smaller `limit`.

/** Close codes after which reconnecting cannot help (PROTOCOL.md 2.6; 1009 is a client bug). */
const FINAL_CLOSE_CODES = new Set([1009, 4002, 4010, 4011]);
const BAD_TOKEN = 4002;
const TOKEN_EXPIRED = 4003;
/**
 * Too many connections of this user on the node (after a `rate_limited` connect reply):
 * another tab has to close first, so reconnect later, with backoff, never at once.
 */
const TOO_MANY_CONNECTIONS = 4029;
const TOO_MANY_MIN_DELAY_MS = 1000;
/** After refusing a token the server closes at once; if that close never comes, drop the socket ourselves. */
const UNAUTHORIZED_GRACE_MS = 5000;

/** An error reply of the gateway (or a client-side failure) with its `code`. */
export class GatewayError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'GatewayError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** `state`: idle → connecting → open ⇄ reconnecting …, closed when closed for good. */
export class GatewayClient extends EventTarget {
  /**
   * @param {string} url  ws:// or wss:// URL of the gateway's `/ws`.
   * @param {object} options
   *   token: a token; getToken: async () => token (asked first if no token, after a 4003, and on
   *   `token.expiring`, whose fresh token is sent with `refresh`);
   *   backoff: {base: ms, cap: ms} (default 500, 30000);
   *   commandTimeout: ms (default 10000); WebSocket: constructor to use (tests).
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.token = options.token || null;
    this.getToken = options.getToken || null;
    this.backoff = Object.assign({ base: 500, cap: 30000 }, options.backoff || {});
    this.commandTimeout = options.commandTimeout || 10000;
    this.WebSocketImpl = options.WebSocket || globalThis.WebSocket;
    this.state = 'idle';
    this.user = null;
    this.personalChannel = null;
    this.lastClose = null;
    this.attempt = 0;
    this.gen = 0;                   // bumped by every _open and close(): a getToken that returns late sees it changed
    this.nextId = 1;
    this.ws = null;
    this.pending = new Map();       // id -> {op, timer, onOk, onError}, called synchronously in frame order
    this.queue = [];                // {id, line} waiting for the connection to open
    this.positions = new Map();     // channel -> {offset, epoch}
    this.channels = new Map();      // channel -> {waiters, subscribed, inflight}, resubscribed on reconnect
    this.timers = {};               // reconnect, ping, stable, unauthorized
    this.lastReceived = 0;
    this.pingSeconds = 25;
    this.clock = null;              // {lo, hi}: bounds on server clock minus ours, from server_time stamps
  }

  // ---- public API ----

  /** Opens the connection (again, after `close()`). */
  connect() {
    if (this.state === 'connecting' || this.state === 'open' || this.state === 'reconnecting') return;
    this.attempt = 0;
    this._open();
  }

  /** Closes for good: no reconnect; commands and subscriptions waiting are rejected, channels forgotten. */
  close() {
    this.gen++;
    this._clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) { this._detach(ws); try { ws.close(1000, 'client closed'); } catch (e) { /* already closed */ } }
    this._setState('closed');
    this._finish(new GatewayError('closed', 'client closed'));
  }

  /**
   * Sends a command; resolves with its `ok` result, rejects with a GatewayError carrying
   * the reply's `code` (or `timeout`, `disconnected`, `closed`). Sent once the
   * connection is open; a command in flight when the connection drops is rejected.
   */
  command(op, fields = {}, { timeout } = {}) {
    if (this.state === 'closed' || this.state === 'idle') {
      return Promise.reject(new GatewayError('closed', 'not connected: call connect() first'));
    }
    return new Promise((resolve, reject) => this._request(op, fields, resolve, reject, timeout));
  }

  /**
   * Subscribes to a channel and keeps it across reconnects (resumed with `since`).
   * Resolves with the subscribe result; rejects (and forgets the channel) on an error,
   * or with `closed` when the client closes for good first.
   */
  subscribe(channel) {
    if (channel === this.personalChannel) return Promise.resolve({ channel, personal: true });
    let entry = this.channels.get(channel);
    if (entry && entry.subscribed) return Promise.resolve({ channel, already: true });
    if (!entry) { entry = { waiters: [], subscribed: false, inflight: false }; this.channels.set(channel, entry); }
    const p = new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
    if (this.state === 'open' && !entry.inflight) this._subscribe(channel, entry);
    return p;
  }

  /** Stops a subscription (and its resumption). The personal channel cannot be left. */
  unsubscribe(channel) {
    if (channel === this.personalChannel) {
      return Promise.reject(new GatewayError('bad_request', 'the personal channel cannot be unsubscribed'));
    }
    const entry = this.channels.get(channel);
    this.channels.delete(channel);
    this.positions.delete(channel);
    if (entry) this._settle(entry, null, new GatewayError('canceled', 'unsubscribed'));
    if (this.state !== 'open') return Promise.resolve({});
    return this.command('unsubscribe', { channel });
  }

  /** Last position seen on a channel: {offset, epoch}, or undefined. */
  position(channel) { return this.positions.get(channel); }

  /**
   * The server's clock now (ms), for countdowns: the local clock may be off by minutes. Set from
   * the connect reply's `server_time` (the midpoint of what its round trip allows); before any
   * connect reply, the local clock.
   */
  serverNow() {
    const c = this.clock;
    return Date.now() + (c ? (c.lo + c.hi) / 2 : 0);
  }

  /**
   * A `server_time` stamped by the server before `receivedAt` (a push such as `sale.countdown`):
   * the server's clock was at least that when it arrived, which narrows the connect reply's
   * bounds. A stamp outside them (the clocks moved) starts over from it.
   */
  refineClock(serverTime, receivedAt = Date.now()) {
    if (typeof serverTime !== 'number') return;
    const lo = serverTime - receivedAt;
    const c = this.clock;
    if (!c || lo > c.hi) this.clock = { lo, hi: Math.max(lo, c ? c.hi : lo) };
    else if (lo > c.lo) c.lo = lo;
  }

  // ---- connection ----

  async _open() {
    const gen = ++this.gen;
    this._setState(this.attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    if (!this.token && this.getToken) {
      let token;
      try {
        token = await this.getToken();
      } catch (e) {
        if (gen !== this.gen) return;
        this._emit('error', { error: e, message: 'getToken failed' });
        return this._retry();
      }
      // close() (and maybe connect()) ran meanwhile: the newer generation owns the connection.
      if (gen !== this.gen) return;
      this.token = token;
    }
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (e) {
      this._emit('error', { error: e, message: 'cannot open WebSocket' });
      return this._retry();
    }
    ws.binaryType = 'arraybuffer'; // decoded in _receive (a Blob could not be read synchronously)
    this.ws = ws;
    ws.onopen = () => this._sendConnect(ws);
    ws.onmessage = (ev) => this._receive(ws, ev.data);
    ws.onclose = (ev) => this._lost(ws, ev.code, ev.reason, false);
    ws.onerror = () => { /* onclose follows */ };
  }

  _sendConnect(ws) {
    if (ws !== this.ws) { this._detach(ws); try { ws.close(); } catch (e) { /* ignore */ } return; } // an orphan: never log it in
    const id = this.nextId++;
    const cmd = { id, op: 'connect', token: this.token };
    const since = this.personalChannel && this.positions.get(this.personalChannel);
    if (since) cmd.since = { offset: since.offset, epoch: since.epoch };
    const timer = setTimeout(() => {
      this.pending.delete(id);
      this._drop(ws, 'no reply to connect');
    }, this.commandTimeout);
    const sentAt = Date.now();
    this.pending.set(id, { op: 'connect', timer, onOk: (ok) => this._connected(ws, ok, sentAt), onError: (err) => this._refused(ws, err) });
    ws.send(JSON.stringify(cmd));
  }

  _refused(ws, err) {
    if (err.code === 'disconnected' || err.code === 'closed') return; // the socket went first: its close says why
    this._emit('error', { error: err, message: 'connect refused: ' + err.message });
    if (ws !== this.ws) return;
    if (err.code === 'unauthorized') {
      // The server's close (4002/4003) follows; if it never comes, get a new token or give up.
      this.timers.unauthorized = setTimeout(() => {
        if (ws !== this.ws) return;
        if (!this.getToken) return this._lost(ws, BAD_TOKEN, 'connect refused: ' + err.message, true);
        this.token = null;
        this._drop(ws, 'connect refused: ' + err.message);
      }, UNAUTHORIZED_GRACE_MS);
      return;
    }
    if (err.code === 'rate_limited') {
      // Over the per-user connection limit; the server closes with 4029 next. Wait at least
      // its retry_after_ms before trying again (plus the usual backoff).
      this.retryFloor = err.retry_after_ms || TOO_MANY_MIN_DELAY_MS;
      return this._lost(ws, TOO_MANY_CONNECTIONS, 'connect refused: ' + err.message, true);
    }
    // bad_request may be our `since`: resuming with it again would fail forever.
    if (err.code === 'bad_request' && this.personalChannel) this.positions.delete(this.personalChannel);
    this._drop(ws, 'connect refused: ' + err.message); // `unavailable` (Redis away) is temporary too
  }

  _connected(ws, ok, sentAt) {
    if (ws !== this.ws) return;
    // The reply was stamped between sending the connect and now (maybe by another node than before).
    if (typeof ok.server_time === 'number') this.clock = { lo: ok.server_time - Date.now(), hi: ok.server_time - sentAt };
    this.user = ok.user;
    this.personalChannel = ok.channel;
    this.pingSeconds = ok.ping_s || 25;
    if (!this._absorb(ok, ws)) return;
    this._setState('open');
    if (ws !== this.ws) return; // a `state` listener closed us
    // Only a connection that stays up resets the backoff: a server that accepts and then closes
    // at once (draining, 4008 on every try) must not be hit at the base delay forever.
    this.timers.stable = setTimeout(() => { if (ws === this.ws) this.attempt = 0; }, Math.max(5000, 4 * this.backoff.base));
    // Commands first queued while away, then every channel resumed, then the app hears of it
    // (so a `connected` listener calling subscribe() does not send a channel twice).
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) if (this.pending.has(q.id)) this._send(q.line);
    for (const [channel, entry] of this.channels) if (!entry.inflight) this._subscribe(channel, entry);
    this._armPing();
    this._emit('connected', ok);
  }

  _subscribe(channel, entry) {
    const fields = { channel };
    const since = this.positions.get(channel);
    if (since) fields.since = { offset: since.offset, epoch: since.epoch };
    const ws = this.ws;
    entry.inflight = true;
    // The reply is handled synchronously in _receive: the pushes the server holds during the
    // subscribe come right after it in the same frame and must find the channel's position.
    this._request('subscribe', fields, (ok) => {
      entry.inflight = false;
      if (this.channels.get(channel) !== entry) return; // unsubscribed meanwhile
      entry.subscribed = true;
      if (!this._absorb(ok, ws)) return;
      this._settle(entry, ok, null);
    }, (err) => {
      entry.inflight = false;
      if (this.channels.get(channel) !== entry) return;
      if (err.code === 'disconnected' || err.code === 'closed') return; // resubscribed on the next connection, or rejected by _finish
      // The server may have subscribed after all: start over on a new connection rather than guess.
      if (err.code === 'timeout') return this._drop(ws, `no reply to subscribe ${channel}`);
      if (err.code === 'conflict') { entry.subscribed = true; return this._settle(entry, { channel }, null); }
      this.channels.delete(channel);
      this.positions.delete(channel);
      this._emit('subscribe_error', { channel, error: err });
      this._settle(entry, null, err);
    });
  }

  /** A connect or subscribe result: its publications, then its position. False if that dropped the socket. */
  _absorb(ok, ws) {
    const channel = ok.channel;
    const before = this.positions.get(channel);
    if (before && !ok.recovered) {
      // History could not fill the gap (trimmed, new epoch, or more than one reply may carry):
      // the app should reload what it shows of this channel. Publications the reply still
      // carries (the newest that fit) are pushed below, and the position moves to ok.offset.
      this.positions.delete(channel);
      this._emit('resync', { channel, offset: ok.offset, epoch: ok.epoch, since: before });
    }
    for (const pub of ok.publications || []) {
      this._push(pub);
      if (ws !== this.ws) return false;
    }
    const now = this.positions.get(channel);
    if (!now || now.epoch !== ok.epoch || now.offset < ok.offset) {
      this.positions.set(channel, { offset: ok.offset, epoch: ok.epoch });
    }
    return true;
  }

  /**
   * The socket is gone: closed (by the server, the network or the browser) or dropped by us.
   * Reconnects unless the close code says it cannot help.
   */
  _lost(ws, code, reason, dropIt) {
    if (!ws || ws !== this.ws) return;
    this.ws = null;
    this._detach(ws);
    if (dropIt) { try { ws.close(); } catch (e) { /* ignore */ } }
    this._clearTimers();
    this.lastClose = { code, reason };
    this._failPending(new GatewayError('disconnected', `connection closed (${code}${reason ? ': ' + reason : ''})`));
    for (const [, entry] of this.channels) entry.subscribed = false;
    this._emit('disconnected', { code, reason });
    if (this.state === 'closed') return;
    let final = FINAL_CLOSE_CODES.has(code);
    if (code === BAD_TOKEN && this.getToken) this.token = null; // a later connect() asks for a new one
    if (code === TOKEN_EXPIRED) {
      if (this.getToken) this.token = null; // _open asks getToken for a fresh one
      else { final = true; reason = reason || 'token expired and no getToken'; }
    }
    if (code === TOO_MANY_CONNECTIONS) {
      const floor = Math.max(this.retryFloor || 0, TOO_MANY_MIN_DELAY_MS);
      this.retryFloor = 0;
      this.attempt = Math.max(this.attempt, 1);
      return this._retry(floor);
    }
    if (!final) return this._retry();
    this.gen++;
    this._setState('closed');
    this._finish(new GatewayError('closed', `closed by the gateway (${code})`));
    this._emit('closed', { code, reason });
  }

  /** Gives up on a socket that is open but not useful (no reply, a gap, no pong). */
  _drop(ws, why) { this._lost(ws, 0, why, true); }

  /** Exponential backoff with full jitter, capped: wait floor + random(0, min(cap, base·2^n)). */
  _retry(floor = 0) {
    if (this.state === 'closed') return;
    this._setState('reconnecting');
    const ceiling = Math.min(this.backoff.cap, this.backoff.base * Math.pow(2, Math.min(this.attempt, 16)));
    const delay = floor + Math.floor(Math.random() * ceiling);
    this.attempt++;
    this._emit('reconnect_scheduled', { delay, attempt: this.attempt });
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => { this.timers.reconnect = null; this._open(); }, delay);
  }

  /** Ends for good (close() or a final close code): everything waiting is rejected, channels forgotten. */
  _finish(err) {
    this._failPending(err);
    for (const [channel, entry] of this.channels) {
      if (channel !== this.personalChannel) this.positions.delete(channel); // kept: connect() resumes it
      this._settle(entry, null, err);
    }
    this.channels.clear();
  }

  // ---- frames ----

  /** Sends (or queues until open) a command whose reply calls onOk/onError synchronously. */
  _request(op, fields, onOk, onError, timeout) {
    const ms = timeout || this.commandTimeout;
    const id = this.nextId++;
    const line = JSON.stringify(Object.assign({ id, op }, fields));
    const timer = setTimeout(() => {
      if (!this.pending.delete(id)) return;
      this.queue = this.queue.filter((q) => q.id !== id);
      onError(new GatewayError('timeout', `no reply to ${op} within ${ms} ms`));
    }, ms);
    this.pending.set(id, { op, timer, onOk, onError });
    if (this.state === 'open' && this.ws) this._send(line);
    else this.queue.push({ id, line });
  }

  _send(line) {
    try { this.ws.send(line); } catch (e) { /* the close event follows */ }
  }

  _receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastReceived = Date.now();
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
    for (const line of text.split('\n')) {
      if (ws !== this.ws) return; // an earlier line (or a listener) dropped or closed this socket
      if (!line.trim()) continue;
      let msg;
      // No `line` in the event: a reply may hold card keys, and apps log errors.
      try { msg = JSON.parse(line); } catch (e) { this._emit('error', { message: 'bad JSON from server', length: line.length }); continue; }
      if (msg.push) { this._push(msg); continue; }
      const p = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
      if (p) {
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.error) p.onError(new GatewayError(msg.error.code, msg.error.message, msg.error));
        else p.onOk(msg.ok || {});
        continue;
      }
      if (msg.error) this._emit('error', { message: msg.error.message, code: msg.error.code });
    }
  }

  /**
   * One push: ignored on a channel we do not (yet) hold, dropped if its offset was seen,
   * else `push` and its type. A gap means something was lost on the way: reconnecting
   * with `since` fills it. A new epoch means history was lost: `resync`.
   */
  _push(msg) {
    const channel = msg.channel;
    if (channel && channel !== this.personalChannel) {
      const entry = this.channels.get(channel);
      if (!entry || !entry.subscribed) return; // left, or its subscribe reply (which carries them) is still to come
    }
    if (channel && typeof msg.offset === 'number') {
      const seen = this.positions.get(channel);
      if (seen && seen.epoch === msg.epoch) {
        if (msg.offset <= seen.offset) return;
        if (msg.offset > seen.offset + 1) return this._drop(this.ws, `gap on ${channel}: ${seen.offset} -> ${msg.offset}`);
      }
      this.positions.set(channel, { offset: msg.offset, epoch: msg.epoch });
      if (seen && seen.epoch !== msg.epoch) this._emit('resync', { channel, offset: msg.offset, epoch: msg.epoch, since: seen });
    }
    if (msg.push === 'channel.removed') this._removed(msg.data || {});
    if (msg.push === 'token.expiring') this._refreshToken();
    this._emit('push', msg);
    this._emit(msg.push, msg);
  }

  /** The right to a channel is gone (contract 4.3): forget it, so no reconnect resubscribes it. */
  _removed(data) {
    const channel = data.channel;
    const entry = channel && this.channels.get(channel);
    if (!entry) return;
    this.channels.delete(channel);
    this.positions.delete(channel);
    this._settle(entry, null, new GatewayError('forbidden', `removed from ${channel}: ${data.reason || ''}`));
  }

  /**
   * The token ends within a minute: with getToken, a fresh one is sent with `refresh` (and kept
   * for reconnects). Without, the server closes with 4003 at its end.
   */
  async _refreshToken() {
    if (!this.getToken) return;
    const gen = this.gen, ws = this.ws;
    try {
      const token = await this.getToken();
      if (gen !== this.gen || ws !== this.ws) return; // closed or reconnected meanwhile (that connect used a token of its own)
      await this.command('refresh', { token });
      this.token = token;
    } catch (e) {
      this._emit('error', { error: e, message: 'token refresh failed: ' + (e && e.message) });
    }
  }

  // ---- liveness ----
  // The server pings with WebSocket ping frames (the browser answers them). On top, a
  // connection quiet for ping_s gets a `ping` command: no reply in time means the path
  // is dead even if the socket looks open, so drop it and reconnect with `since`.

  _armPing() {
    clearTimeout(this.timers.ping);
    const ws = this.ws;
    this.timers.ping = setTimeout(() => {
      if (ws !== this.ws || this.state !== 'open') return;
      if (Date.now() - this.lastReceived < this.pingSeconds * 1000) return this._armPing();
      this._request('ping', {}, () => this._armPing(), (err) => {
        if (ws !== this.ws) return; // that connection is gone; the next one arms its own
        if (err.code === 'timeout') this._drop(ws, 'ping timed out');
        else this._armPing(); // any other answer still proves the path works
      }, 10000);
    }, this.pingSeconds * 1000);
  }

  // ---- helpers ----

  _clearTimers() {
    for (const name of Object.keys(this.timers)) clearTimeout(this.timers[name]);
    this.timers = {};
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _failPending(err) {
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.queue = [];
    for (const p of pending) {
      clearTimeout(p.timer);
      try { p.onError(err); } catch (e) { /* ignore */ }
    }
  }

  _settle(entry, ok, err) {
    const waiters = entry.waiters;
    entry.waiters = [];
    for (const w of waiters) { if (err) w.reject(err); else w.resolve(ok); }
  }

  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** ws(s)://<this page's host>/ws: the gateway that served the page. */
export function gatewayURL(loc = globalThis.location) {
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
}
