'use strict';

/**
 * IPCClient: requests, responders, pub/sub, heartbeats and reconnection on
 * top of one Connection at a time.
 *
 * Connection state is an explicit enum whose transitions all go through
 * `_setState()`. Every outgoing call passes one choke point (`_ready()` then
 * `_send()`), and every pending call settles exactly once through
 * `_settle()`: by its response, its own deadline, or, at once, the loss of
 * the connection.
 */

const { EventEmitter } = require('node:events');
const { randomBytes } = require('node:crypto');
const { SYSTEM_CHANNEL } = require('./constants');
const { parseOptions } = require('./options');
const { backoffDelay } = require('./backoff');
const { Heartbeat, HeartbeatAction } = require('./heartbeat');
const { Connection, now } = require('./connection');
const { buildMessage } = require('./envelope');
const { validateChannel, validatePattern, isPattern, isReserved, patternMatches } = require('./channels');
const {
  ErrorCode,
  IpcError,
  ConnectionLostError,
  ForbiddenError,
  NotConnectedError,
  QueueFullError,
  RemoteError,
  RequestTimeoutError,
  UnauthorizedError,
  errorFromWire,
  errorToWire
} = require('./errors');

/** The client's connection states. */
const State = Object.freeze({
  IDLE: 'idle', // never connected
  CONNECTING: 'connecting', // connect() in progress
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting', // lost the connection, retrying with backoff
  CLOSED: 'closed' // disconnect()ed, or gave up reconnecting
});

/** Allowed transitions; anything else is a bug in the client. */
const TRANSITIONS = Object.freeze({
  [State.IDLE]: [State.CONNECTING],
  [State.CONNECTING]: [State.CONNECTED, State.IDLE, State.CLOSED],
  [State.CONNECTED]: [State.RECONNECTING, State.CLOSED],
  [State.RECONNECTING]: [State.CONNECTED, State.CLOSED],
  [State.CLOSED]: [State.CONNECTING]
});

const DEFAULT_HEARTBEAT_INTERVAL_MS = 15_000; // §9.3, when the server does not say
/** How many ids of calls that expired locally are remembered, to drop their late answers. */
const SETTLED_IDS_KEPT = 1024;
/** Held-back inbound messages beyond `highWaterMark` x this pause the socket. */
const HELD_PAUSE_FACTOR = 4;

/**
 * Whether a value is a promise-like.
 * @param {unknown} value
 * @returns {boolean}
 * @private
 */
function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
}

/**
 * Checks a per-call timeout argument.
 * @param {unknown} timeout milliseconds.
 * @returns {number}
 * @private
 */
function checkTimeout(timeout) {
  if (typeof timeout !== 'number' || !(timeout > 0)) {
    throw new TypeError(`timeout must be a positive number of milliseconds, got ${String(timeout)}`);
  }
  return timeout;
}

/**
 * The error object of a version-1 error answer: a payload that is exactly
 * `{"error": {...}}` (docs/protocol.md §10), else null.
 * @param {unknown} payload
 * @returns {object|null}
 * @private
 */
function legacyError(payload) {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return null;
  const keys = Object.keys(payload);
  if (keys.length !== 1 || keys[0] !== 'error') return null;
  const error = payload.error;
  return error !== null && typeof error === 'object' && !Array.isArray(error) ? error : null;
}

/**
 * Node.js client of the IPC bridge.
 *
 * Events: 'connected' (info), 'disconnected' ({error}), 'reconnecting'
 * ({attempt, delay}), 'reconnected' (info), 'message' (publish message),
 * 'ping' (the server pinged us and was answered), 'error' (err, only
 * emitted when someone listens), 'close'.
 */
class IPCClient extends EventEmitter {
  /**
   * @param {string} appId the application namespace, fixed for the connection (§3.1).
   * @param {object} [options] see DEFAULTS in lib/constants.js; durations in ms.
   * @throws {TypeError|RangeError} a bad app id or bad options.
   */
  constructor(appId, options) {
    super();
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    this.appId = appId;
    this.options = parseOptions(options);
    this._state = State.IDLE;
    this._conn = null; // the connection once its handshake is done
    this._opening = null; // a connection still in its handshake
    this._info = null;
    this._connectionId = this.options.connectionId ?? `node-${randomBytes(6).toString('hex')}`;
    this._pending = new Map(); // message_id -> {resolve, reject, timer}
    this._settled = new Set(); // message_ids of calls that expired locally, oldest first (bounded)
    this._subscriptions = new Map(); // pattern -> Set<handler>
    this._responders = new Map(); // pattern -> handler, in registration order
    this._waiters = new Set(); // calls waiting for a connection
    this._connecting = null; // single-flight promise of connect() / the reconnect loop
    this._wake = null; // ends the reconnect backoff sleep early
    this._attempt = 0;
    this._heartbeat = null;
    this._heartbeatTimer = null;
    this._running = 0; // async handlers in flight, for inbound backpressure
    this._held = []; // inbound requests/publishes waiting for a handler slot, from _heldHead on
    this._heldHead = 0;
  }

