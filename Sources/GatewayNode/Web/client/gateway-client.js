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

/** Close codes after which reconnecting cannot help (PROTOCOL.md 2.6). */
const FINAL_CLOSE_CODES = new Set([4002, 4010, 4011]);
const TOKEN_EXPIRED = 4003;

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
   *   token: a token; getToken: async () => token (asked first if no token, and after a 4003);
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
    this.nextId = 1;
    this.ws = null;
    this.pending = new Map();       // id -> {resolve, reject, timer, line}
    this.queue = [];                // lines waiting for the connection to open
    this.positions = new Map();     // channel -> {offset, epoch}
    this.channels = new Map();      // channel -> {waiters: [{resolve, reject}]}, resubscribed on reconnect
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.lastReceived = 0;
    this.pingSeconds = 25;
  }

  // ---- public API ----

  /** Opens the connection (again, after `close()`). */
  connect() {
    if (this.state === 'connecting' || this.state === 'open' || this.state === 'reconnecting') return;
    this.attempt = 0;
    this._open();
  }

  /** Closes for good: no reconnect; commands waiting are rejected. */
  close() {
    this._clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) { this._detach(ws); try { ws.close(1000, 'client closed'); } catch (e) { /* already closed */ } }
    this._failPending(new GatewayError('closed', 'client closed'));
    for (const [, entry] of this.channels) this._settle(entry, null, new GatewayError('closed', 'client closed'));
    this._setState('closed');
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
    const id = this.nextId++;
    const line = JSON.stringify(Object.assign({ id, op }, fields));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.queue = this.queue.filter((q) => q.id !== id);
        reject(new GatewayError('timeout', `no reply to ${op} within ${timeout || this.commandTimeout} ms`));
      }, timeout || this.commandTimeout);
      this.pending.set(id, { resolve, reject, timer, op });
      if (this.state === 'open') this._send(line);
      else this.queue.push({ id, line });
    });
  }

  /**
   * Subscribes to a channel and keeps it across reconnects (resumed with `since`).
   * Resolves with the subscribe result; rejects (and forgets the channel) on an error.
   */
  subscribe(channel) {
    let entry = this.channels.get(channel);
    if (entry && entry.subscribed) return Promise.resolve({ channel, already: true });
    if (!entry) { entry = { waiters: [], subscribed: false }; this.channels.set(channel, entry); }
    const p = new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
    if (this.state === 'open' && entry.waiters.length === 1) this._subscribe(channel);
    return p;
  }

  /** Stops a subscription (and its resumption). */
  unsubscribe(channel) {
    const entry = this.channels.get(channel);
    this.channels.delete(channel);
    this.positions.delete(channel);
    if (entry) this._settle(entry, null, new GatewayError('canceled', 'unsubscribed'));
    if (this.state !== 'open') return Promise.resolve({});
    return this.command('unsubscribe', { channel });
  }

  /** Last position seen on a channel: {offset, epoch}, or undefined. */
  position(channel) { return this.positions.get(channel); }

  // ---- connection ----

  async _open() {
    this._setState(this.attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    if (!this.token && this.getToken) {
      try {
        this.token = await this.getToken();
      } catch (e) {
        this._emit('error', { error: e, message: 'getToken failed' });
        return this._retry();
      }
      if (this.state === 'closed') return;
    }
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (e) {
      this._emit('error', { error: e, message: 'cannot open WebSocket' });
      return this._retry();
    }
    this.ws = ws;
    ws.onopen = () => this._sendConnect(ws);
    ws.onmessage = (ev) => this._receive(ws, ev.data);
    ws.onclose = (ev) => this._closed(ws, ev.code, ev.reason);
    ws.onerror = () => { /* onclose follows */ };
  }

  _sendConnect(ws) {
    const id = this.nextId++;
    const cmd = { id, op: 'connect', token: this.token };
    const since = this.personalChannel && this.positions.get(this.personalChannel);
    if (since) cmd.since = { offset: since.offset, epoch: since.epoch };
    const timer = setTimeout(() => {
      this.pending.delete(id);
      this._drop(ws, 'no reply to connect');
    }, this.commandTimeout);
    this.pending.set(id, {
      op: 'connect', timer,
      resolve: (ok) => this._connected(ws, ok),
      reject: (err) => {
        // A bad or expired token is followed by the server's close (4002/4003);
        // `unavailable` (Redis away) is temporary: try again after a backoff.
        this._emit('error', { error: err, message: 'connect refused: ' + err.message });
        if (err.code !== 'unauthorized') this._drop(ws, err.message);
      },
    });
    ws.send(JSON.stringify(cmd));
  }

  _connected(ws, ok) {
    if (ws !== this.ws) return;
    this.user = ok.user;
    this.personalChannel = ok.channel;
    this.pingSeconds = ok.ping_s || 25;
    this.attempt = 0;
    this._absorb(ok);
    this._setState('open');
    this._emit('connected', ok);
    // Commands first queued while away, then every channel resumed.
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) if (this.pending.has(q.id)) this._send(q.line);
    for (const [channel] of this.channels) this._subscribe(channel);
    this._armPing();
  }

  _subscribe(channel) {
    const fields = { channel };
    const since = this.positions.get(channel);
    if (since) fields.since = { offset: since.offset, epoch: since.epoch };
    this.command('subscribe', fields).then((ok) => {
      const entry = this.channels.get(channel);
      if (!entry) return;
      entry.subscribed = true;
      this._absorb(ok);
      this._settle(entry, ok, null);
    }, (err) => {
      const entry = this.channels.get(channel);
      if (!entry) return;
      if (err.code === 'disconnected' || err.code === 'timeout') return; // resumed on the next connection
      if (err.code === 'conflict') { entry.subscribed = true; return this._settle(entry, { channel }, null); }
      this.channels.delete(channel);
      this._emit('subscribe_error', { channel, error: err });
      this._settle(entry, null, err);
    });
  }

  /** A connect or subscribe result: its publications, then its position. */
  _absorb(ok) {
    const channel = ok.channel;
    const before = this.positions.get(channel);
    if (before && !ok.recovered) {
      // History could not fill the gap: the app should reload what it shows of this channel.
      this.positions.delete(channel);
      this._emit('resync', { channel, offset: ok.offset, epoch: ok.epoch, since: before });
    }
    for (const pub of ok.publications || []) this._push(pub);
    const now = this.positions.get(channel);
    if (!now || now.epoch !== ok.epoch || now.offset < ok.offset) {
      this.positions.set(channel, { offset: ok.offset, epoch: ok.epoch });
    }
  }

  _closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this._detach(ws);
    this._clearTimers();
    this.lastClose = { code, reason };
    this._failPending(new GatewayError('disconnected', `connection closed (${code})`));
    for (const [, entry] of this.channels) entry.subscribed = false;
    this._emit('disconnected', { code, reason });
    if (this.state === 'closed') return;
    if (FINAL_CLOSE_CODES.has(code)) {
      this._setState('closed');
      this._emit('closed', { code, reason });
      return;
    }
    if (code === TOKEN_EXPIRED) {
      if (!this.getToken) {
        this._setState('closed');
        this._emit('closed', { code, reason: reason || 'token expired and no getToken' });
        return;
      }
      this.token = null; // _open asks getToken for a fresh one
    }
    this._retry();
  }

  /** Exponential backoff with full jitter, capped: wait random(0, min(cap, base·2^n)). */
  _retry() {
    if (this.state === 'closed') return;
    this._setState('reconnecting');
    const ceiling = Math.min(this.backoff.cap, this.backoff.base * Math.pow(2, Math.min(this.attempt, 16)));
    const delay = Math.floor(Math.random() * ceiling);
    this.attempt++;
    this._emit('reconnect_scheduled', { delay, attempt: this.attempt });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this._open(); }, delay);
  }

  /** Gives up on a socket that is open but not useful (no connect reply, no pong). */
  _drop(ws, why) {
    if (ws !== this.ws) return;
    this.ws = null;
    this._detach(ws);
    try { ws.close(); } catch (e) { /* ignore */ }
    this._clearTimers();
    this.lastClose = { code: 0, reason: why };
    this._failPending(new GatewayError('disconnected', why));
    for (const [, entry] of this.channels) entry.subscribed = false;
    this._emit('disconnected', { code: 0, reason: why });
    this._retry();
  }

  // ---- frames ----

  _send(line) {
    try { this.ws.send(line); } catch (e) { /* the close event follows */ }
  }

  _receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastReceived = Date.now();
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let msg;
      try { msg = JSON.parse(line); } catch (e) { this._emit('error', { message: 'bad JSON from server', line }); continue; }
      if (msg.push) { this._push(msg); continue; }
      if (typeof msg.id === 'number' && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.error) p.reject(new GatewayError(msg.error.code, msg.error.message, msg.error));
        else p.resolve(msg.ok || {});
        continue;
      }
      if (msg.error) this._emit('error', { message: msg.error.message, code: msg.error.code });
    }
  }

  /** One push: dropped if its offset was seen on this channel, else `push` and its type. */
  _push(msg) {
    const channel = msg.channel;
    if (channel && typeof msg.offset === 'number') {
      const seen = this.positions.get(channel);
      if (seen && seen.epoch === msg.epoch && msg.offset <= seen.offset) return;
      this.positions.set(channel, { offset: msg.offset, epoch: msg.epoch });
    }
    this._emit('push', msg);
    this._emit(msg.push, msg);
  }

  // ---- liveness ----
  // The server pings with WebSocket ping frames (the browser answers them). On top, a
  // connection quiet for ping_s gets a `ping` command: no reply in time means the path
  // is dead even if the socket looks open, so drop it and reconnect with `since`.

  _armPing() {
    clearTimeout(this.pingTimer);
    const ws = this.ws;
    this.pingTimer = setTimeout(() => {
      if (ws !== this.ws || this.state !== 'open') return;
      if (Date.now() - this.lastReceived < this.pingSeconds * 1000) return this._armPing();
      this.command('ping', {}, { timeout: 10000 }).then(() => this._armPing(), (err) => {
        if (err.code === 'timeout') this._drop(ws, 'ping timed out');
      });
    }, this.pingSeconds * 1000);
  }

  // ---- helpers ----

  _clearTimers() {
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.pingTimer);
    this.reconnectTimer = null;
    this.pingTimer = null;
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _failPending(err) {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      try { p.reject(err); } catch (e) { /* ignore */ }
    }
    this.pending.clear();
    this.queue = [];
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