  /**
   * The connection state: 'idle', 'connecting', 'connected', 'reconnecting' or 'closed'.
   * @returns {string}
   */
  get state() {
    return this._state;
  }

  /**
   * Whether the client can send right now.
   * @returns {boolean}
   */
  get connected() {
    return this._state === State.CONNECTED;
  }

  /**
   * Connects and performs the handshake. Concurrent calls share one attempt.
   *
   * @returns {Promise<true>}
   * @throws {NotConnectedError} the server could not be reached (`.cause` has the socket error).
   * @throws {RequestTimeoutError} no handshake within `connectionTimeout`.
   * @throws {UnauthorizedError} the server refused the token.
   */
  connect() {
    if (this._state === State.CONNECTED) return Promise.resolve(true);
    if (this._state === State.CONNECTING) return this._connecting;
    if (this._state === State.RECONNECTING) {
      return this._waitConnected(Infinity).then(() => true);
    }
    const from = this._state;
    this._setState(State.CONNECTING);
    const attempt = this._establish().then(
      () => {
        if (this._connecting === attempt) this._connecting = null;
        return true;
      },
      (err) => {
        if (this._connecting === attempt) this._connecting = null;
        if (this._state === State.CONNECTING) {
          this._setState(from === State.CLOSED ? State.CLOSED : State.IDLE);
          this._failWaiters(new NotConnectedError('the connection attempt failed', { cause: err }));
        }
        throw err;
      }
    );
    this._connecting = attempt;
    return attempt;
  }

  /**
   * Closes the connection and stops reconnecting. Pending calls reject with
   * connection_lost, calls waiting for a connection with not_connected.
   *
   * @returns {Promise<void>} resolves once the socket is closed.
   */
  disconnect() {
    if (this._state === State.IDLE || this._state === State.CLOSED) return Promise.resolve();
    const wasConnected = this._state === State.CONNECTED;
    this._setState(State.CLOSED);
    const conn = this._conn;
    this._detach(new ConnectionLostError('the client disconnected'));
    if (this._opening !== null) this._opening.destroy(new NotConnectedError('the client disconnected'));
    if (this._wake !== null) this._wake();
    this._failWaiters(new NotConnectedError('the client disconnected'));
    if (wasConnected) this.emit('disconnected', { error: null });
    this.emit('close');
    return conn ? conn.close() : Promise.resolve();
  }

  /**
   * Sends a request and resolves with the response message (§6).
   *
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload] any JSON value.
   * @param {number} [timeout] milliseconds; also sent as `timeout_ms` (§6.5).
   * @param {{headers?: Record<string, string>}} [options]
   * @returns {Promise<object>} the response message; its `.payload` is the result.
   * @throws {IpcError} `.code` no_responders, timeout, handler_error (with
   *   `.remoteType`), connection_lost, not_connected, bad_message...
   */
  async sendRequest(channelId, payload = null, timeout = this.options.requestTimeout, { headers } = {}) {
    validateChannel(channelId);
    const deadline = now() + checkTimeout(timeout);
    if (this._state !== State.CONNECTED) await this._ready(deadline);
    const msg = buildMessage('request', this.appId, channelId, payload, headers ? { headers } : undefined);
    return this._call(msg, deadline);
  }

  /**
   * Subscribes `handler` to a channel or pattern (`*`, `>`, §4.2). Resolves
   * on the server's ack; a rejected call leaves no subscription behind. The
   * subscription is kept across reconnections.
   *
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler called with each publish message.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<void>}
   * @throws {IpcError} bad_message for an invalid pattern, or the call's failure.
   */
  async subscribe(channelId, handler, { timeout = this.options.requestTimeout } = {}) {
    validatePattern(channelId);
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    const deadline = now() + checkTimeout(timeout);
    let handlers = this._subscriptions.get(channelId);
    if (handlers === undefined) this._subscriptions.set(channelId, (handlers = new Set()));
    const known = handlers.has(handler);
    handlers.add(handler); // before sending, so a publish right after the ack finds it
    try {
      if (this._state !== State.CONNECTED) await this._ready(deadline);
      await this._register('subscribe', channelId, false, deadline);
    } catch (err) {
      if (!known) handlers.delete(handler);
      if (handlers.size === 0 && this._subscriptions.get(channelId) === handlers) this._subscriptions.delete(channelId);
      throw err;
    }
  }

  /**
   * Removes a subscription: one handler, or all of the channel's handlers.
   * The server is told once no handler is left.
   *
   * @param {string} channelId the channel or pattern given to subscribe().
   * @param {Function} [handler] only this handler.
   * @returns {Promise<void>}
   */
  async unsubscribe(channelId, handler) {
    const handlers = this._subscriptions.get(channelId);
    if (handlers === undefined) return;
    if (handler !== undefined) {
      handlers.delete(handler);
      if (handlers.size > 0) return;
    }
    this._subscriptions.delete(channelId);
    if (this._state === State.CONNECTED) {
      await this._register('unsubscribe', channelId, false, now() + this.options.requestTimeout);
    }
  }

  /**
   * Answers requests on a channel or pattern, from Python or Node (§7).
   * The handler's return value (or resolved value) is the response payload;
   * a thrown error becomes a `handler_error` response with
   * `remote_type` = `err.name`. A rejected call leaves no registration
   * behind; a registration is kept across reconnections. One handler per
   * channel or pattern: serving it again rejects until unserve().
   *
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler receives the request message.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<void>} resolves on the server's ack.
   * @throws {Error} the channel is already served by this client.
   */
  async serve(channelId, handler, { timeout = this.options.requestTimeout } = {}) {
    validatePattern(channelId);
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    if (this._responders.has(channelId)) {
      throw new Error(`channel ${JSON.stringify(channelId)} is already served; call unserve() first`);
    }
    const deadline = now() + checkTimeout(timeout);
    this._responders.set(channelId, handler);
    try {
      if (this._state !== State.CONNECTED) await this._ready(deadline);
      await this._register('subscribe', channelId, true, deadline);
    } catch (err) {
      if (this._responders.get(channelId) === handler) this._responders.delete(channelId);
      throw err;
    }
  }

  /**
   * Stops answering requests on a channel or pattern.
   * @param {string} channelId the channel or pattern given to serve().
   * @returns {Promise<void>}
   */
  async unserve(channelId) {
    if (!this._responders.delete(channelId)) return;
    if (this._state === State.CONNECTED) {
      await this._register('unsubscribe', channelId, true, now() + this.options.requestTimeout);
    }
  }

  /**
   * Publishes to every subscriber of the channel's app (§5). With `ack`,
   * resolves with the server's count of connections it was queued for.
   * Without, resolves once the frame is written (waiting for the socket to
   * drain when its buffer is full, which is the publisher's backpressure).
   *
   * @param {string} channelId a concrete channel.
   * @param {unknown} data the payload.
   * @param {{ack?: boolean, headers?: Record<string, string>, timeout?: number}} [options]
   * @returns {Promise<{delivered: number|null}|undefined>}
   * @throws {ForbiddenError} a reserved channel (`system...`, `$sys...`, §4.4), refused before sending.
   */
  async publish(channelId, data, { ack = false, headers, timeout = this.options.requestTimeout } = {}) {
    validateChannel(channelId);
    if (isReserved(channelId)) throw new ForbiddenError(`channel ${JSON.stringify(channelId)} is reserved for the server`);
    const deadline = now() + checkTimeout(timeout);
    if (this._state !== State.CONNECTED) await this._ready(deadline);
    const msg = buildMessage('publish', this.appId, channelId, data, headers ? { headers } : undefined);
    if (!ack) return this._sendAndDrain(msg);
    if (this._conn.legacy) {
      await this._sendAndDrain(msg); // a version-1 server has no acks (§10)
      return { delivered: null };
    }
    msg.ack = true;
    const reply = await this._call(msg, deadline);
    const delivered = reply.payload && typeof reply.payload.delivered === 'number' ? reply.payload.delivered : null;
    return { delivered };
  }

  /**
   * Sends a one-way request: routed like a request, never answered (§6.1).
   *
   * @param {string} channelId a concrete channel.
   * @param {unknown} data the payload.
   * @param {{headers?: Record<string, string>, timeout?: number}} [options]
   * @returns {Promise<void>} resolves once written.
   */
  async notify(channelId, data, { headers, timeout = this.options.requestTimeout } = {}) {
    validateChannel(channelId);
    const deadline = now() + checkTimeout(timeout);
    if (this._state !== State.CONNECTED) await this._ready(deadline);
    await this._sendAndDrain(buildMessage('notification', this.appId, channelId, data, headers ? { headers } : undefined));
  }

  /**
   * Round-trips a ping to the server (§9.1). Never throws. A version-1
   * server never answers pings (§10): then health is the connection state
   * and `latencyMs` is null.
   *
   * @param {{timeout?: number}} [options] milliseconds, default min(requestTimeout, 5 s).
   * @returns {Promise<{healthy: boolean, state: string, latencyMs: number|null, connectionId: string|null, server: string|null, error?: string}>}
   */
  async healthCheck({ timeout = Math.min(this.options.requestTimeout, 5000) } = {}) {
    const base = { state: this._state, connectionId: this._info?.connectionId ?? null, server: this._info?.server ?? null };
    if (this._state !== State.CONNECTED) return { healthy: false, latencyMs: null, ...base, error: ErrorCode.NOT_CONNECTED };
    const conn = this._conn;
    if (conn !== null && conn.legacy) return { healthy: !conn.closed, latencyMs: null, ...base };
    const start = now();
    try {
      await this._call(buildMessage('request', this.appId, SYSTEM_CHANNEL, { action: 'ping' }), start + checkTimeout(timeout));
      return { healthy: true, latencyMs: now() - start, ...base };
    } catch (err) {
      return { healthy: false, latencyMs: null, ...base, error: err.code ?? String(err) };
    }
  }

  /**
   * A snapshot of the connection, for logs and dashboards.
   * @returns {object}
   */
  getConnectionInfo() {
    const info = this._info;
    return {
      appId: this.appId,
      host: this.options.host,
      port: this.options.port,
      state: this._state,
      connected: this._state === State.CONNECTED,
      connectionId: info ? info.connectionId : this._connectionId,
      protocol: info ? info.protocol : null,
      server: info ? info.server : null,
      maxFrameSize: info ? info.maxFrameSize : null,
      heartbeatIntervalMs: this._heartbeat ? this._heartbeat.intervalMs : null,
      heartbeatTimeoutMs: this._heartbeat ? this._heartbeat.timeoutMs : null,
      reconnectAttempt: this._attempt,
      pendingRequests: this._pending.size,
      queuedCalls: this._waiters.size,
      runningHandlers: this._running,
      heldMessages: this._heldCount(),
      subscriptions: [...this._subscriptions.keys()],
      responders: [...this._responders.keys()]
    };
  }

  /**
   * Calls `cb` on every (re)connection.
   * @param {(info: object) => void} cb
   * @returns {() => void} removes the callback.
   */
  onConnected(cb) {
    this.on('connected', cb);
    this.on('reconnected', cb);
    return () => {
      this.off('connected', cb);
      this.off('reconnected', cb);
    };
  }

  /**
   * Calls `cb` whenever the connection is lost or closed.
   * @param {(event: {error: Error|null}) => void} cb
   * @returns {() => void} removes the callback.
   */
  onDisconnected(cb) {
    this.on('disconnected', cb);
    return () => this.off('disconnected', cb);
  }

  /**
   * Calls `cb` with errors that belong to no call: error frames from the
   * server (§6.4), handler failures, failed reconnections.
   * @param {(err: Error) => void} cb
   * @returns {() => void} removes the callback.
   */
  onError(cb) {
    this.on('error', cb);
    return () => this.off('error', cb);
  }

  // ---------------------------------------------------------------- internals

  /**
   * The one place the state changes.
   * @param {string} next
   * @private
   */
  _setState(next) {
    if (!TRANSITIONS[this._state].includes(next)) {
      throw new Error(`internal error: invalid transition ${this._state} -> ${next}`);
    }
    this._state = next;
  }

  /**
   * Emits 'error' only when someone listens: an unhandled error frame from
   * the server must not crash the application.
   * @param {Error} err
   * @private
   */
  _emitError(err) {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /**
   * Opens a connection, restores subscriptions and responders, and only then
   * opens the gate for waiting calls (resubscribe before anything else).
   * @returns {Promise<void>}
   * @private
   */
  async _establish() {
    const conn = new Connection(
      {
        host: this.options.host,
        port: this.options.port,
        appId: this.appId,
        connectionId: this._connectionId,
        token: this.options.token,
        maxFrameSize: this.options.maxFrameSize
      },
      {
        onMessage: (msg) => this._onMessage(conn, msg),
        onError: (err) => this._emitError(err),
        onClose: (err) => this._onConnectionClosed(conn, err)
      }
    );
    this._opening = conn;
    let info;
    try {
      info = await conn.open(this.options.connectionTimeout);
    } finally {
      this._opening = null;
    }
    if (this._state === State.CLOSED) {
      conn.destroy();
      throw new NotConnectedError('the client disconnected');
    }
    this._info = info;
    this._connectionId = info.connectionId;
    this._conn = conn;
    this._startHeartbeat(conn);
    await this._restore(conn);
    if (this._state === State.CLOSED) throw new NotConnectedError('the client disconnected');
    const reconnected = this._state === State.RECONNECTING;
    this._setState(State.CONNECTED);
    this._attempt = 0;
    for (const waiter of this._waiters) waiter.resolve();
    this._waiters.clear();
    this.emit(reconnected ? 'reconnected' : 'connected', info);
  }

  /**
   * Re-sends every subscription and responder registration and waits for
   * the acks. A registration the server now refuses is reported and
   * dropped; a lost connection fails the attempt.
   * @param {Connection} conn
   * @returns {Promise<void>}
   * @private
   */
  async _restore(conn) {
    const deadline = now() + this.options.requestTimeout;
    const work = [];
    for (const pattern of this._subscriptions.keys()) work.push([pattern, false]);
    for (const pattern of this._responders.keys()) work.push([pattern, true]);
    const results = await Promise.allSettled(work.map(([p, serve]) => this._register('subscribe', p, serve, deadline)));
    for (let i = 0; i < results.length; i++) {
      const { status, reason } = results[i];
      if (status === 'fulfilled') continue;
      if (!(reason instanceof RemoteError)) {
        conn.destroy(reason);
        throw reason;
      }
      const [pattern, serve] = work[i];
      (serve ? this._responders : this._subscriptions).delete(pattern);
      this._emitError(reason);
    }
  }

  /**
   * Sends a subscribe/unsubscribe (for a responder: with `{"serve": true}`,
   * §7.1) and waits for the ack; a version-1 server sends none (§10).
   * @param {'subscribe'|'unsubscribe'} type
   * @param {string} pattern
   * @param {boolean} serve
   * @param {number} deadline
   * @returns {Promise<void>}
   * @private
   */
  async _register(type, pattern, serve, deadline) {
    const legacy = this._conn.legacy;
    const payload = serve ? { serve: true } : legacy ? { connection_id: this._connectionId } : null;
    const msg = buildMessage(type, this.appId, pattern, payload);
    if (legacy) await this._sendAndDrain(msg);
    else await this._call(msg, deadline);
  }

  /**
   * The connection-dropped path: everything pending fails at once, then the
   * reconnect loop starts (single flight).
   *
   * The state changes before any event is emitted, so a listener sees the
   * new state and may call disconnect() (or connect()): 'disconnected' is
   * emitted once, and what follows the events re-checks the state.
   * @param {Connection} conn
   * @param {Error|null} err
   * @private
   */
  _onConnectionClosed(conn, err) {
    if (conn !== this._conn) return; // an old connection, or disconnect() already cleaned up
    const reason = new ConnectionLostError(`the connection was lost${err ? `: ${err.message}` : ''}`, { cause: err ?? undefined });
    this._detach(reason);
    if (this._state !== State.CONNECTED) return; // failed during restore: _establish() rejects
    const retry = this.options.reconnect && !(err instanceof UnauthorizedError);
    const next = retry ? State.RECONNECTING : State.CLOSED;
    this._setState(next);
    if (!retry) this._failWaiters(new NotConnectedError('the connection was lost and reconnection is off', { cause: err ?? undefined }));
    this.emit('disconnected', { error: err });
    if (err instanceof IpcError) this._emitError(err); // a protocol error or a heartbeat timeout
    if (this._state !== next) return; // a listener called disconnect() or connect()
    if (retry) this._reconnect();
    else this.emit('close');
  }

  /**
   * Forgets the current connection: stops the heartbeat and rejects every
   * pending call with `reason`.
   * @param {Error} reason
   * @private
   */
  _detach(reason) {
    this._conn = null;
    this._running = 0;
    this._held = []; // requests the server answers responder_lost; at-most-once publishes (§5.3)
    this._heldHead = 0;
    clearTimeout(this._heartbeatTimer);
    this._heartbeatTimer = null;
    this._heartbeat = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(reason);
    }
  }

  /**
   * The reconnect loop: backoff with jitter, up to `reconnectAttempts`.
   * Single flight by construction: it starts only on the CONNECTED ->
   * RECONNECTING transition and runs only while RECONNECTING.
   * @private
   */
  _reconnect() {
    const run = async () => {
      let lastError = null;
      while (this._state === State.RECONNECTING) {
        const attempt = ++this._attempt;
        if (attempt > this.options.reconnectAttempts) return this._giveUp(lastError);
        const { reconnectDelay: initial, reconnectDelayMax: max, reconnectMultiplier: multiplier, reconnectJitter: jitter } = this.options;
        const delay = backoffDelay(attempt, { initial, max, multiplier, jitter });
        this.emit('reconnecting', { attempt, delay });
        if (this._state !== State.RECONNECTING) return; // a listener called disconnect()
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this._wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this._wake = null;
        if (this._state !== State.RECONNECTING) return;
        try {
          return await this._establish();
        } catch (err) {
          lastError = err;
          if (err instanceof UnauthorizedError) return this._giveUp(err);
        }
      }
    };
    const loop = run().finally(() => {
      if (this._connecting === loop) this._connecting = null;
    });
    this._connecting = loop;
  }

  /**
   * Stops reconnecting after too many failures (or a refused token).
   * @param {Error|null} cause
   * @private
   */
  _giveUp(cause) {
    this._setState(State.CLOSED);
    const err = new ConnectionLostError(`gave up reconnecting after ${this._attempt - 1} attempts`, { cause: cause ?? undefined });
    this._failWaiters(new NotConnectedError('gave up reconnecting', { cause: err }));
    this._emitError(err);
    this.emit('close');
  }

  /**
   * Waits until the client is connected, up to `deadline`: at once when
   * connected, not_connected when it never connected or was closed.
   * @param {number} deadline monotonic ms.
   * @returns {Promise<void>}
   * @private
   */
  _ready(deadline) {
    if (this._state === State.CONNECTED) return undefined;
    if (this._state === State.IDLE || this._state === State.CLOSED) {
      return Promise.reject(new NotConnectedError(this._state === State.IDLE ? 'connect() was not called' : 'the client is closed'));
    }
    if (this._waiters.size >= this.options.maxQueued) {
      return Promise.reject(new QueueFullError(`${this._waiters.size} calls are already waiting for a connection`));
    }
    return this._waitConnected(deadline);
  }

  /**
   * Parks a call until the connection is (re)established.
   * @param {number} deadline monotonic ms, or Infinity.
   * @returns {Promise<void>}
   * @private
   */
  _waitConnected(deadline) {
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      if (deadline !== Infinity) {
        waiter.timer = setTimeout(() => {
          this._waiters.delete(waiter);
          reject(new RequestTimeoutError('timed out waiting for the connection'));
        }, Math.max(0, deadline - now()));
      }
      waiter.resolve = () => {
        clearTimeout(waiter.timer);
        resolve();
      };
      waiter.reject = (err) => {
        clearTimeout(waiter.timer);
        reject(err);
      };
      this._waiters.add(waiter);
    });
  }

  /**
   * Rejects every call waiting for a connection.
   * @param {Error} err
   * @private
   */
  _failWaiters(err) {
    const waiters = [...this._waiters];
    this._waiters.clear();
    for (const waiter of waiters) waiter.reject(err);
  }

  /**
   * Sends a message that expects a response and resolves with it. Rejects
   * with the remote error, a local timeout, or connection_lost.
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @returns {Promise<object>} the response message.
   * @private
   */
  _call(msg, deadline) {
    return new Promise((resolve, reject) => {
      const remaining = deadline - now();
      if (remaining <= 0) {
        reject(new RequestTimeoutError('the deadline passed before the call was sent'));
        return;
      }
      if (msg.message_type === 'request') msg.timeout_ms = Math.ceil(remaining);
      const id = msg.message_id;
      const timer = setTimeout(() => {
        if (this._pending.delete(id)) {
          this._rememberSettled(id); // its answer may still come: drop it then
          reject(new RequestTimeoutError(`no answer on ${msg.channel_id} within ${Math.round(remaining)} ms`));
        }
      }, remaining);
      this._pending.set(id, { resolve, reject, timer });
      if (this._conn !== null && this._conn.paused) this._conn.resume(); // its answer must be readable (_admit())
      try {
        this._send(msg);
      } catch (err) {
        this._pending.delete(id);
        clearTimeout(timer);
        reject(err);
      }
    });
  }

  /**
   * Remembers the id of a call that ended without its answer (a local
   * timeout), so that a late answer is dropped instead of being taken for
   * an unsolicited error frame. Bounded: the oldest ids are forgotten.
   * @param {string} id
   * @private
   */
  _rememberSettled(id) {
    this._settled.add(id);
    if (this._settled.size > SETTLED_IDS_KEPT) this._settled.delete(this._settled.values().next().value);
  }

  /**
   * Writes a message on the current connection.
   * @param {object} msg
   * @returns {boolean} false when the socket buffer is full.
   * @private
   */
  _send(msg) {
    if (this._conn === null) throw new ConnectionLostError('the connection is closed');
    return this._conn.send(msg);
  }

  /**
   * Writes a message and, when the socket buffer is full, waits for it to drain.
   * @param {object} msg
   * @returns {Promise<void>|undefined}
   * @private
   */
  _sendAndDrain(msg) {
    const conn = this._conn;
    if (!this._send(msg)) return conn.drained();
    return undefined;
  }

  /**
   * Dispatches one message from the server.
   * @param {Connection} conn the connection it came on.
   * @param {object} msg
   * @private
   */
  _onMessage(conn, msg) {
    switch (msg.message_type) {
      case 'response':
        return this._onResponse(conn, msg);
      case 'request':
        if (msg.channel_id === SYSTEM_CHANNEL) return this._onSystemRequest(conn, msg);
        return this._admit(conn, msg);
      case 'publish':
      case 'notification':
        return this._admit(conn, msg);
      default:
        return undefined; // subscribe/unsubscribe are never sent to clients
    }
  }

  /**
   * Inbound backpressure for the messages that run application handlers
   * (requests to serve, notifications, publishes): dispatched at once while
   * fewer than `highWaterMark` async handlers run, else held back in
   * arrival order until running handlers finish. Responses and pings never
   * wait, so a handler that itself awaits a request still gets its reply.
   *
   * Only when the held-back queue passes `HELD_PAUSE_FACTOR` x
   * `highWaterMark` is the socket paused (TCP backpressure on the server),
   * and never while a call of ours waits for its answer: a paused socket
   * would hide that answer (a handler awaiting it could never finish).
   * A call made while paused resumes reading (see _call()).
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _admit(conn, msg) {
    if (this._heldCount() === 0 && this._running < this.options.highWaterMark) {
      this._dispatch(conn, msg);
      return;
    }
    this._held.push(msg);
    if (this._heldCount() > this.options.highWaterMark * HELD_PAUSE_FACTOR && this._pending.size === 0) conn.pause();
  }

  /**
   * How many inbound messages are held back.
   * @returns {number}
   * @private
   */
  _heldCount() {
    return this._held.length - this._heldHead;
  }

  /**
   * Takes the oldest held-back message (a queue over an array: O(1), the
   * consumed head is dropped in bulk).
   * @returns {object}
   * @private
   */
  _takeHeld() {
    const msg = this._held[this._heldHead];
    this._held[this._heldHead++] = undefined;
    if (this._heldHead === this._held.length) {
      this._held = [];
      this._heldHead = 0;
    } else if (this._heldHead >= 1024 && this._heldHead * 2 >= this._held.length) {
      this._held = this._held.slice(this._heldHead);
      this._heldHead = 0;
    }
    return msg;
  }

  /**
   * Runs the handlers of one admitted message.
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _dispatch(conn, msg) {
    if (msg.message_type === 'publish') this._onPublish(msg);
    else this._onServed(conn, msg, msg.message_type === 'request');
  }

  /**
   * Dispatches held-back messages while there is room, and resumes a
   * paused socket once the held-back queue is down to `lowWaterMark`.
   * @param {Connection} conn
   * @private
   */
  _drainHeld(conn) {
    while (this._heldCount() > 0 && this._running < this.options.highWaterMark && this._conn === conn) {
      this._dispatch(conn, this._takeHeld());
    }
    if (conn.paused && this._conn === conn && this._heldCount() <= this.options.lowWaterMark) conn.resume();
  }

  /**
   * Settles the pending call a response answers, or reports an error frame
   * that answers none (§6.4). A late answer to a call that already timed
   * out locally (typically the server's own `timeout`, a little after ours)
   * is dropped silently.
   *
   * From a version-1 server, a payload that is exactly `{"error": {...}}`
   * is an error answer (§10), as in the Python client.
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _onResponse(conn, msg) {
    const pending = msg.reply_to === null ? undefined : this._pending.get(msg.reply_to);
    if (pending === undefined) {
      if (msg.reply_to !== null && this._settled.delete(msg.reply_to)) return; // a late answer
      if (msg.error) {
        const err = errorFromWire(msg.error);
        err.replyTo = msg.reply_to;
        this._emitError(err);
      }
      return;
    }
    this._pending.delete(msg.reply_to);
    clearTimeout(pending.timer);
    const error = msg.error ?? (conn.legacy ? legacyError(msg.payload) : null);
    if (error) pending.reject(errorFromWire(error));
    else pending.resolve(msg);
  }

  /**
   * Answers the server's pings (§9.1); other system requests are not for clients.
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _onSystemRequest(conn, msg) {
    const action = msg.payload && msg.payload.action;
    if (action === 'ping') {
      this._reply(conn, msg, { status: 'pong' });
      this.emit('ping', { messageId: msg.message_id });
    }
    else this._reply(conn, msg, null, { code: ErrorCode.BAD_MESSAGE, message: `unknown system action ${JSON.stringify(action)}` });
  }

  /**
   * Delivers a publish to every local handler whose pattern matches, each
   * handler once even when several of its patterns match (§5.3).
   * @param {object} msg
   * @private
   */
  _onPublish(msg) {
    let called = null;
    for (const [pattern, handlers] of this._subscriptions) {
      if (!patternMatches(pattern, msg.channel_id)) continue;
      for (const handler of handlers) {
        if (called !== null && called.has(handler)) continue;
        (called ??= new Set()).add(handler);
        this._invoke(handler, msg, null);
      }
    }
    this.emit('message', msg);
  }

  /**
   * Finds the responder for a channel: exact registration first, then
   * patterns in registration order, as the server matches (§7.2).
   * @param {string} channel
   * @returns {Function|undefined}
   * @private
   */
  _findResponder(channel) {
    const exact = this._responders.get(channel);
    if (exact !== undefined) return exact;
    for (const [pattern, handler] of this._responders) {
      if (isPattern(pattern) && patternMatches(pattern, channel)) return handler;
    }
    return undefined;
  }

  /**
   * Runs a responder for a forwarded request (answer = true) or a
   * notification (answer = false).
   * @param {Connection} conn
   * @param {object} msg
   * @param {boolean} answer
   * @private
   */
  _onServed(conn, msg, answer) {
    const handler = this._findResponder(msg.channel_id);
    if (handler === undefined) {
      if (answer) this._reply(conn, msg, null, { code: ErrorCode.NO_RESPONDERS, message: `no responder for ${msg.channel_id}` });
      return;
    }
    this._invoke(handler, msg, answer ? conn : null);
  }

  /**
   * Calls a handler, sync or async. With `conn`, its result (or error) is
   * the response; without, errors go to the 'error' event. Async handlers
   * count towards the inbound high water mark (see _admit()).
   * @param {Function} handler
   * @param {object} msg
   * @param {Connection|null} conn
   * @private
   */
  _invoke(handler, msg, conn) {
    let result;
    try {
      result = handler(msg);
    } catch (err) {
      if (conn !== null) this._replyError(conn, msg, err);
      else this._emitError(err);
      return;
    }
    if (!isThenable(result)) {
      if (conn !== null) this._reply(conn, msg, result);
      return;
    }
    const tracked = this._track();
    Promise.resolve(result).then(
      (value) => {
        this._untrack(tracked);
        if (conn !== null) this._reply(conn, msg, value);
      },
      (err) => {
        this._untrack(tracked);
        if (conn !== null) this._replyError(conn, msg, err);
        else this._emitError(err);
      }
    );
  }

  /**
   * One more async handler running.
   * @returns {Connection|null} the connection it counts against.
   * @private
   */
  _track() {
    this._running++;
    return this._conn;
  }

  /**
   * One async handler done: lets held-back messages in. Handlers of an
   * earlier connection no longer count (the count restarts at 0).
   * @param {Connection|null} conn what _track() returned.
   * @private
   */
  _untrack(conn) {
    if (conn !== this._conn || conn === null) return;
    this._running--;
    this._drainHeld(conn);
  }

  /**
   * Sends the response to a request, on the connection it came from (only
   * that one may answer it, §7.3). If the result cannot be encoded, the
   * requester gets that error instead of a silent timeout.
   * @param {Connection} conn
   * @param {object} request
   * @param {unknown} payload
   * @param {object} [error] an `error` object (§2).
   * @private
   */
  _reply(conn, request, payload, error) {
    if (conn.closed) return; // the server answers responder_lost (§6.2)
    const extra = { reply_to: request.message_id };
    if (error !== undefined) extra.error = error;
    try {
      conn.send(buildMessage('response', this.appId, request.channel_id, error ? null : payload, extra));
    } catch (err) {
      if (error === undefined && !conn.closed) this._replyError(conn, request, err);
    }
  }

  /**
   * Answers a request with the error its handler threw (§6.3).
   * @param {Connection} conn
   * @param {object} request
   * @param {unknown} err
   * @private
   */
  _replyError(conn, request, err) {
    this._reply(conn, request, null, errorToWire(err, { exposeStacks: this.options.exposeStacks }));
  }

  /**
   * Starts the heartbeat with the server's advertised interval unless the
   * options override it (§9.2). A version-1 server is never pinged (§10),
   * nor a server advertising `heartbeat_interval_ms: 0` (heartbeats off)
   * unless `heartbeatInterval` is set.
   * @param {Connection} conn
   * @private
   */
  _startHeartbeat(conn) {
    if (conn.legacy) return;
    const advertised = conn.info.heartbeatIntervalMs;
    if (this.options.heartbeatInterval === null && advertised === 0) return;
    const interval = this.options.heartbeatInterval ?? advertised ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    const timeout = this.options.heartbeatTimeout ?? Math.max(2 * interval, interval + 1);
    this._heartbeat = new Heartbeat(interval, timeout, now());
    this._scheduleHeartbeat();
  }

  /**
   * Arms the heartbeat timer for the next moment it has something to decide.
   * @private
   */
  _scheduleHeartbeat() {
    const delay = Math.max(1, this._heartbeat.nextCheck(now()));
    this._heartbeatTimer = setTimeout(() => this._onHeartbeat(), delay);
    this._heartbeatTimer.unref();
  }

  /**
   * Pings a silent server, or declares it dead and drops the socket, which
   * starts a reconnection. Time spent paused by our own backpressure (past
   * the held-back bound) is not the server's silence.
   * @private
   */
  _onHeartbeat() {
    const conn = this._conn;
    const hb = this._heartbeat;
    if (conn === null || hb === null) return;
    const t = now();
    hb.received(conn.paused ? t : conn.lastReceived);
    const action = hb.poll(t);
    if (action === HeartbeatAction.DEAD) {
      conn.destroy(new RequestTimeoutError(`heartbeat timeout: nothing received for ${Math.round(t - hb.lastReceived)} ms`));
      return;
    }
    if (action === HeartbeatAction.PING) {
      try {
        conn.send(buildMessage('request', this.appId, SYSTEM_CHANNEL, { action: 'ping' }));
      } catch {
        // closed meanwhile: the close path takes over
      }
    }
    this._scheduleHeartbeat();
  }
}

module.exports = { IPCClient, State };
