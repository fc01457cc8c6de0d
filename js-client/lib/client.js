'use strict';

/**
 * IPCClient: requests, responders, pub/sub, heartbeats, reconnection, the
 * offline queue and the circuit breaker (docs/resilience.md) on top of one
 * Connection at a time.
 *
 * Connection state moves only through `_setState()`, checked against the
 * table in lib/state.js. Every outgoing call passes one choke point,
 * `_submit()`: sent at once when connected with nothing queued ahead of it,
 * else queued (or refused). Every call settles exactly once: by its
 * response, its own deadline (in the queue or on the wire), the loss of the
 * connection, or a queue decision (full, evicted, given up).
 */

const { EventEmitter } = require('node:events');
const { randomBytes } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { SYSTEM_CHANNEL, HEADER_SIZE_BYTES, DEFAULT_MAX_FRAME_SIZE_BYTES } = require('./constants');
const { warnUnhandled } = require('./warnings');
const { parseOptions, ON_DISCONNECT } = require('./options');
const { toNumber } = require('./legacy_options');
const { backoffDelay } = require('./backoff');
const { Heartbeat, HeartbeatAction } = require('./heartbeat');
const { Connection, now } = require('./connection');
const { buildMessage, encodeMessage } = require('./envelope');
const { validateChannel, validatePattern, isPattern, isReserved, patternMatches } = require('./channels');
const { State, transition } = require('./state');
const { OfflineQueue } = require('./offline_queue');
const { QueueStore } = require('./queue_store');
const { CircuitBreaker } = require('./circuit_breaker');
const { Metrics } = require('./metrics');
const {
  AlreadyServingError,
  ErrorCode,
  IpcError,
  ProtocolError,
  CircuitOpenError,
  ConnectionLostError,
  ForbiddenError,
  FrameTooLargeError,
  NotConnectedError,
  QueueFullError,
  RemoteError,
  RequestTimeoutError,
  UnauthorizedError,
  errorFromWire,
  errorToWire
} = require('./errors');

const DEFAULT_HEARTBEAT_INTERVAL_MS = 15_000; // §9.3, when the server does not say
/** How many ids of calls that expired locally are remembered, to drop their late answers. */
const SETTLED_IDS_KEPT = 1024;
/** subscribe()/serve() calls that may wait for a (re)connection at once. */
const MAX_WAITING_REGISTRATIONS = 1024;
/** setTimeout's ceiling; a longer deadline gets no timer (it is as good as none). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Breaker key when `circuitBreaker.scope` is 'client'. */
const CLIENT_SCOPE_KEY = '*';

/**
 * Epoch milliseconds that never jump back: wall-clock origin, monotonic progress.
 * @returns {number}
 * @private
 */
function epochNow() {
  return performance.timeOrigin + performance.now();
}

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
 * Checks a per-call timeout argument (a numeric string is read as its number).
 * @param {unknown} timeout milliseconds.
 * @returns {number}
 * @private
 */
function checkTimeout(timeout) {
  timeout = toNumber(timeout);
  if (typeof timeout !== 'number' || !(timeout > 0)) {
    throw new TypeError(`timeout must be a positive number of milliseconds, got ${String(timeout)}`);
  }
  return timeout;
}

/**
 * Reads the per-call options of sendRequest/publish/notify (docs/resilience.md §4).
 * @param {object} options
 * @param {number} defaultTimeout
 * @param {string} defaultPolicy the client's `onDisconnect`.
 * @returns {{headers: object|undefined, priority: number, onDisconnect: string, timeout: number}}
 * @private
 */
function callOptions(options, defaultTimeout, defaultPolicy) {
  if (options === null || typeof options !== 'object') throw new TypeError('call options must be an object');
  const { headers, priority = 0, onDisconnect = defaultPolicy, timeout = defaultTimeout } = options;
  if (!Number.isSafeInteger(priority)) throw new TypeError(`priority must be an integer, got ${String(priority)}`);
  if (!ON_DISCONNECT.includes(onDisconnect)) throw new TypeError(`onDisconnect must be 'queue' or 'fail', got ${String(onDisconnect)}`);
  return { headers, priority, onDisconnect, timeout: checkTimeout(timeout) };
}

/**
 * Whether an error is a local failure (the metrics' `messagesFailed`)
 * rather than an answer from the other side.
 * @param {unknown} err
 * @returns {boolean}
 * @private
 */
function isLocalFailure(err) {
  if (err instanceof RemoteError) return false;
  if (err instanceof RequestTimeoutError) return !err.remote;
  return true;
}

/**
 * Whether a call was refused before it left the process (it cannot be
 * encoded, or is larger than the frame limit): it says nothing about the
 * service, so the circuit breaker does not count it (as in Python).
 * @param {unknown} err
 * @returns {boolean}
 * @private
 */
function isLocalRefusal(err) {
  return err instanceof ProtocolError || err instanceof TypeError || err instanceof RangeError;
}

/**
 * Whether a fallback's result already is a message (returned as it is).
 * @param {unknown} value
 * @returns {boolean}
 * @private
 */
function isMessage(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.message_type === 'string' &&
    typeof value.message_id === 'string' &&
    typeof value.channel_id === 'string'
  );
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
 * A call waiting in the offline queue.
 * @typedef {object} QueuedCall
 * @property {string} id the message id.
 * @property {number} priority
 * @property {number} bytes encoded frame size.
 * @property {number} deadline monotonic ms.
 * @property {object} msg the envelope.
 * @property {boolean} expectReply a request (or publish with ack): a caller waits for it.
 * @property {boolean} persisted also in the queue file.
 * @property {Function|null} resolve
 * @property {Function|null} reject
 */

/**
 * Node.js client of the IPC bridge.
 *
 * Events (docs/resilience.md §2): 'connecting', 'connected' (info),
 * 'disconnected' (error|null), 'reconnecting' ({attempt, delay}),
 * 'reconnected' ({attempts, elapsed}), 'reconnect_failed' (attempts),
 * 'heartbeat' ({latency}), 'heartbeat_timeout' ({silent}), 'queue_dropped'
 * ({reason, channel, messageType, priority}), 'circuit_open',
 * 'circuit_half_open', 'circuit_closed' (snapshot), 'error'; also
 * 'message' (publish), 'ping' (the server pinged us) and 'close' (closed
 * for good).
 *
 * Errors no call waits for (error frames, handler failures, a failed
 * reconnection, a throwing listener) go to 'error' when someone listens,
 * else each becomes one process warning (lib/warnings.js): never dropped,
 * never a crash. A listener that throws never breaks the client.
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
    this._state = State.DISCONNECTED;
    this._conn = null; // the connection once its handshake is done
    this._opening = null; // a connection still in its handshake
    this._info = null;
    this._connectionId = this.options.connectionId ?? `node-${randomBytes(6).toString('hex')}`;
    this._pending = new Map(); // message_id -> {resolve, reject, timer}
    this._settled = new Set(); // message_ids of calls that expired locally, oldest first (bounded)
    this._subscriptions = new Map(); // pattern -> Set<handler>
    this._responders = new Map(); // pattern -> handler, in registration order
    this._waiters = new Set(); // subscribe/serve calls waiting for a connection
    this._connecting = null; // single-flight promise of connect() / the reconnect loop
    this._generation = 0; // bumped by connect() and disconnect(): an older attempt knows it is stale
    this._closing = null; // disconnect()'s promise while DISCONNECTING
    this._wake = null; // ends the reconnect backoff sleep early
    this._attempt = 0;
    this._firstWait = false; // connect() waits through the reconnect loop (waitOnFirstConnect)
    this._heartbeat = null;
    this._heartbeatTimer = null;
    this._ping = null; // {id, sentAt} of the heartbeat ping awaiting its pong
    this._latencyMs = null;
    this._lastHeartbeat = null; // epoch ms of the last pong
    this._lastReceived = null; // monotonic ms of the last frame of a closed connection
    this._sendLimit = null; // the last negotiated frame limit
    this._running = 0; // async handlers in flight, for inbound backpressure
    this._held = []; // {msg, expires} of inbound work waiting for a handler slot, from _heldHead on
    this._heldHead = 0;
    this._queue = new OfflineQueue({
      maxSize: this.options.queueMaxSize,
      maxBytes: this.options.queueMaxBytes,
      overflow: this.options.queueOverflow
    });
    this._queueTimer = null;
    this._queueTimerAt = Infinity;
    this._replaying = null; // the connection the queue is being replayed on
    this._breakers = new Map(); // key -> CircuitBreaker
    this._metrics = new Metrics({ now });
    this._store = this.options.queuePath === null ? null : new QueueStore(this.options.queuePath);
    if (this._store !== null) this._loadStore();
  }

  /**
   * The connection state: 'disconnected', 'connecting', 'connected', 'reconnecting' or 'disconnecting'.
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
   * Messages persisted by an earlier run (`queuePath`) are sent once
   * connected. If the attempt fails, calls queued meanwhile fail with
   * not_connected at once, unless `waitOnFirstConnect` is set: then the
   * client moves to 'reconnecting' and keeps trying with the reconnect
   * policy, and the promise settles with the first success or once
   * `maxRetries` attempts are spent ('reconnect_failed'). A 'connected'
   * (or any other) listener that throws does not reject it: its error goes
   * to 'error' (or a process warning), and the connection stays up.
   *
   * @returns {Promise<true>}
   * @throws {NotConnectedError} the server could not be reached (`.cause`
   *   has the socket error), did not complete the handshake within
   *   `connectTimeout` (`.cause` is the RequestTimeoutError), or, with
   *   `waitOnFirstConnect`, every attempt failed or disconnect() was called.
   * @throws {UnauthorizedError} the server refused the token.
   */
  connect() {
    if (this._state === State.CONNECTED) return Promise.resolve(true);
    if (this._state === State.CONNECTING) return this._connecting;
    if (this._state === State.RECONNECTING) return this._waitConnected(Infinity).then(() => true);
    if (this._state === State.DISCONNECTING) return this._closing.then(() => this.connect());
    if (this._store !== null && !this._store.locked) {
      // disconnect() gave the file back: take it again and trust what it holds now
      try {
        this._queue.removeWhere((e) => e.persisted);
        this._loadStore();
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const generation = ++this._generation;
    this._setState(State.CONNECTING);
    this._emitSafely('connecting');
    const attempt = this._establish(generation).then(
      () => {
        if (this._connecting === attempt) this._connecting = null;
        return true;
      },
      (err) => {
        if (this._connecting === attempt) this._connecting = null;
        if (this._state === State.CONNECTING && this._generation === generation && this.options.waitOnFirstConnect && !(err instanceof UnauthorizedError)) {
          return this._keepConnecting(generation, err);
        }
        if (this._state === State.CONNECTING && this._generation === generation) {
          this._setState(State.DISCONNECTED);
          const reason = new NotConnectedError('the connection attempt failed', { cause: err });
          this._failWaiters(reason);
          this._abandonQueue(reason);
        }
        throw err;
      }
    );
    this._connecting = attempt;
    return attempt;
  }

  /**
   * Closes the connection and stops reconnecting. Pending calls reject with
   * connection_lost; queued and waiting calls with not_connected; queued
   * one-way messages are dropped ('queue_dropped', reason 'gave_up') unless
   * persisted, in which case they stay for the next connect() or the next
   * client started on the same `queuePath`.
   *
   * @returns {Promise<void>} resolves once the socket is closed.
   */
  disconnect() {
    if (this._state === State.DISCONNECTED) {
      if (this._store !== null) this._store.close();
      return Promise.resolve();
    }
    if (this._state === State.DISCONNECTING) return this._closing;
    const wasConnected = this._state === State.CONNECTED;
    this._generation++; // an attempt still opening is now stale
    this._setState(State.DISCONNECTING);
    const conn = this._conn;
    this._detach(new ConnectionLostError('the client disconnected'));
    this._metrics.closed(false);
    if (this._opening !== null) this._opening.destroy(new NotConnectedError('the client disconnected'));
    if (this._wake !== null) this._wake();
    const reason = new NotConnectedError('the client disconnected');
    this._failWaiters(reason);
    this._abandonQueue(reason);
    if (wasConnected) this._emitSafely('disconnected', null);
    const closing = (conn ? conn.close() : Promise.resolve()).then(() => {
      this._closing = null;
      if (this._store !== null) this._store.close(); // the file is another client's to take until connect()
      this._setState(State.DISCONNECTED);
      this._emitSafely('close');
    });
    this._closing = closing;
    return closing;
  }

  /**
   * Sends a request and resolves with the response message (§6).
   *
   * While the client is (re)connecting the request waits in the offline
   * queue; its deadline counts from this call, queue time included, and
   * the `timeout_ms` it carries is what is left when it is sent.
   *
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload] any JSON value.
   * @param {number|object} [timeout] milliseconds (or the options object).
   * @param {{headers?: Record<string, string>, priority?: number, onDisconnect?: 'queue'|'fail', timeout?: number}} [options]
   * @returns {Promise<object>} the response message; its `.payload` is the
   *   result (or, when the circuit is open and a `fallback` is set, a response message whose
   *   payload is what the fallback returns, or the fallback's own message).
   * @throws {IpcError} `.code` no_responders, timeout, handler_error (with
   *   `.remoteType`), connection_lost, not_connected, queue_full,
   *   circuit_open (with `.retryAfter` ms), bad_message...
   */
  async sendRequest(channelId, payload = null, timeout, options = {}) {
    if (timeout !== null && typeof timeout === 'object') {
      options = timeout;
      timeout = undefined;
    }
    validateChannel(channelId);
    const call = callOptions(options ?? {}, this.options.requestTimeout, this.options.onDisconnect);
    if (timeout != null) call.timeout = checkTimeout(timeout); // the positional argument wins
    const deadline = now() + call.timeout;
    const msg = buildMessage('request', this.appId, channelId, payload, call.headers ? { headers: call.headers } : undefined);
    const breaker = this._breakerFor(channelId);
    const permit = breaker === null ? null : breaker.acquire();
    if (breaker !== null && permit === null) {
      const retryAfter = breaker.retryAfter();
      const err = new CircuitOpenError(`the circuit for ${JSON.stringify(channelId)} is open; retry in ${Math.ceil(retryAfter)} ms`, { retryAfter });
      const { fallback } = this.options.circuitBreaker;
      if (fallback === null) {
        this._metrics.failed();
        throw err;
      }
      const result = await fallback(channelId, payload, err);
      return isMessage(result) ? result : buildMessage('response', this.appId, channelId, result, { reply_to: msg.message_id });
    }
    let reply;
    let failure = null;
    try {
      reply = await this._submit(msg, deadline, call, true);
    } catch (err) {
      failure = err;
    }
    if (permit !== null) {
      // once, outside the try: a throwing circuit_* listener must not release it again
      if (failure !== null && isLocalRefusal(failure)) breaker.cancel(permit); // never reached the service
      else breaker.release(permit, failure);
    }
    if (failure !== null) {
      this._countFailure(failure);
      throw failure;
    }
    this._metrics.delivered();
    return reply;
  }

  /**
   * sendRequest() resolving the response's payload only (the Python
   * client's `request()`): same arguments, same errors.
   *
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload] any JSON value.
   * @param {number|object} [timeout] milliseconds (or the options object).
   * @param {{headers?: Record<string, string>, priority?: number, onDisconnect?: 'queue'|'fail', timeout?: number}} [options]
   * @returns {Promise<unknown>} the response payload.
   * @throws {IpcError} as sendRequest().
   */
  async request(channelId, payload = null, timeout, options = {}) {
    return (await this.sendRequest(channelId, payload, timeout, options)).payload;
  }

  /**
   * Asks the `system` channel (docs/protocol.md §8): the server answers
   * `ping`, `stats`, `channels` and `services` itself; any other action
   * goes to whoever serves `system` in this app (`no_responders` when
   * nobody does).
   *
   * @param {string} action e.g. 'stats', or an application action such as 'get_time'.
   * @param {{timeout?: number}} [options] milliseconds, default `requestTimeout`.
   * @returns {Promise<unknown>} the answer's payload.
   * @throws {IpcError} as sendRequest().
   */
  async system(action, { timeout } = {}) {
    if (typeof action !== 'string' || action.length === 0) throw new TypeError('action must be a non-empty string');
    return (await this.sendRequest(SYSTEM_CHANNEL, { action }, timeout)).payload;
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
   * `system` itself may be served: the server routes there the `system`
   * actions it does not answer itself (§8), and the client keeps answering
   * the server's pings. Every other reserved channel (`system.x`,
   * `$sys...`, patterns under them) is refused before anything is sent.
   *
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler receives the request message.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<void>} resolves on the server's ack.
   * @throws {AlreadyServingError} the channel is already served by this client.
   * @throws {ForbiddenError} a reserved channel other than `system`.
   */
  async serve(channelId, handler, { timeout = this.options.requestTimeout } = {}) {
    validatePattern(channelId);
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    if (channelId !== SYSTEM_CHANNEL && isReserved(channelId)) {
      throw new ForbiddenError(`channel ${JSON.stringify(channelId)} is reserved for the server`);
    }
    if (this._responders.has(channelId)) throw new AlreadyServingError(channelId);
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
    const handler = this._responders.get(channelId);
    if (handler === undefined) return;
    // Keep answering until the server acknowledged: requests it forwarded
    // before that arrive first, and run here instead of failing with
    // no_responders while another responder could have taken them.
    try {
      if (this._state === State.CONNECTED) {
        await this._register('unsubscribe', channelId, true, now() + this.options.requestTimeout);
      }
    } finally {
      if (this._responders.get(channelId) === handler) this._responders.delete(channelId);
    }
  }

  /**
   * Publishes to every subscriber of the channel's app (§5). With `ack`,
   * resolves with the server's count of connections it was queued for.
   * Without, resolves once the frame is written (waiting for the socket to
   * drain when its buffer is full, which is the publisher's backpressure,
   * but never past the call's `timeout`: then it rejects with timeout),
   * or, while reconnecting, once it is accepted into the offline queue
   * (and written to `queuePath`); a later drop is reported by the
   * 'queue_dropped' event, never by this promise.
   *
   * @param {string} channelId a concrete channel.
   * @param {unknown} data the payload.
   * @param {{ack?: boolean, headers?: Record<string, string>, timeout?: number, priority?: number, onDisconnect?: 'queue'|'fail'}} [options]
   * @returns {Promise<{delivered: number|null}|undefined>}
   * @throws {ForbiddenError} a reserved channel (`system...`, `$sys...`, §4.4), refused before sending.
   */
  async publish(channelId, data, options = {}) {
    validateChannel(channelId);
    if (isReserved(channelId)) throw new ForbiddenError(`channel ${JSON.stringify(channelId)} is reserved for the server`);
    const call = callOptions(options ?? {}, this.options.requestTimeout, this.options.onDisconnect);
    const ack = !!(options && options.ack);
    const deadline = now() + call.timeout;
    const msg = buildMessage('publish', this.appId, channelId, data, call.headers ? { headers: call.headers } : undefined);
    if (ack) msg.ack = true;
    try {
      if (!ack) return await this._submit(msg, deadline, call, false);
      const reply = await this._submit(msg, deadline, call, true);
      this._metrics.delivered();
      const delivered = reply.payload && typeof reply.payload.delivered === 'number' ? reply.payload.delivered : null;
      return { delivered };
    } catch (err) {
      this._countFailure(err);
      throw err;
    }
  }

  /**
   * Sends a one-way request: routed like a request, never answered (§6.1).
   * Resolves like publish() without ack.
   *
   * @param {string} channelId a concrete channel.
   * @param {unknown} data the payload.
   * @param {{headers?: Record<string, string>, timeout?: number, priority?: number, onDisconnect?: 'queue'|'fail'}} [options]
   * @returns {Promise<void>} resolves once written, or accepted into the offline queue.
   */
  async notify(channelId, data, options = {}) {
    validateChannel(channelId);
    const call = callOptions(options ?? {}, this.options.requestTimeout, this.options.onDisconnect);
    const deadline = now() + call.timeout;
    const msg = buildMessage('notification', this.appId, channelId, data, call.headers ? { headers: call.headers } : undefined);
    try {
      await this._submit(msg, deadline, call, false);
    } catch (err) {
      this._countFailure(err);
      throw err;
    }
  }

  /**
   * Whether a ping round trip (§9.1) succeeds within the timeout. Never
   * throws. Against a version-1 server, which never answers pings (§10),
   * it is whether the connection is up. health() gives the details.
   *
   * @param {{timeout?: number}} [options] milliseconds, default min(requestTimeout, 5 s).
   * @returns {Promise<boolean>}
   */
  async healthCheck(options) {
    return (await this.health(options)).healthy;
  }

  /**
   * Round-trips a ping to the server (§9.1) and describes the outcome.
   * Never throws. A version-1 server never answers pings (§10): then
   * health is the connection state and `latencyMs` is null.
   *
   * @param {{timeout?: number}} [options] milliseconds, default min(requestTimeout, 5 s).
   * @returns {Promise<{healthy: boolean, state: string, latencyMs: number|null, connectionId: string|null, server: string|null, error?: string}>}
   */
  async health({ timeout = Math.min(this.options.requestTimeout, 5000) } = {}) {
    const base = { state: this._state, connectionId: this._info?.connectionId ?? null, server: this._info?.server ?? null };
    if (this._state !== State.CONNECTED) return { healthy: false, latencyMs: null, ...base, error: ErrorCode.NOT_CONNECTED };
    const conn = this._conn;
    if (conn !== null && conn.legacy) return { healthy: !conn.closed, latencyMs: null, ...base };
    const start = now();
    try {
      await this._call(buildMessage('request', this.appId, SYSTEM_CHANNEL, { action: 'ping' }), start + checkTimeout(timeout));
      const latencyMs = now() - start;
      this._pong(latencyMs);
      return { healthy: true, latencyMs, ...base };
    } catch (err) {
      return { healthy: false, latencyMs: null, ...base, error: err.code ?? String(err) };
    }
  }

  /**
   * The connection's health without a round trip (docs/resilience.md §5).
   * Times are epoch ms.
   * @returns {{healthy: boolean, state: string, lastHeartbeat: number|null, lastReceived: number|null, latencyMs: number|null, heartbeatIntervalMs: number|null, heartbeatTimeoutMs: number|null}}
   */
  getConnectionHealth() {
    const conn = this._conn;
    const hb = this._heartbeat;
    const received = conn !== null ? conn.lastReceived : this._lastReceived;
    const healthy = this._state === State.CONNECTED && conn !== null && (hb === null || now() - conn.lastReceived <= hb.intervalMs);
    return {
      healthy,
      state: this._state,
      lastHeartbeat: this._lastHeartbeat,
      lastReceived: received === null ? null : performance.timeOrigin + received,
      latencyMs: this._latencyMs,
      heartbeatIntervalMs: hb ? hb.intervalMs : null,
      heartbeatTimeoutMs: hb ? hb.timeoutMs : null
    };
  }

  /**
   * The KPI counters since the client was created (docs/resilience.md §2).
   * @returns {object} connectionAttempts, connectionSuccesses, connectionSuccessRate,
   *   reconnections, averageReconnectionTimeMs, messagesSent, messagesDelivered,
   *   messagesFailed, messageDeliveryRate, activeConnections,
   *   averageConnectionDurationMs, queued, queuedBytes, queueDropped.
   */
  getMetrics() {
    return this._metrics.snapshot({ queued: this._queue.size, queuedBytes: this._queue.bytes, queueDropped: this._queue.dropped });
  }

  /**
   * The offline queue's counters (docs/resilience.md §4).
   * @returns {{size: number, bytes: number, maxSize: number, maxBytes: number, dropped: number, byPriority: Record<string, number>}}
   */
  queueStats() {
    return this._queue.stats();
  }

  /**
   * Every circuit breaker's snapshot, by channel (or '*' with scope 'client').
   * @returns {Record<string, {key: string, state: string, consecutiveFailures: number, consecutiveSuccesses: number, failures: number, successes: number, rejected: number, openedAt: number|null}>}
   */
  circuitBreakers() {
    const out = {};
    for (const [key, breaker] of this._breakers) out[key] = breaker.snapshot();
    return out;
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
      queuedCalls: this._queue.size + this._waiters.size,
      runningHandlers: this._running,
      heldMessages: this._heldCount(),
      subscriptions: [...this._subscriptions.keys()],
      responders: [...this._responders.keys()]
    };
  }

  /**
   * Calls `cb` on every (re)connection ('connected' fires for both).
   * @param {(info: object) => void} cb
   * @returns {() => void} removes the callback.
   */
  onConnected(cb) {
    this.on('connected', cb);
    return () => this.off('connected', cb);
  }

  /**
   * Calls `cb` whenever an established connection is lost or closed.
   * @param {(error: Error|null) => void} cb
   * @returns {() => void} removes the callback.
   */
  onDisconnected(cb) {
    this.on('disconnected', cb);
    return () => this.off('disconnected', cb);
  }

  /**
   * Calls `cb` with errors that belong to no call: error frames from the
   * server (§6.4), handler failures, failed reconnections, listeners that
   * threw. Without any, each such error is a process warning.
   * @param {(err: Error) => void} cb
   * @returns {() => void} removes the callback.
   */
  onError(cb) {
    this.on('error', cb);
    return () => this.off('error', cb);
  }

  // ---------------------------------------------------------------- internals

  /**
   * The one place the state changes (lib/state.js has the table).
   * @param {string} next
   * @private
   */
  _setState(next) {
    this._state = transition(this._state, next);
  }

  /**
   * Reports an error no caller waits for: on 'error' when someone listens,
   * else as one process warning, so it is neither dropped nor a crash (an
   * 'error' event nobody listens for throws). Never throws: an 'error'
   * listener that throws becomes a warning too.
   * @param {unknown} err
   * @param {string} [context] what happened, for the warning's message.
   * @private
   */
  _emitError(err, context) {
    if (this.listenerCount('error') === 0) {
      warnUnhandled(err, context);
      return;
    }
    try {
      this.emit('error', err);
    } catch (thrown) {
      warnUnhandled(thrown, "an 'error' listener threw");
    }
  }

  /**
   * Emits an event from a place where a throwing listener must not break
   * the client's own bookkeeping, reject a call or a background promise,
   * or escape into a socket callback: the listener's error is reported
   * (see _emitError()) and the client carries on. Each listener is called
   * on its own, so one that throws does not keep the next from running
   * (as emit() would), and an async listener's rejection is reported too
   * instead of becoming an unhandled rejection.
   * @param {string} event
   * @param {...unknown} args
   * @private
   */
  _emitSafely(event, ...args) {
    if (this.listenerCount(event) === 0) return; // every publish passes here ('message')
    const context = `a '${event}' listener threw`;
    for (const listener of this.rawListeners(event)) {
      let result;
      try {
        result = listener.apply(this, args); // a once() wrapper removes itself, as in emit()
      } catch (err) {
        this._emitError(err, context);
        continue;
      }
      if (isThenable(result)) Promise.resolve(result).catch((err) => this._emitError(err, context));
    }
  }

  /**
   * Counts a failed call in the metrics unless the other side answered it.
   * @param {unknown} err
   * @private
   */
  _countFailure(err) {
    if (isLocalFailure(err)) this._metrics.failed();
    else this._metrics.delivered();
  }

  /**
   * The breaker guarding a channel, created on first use; null when off.
   * @param {string} channelId
   * @returns {CircuitBreaker|null}
   * @private
   */
  _breakerFor(channelId) {
    const options = this.options.circuitBreaker;
    if (options === null) return null;
    const key = options.scope === 'client' ? CLIENT_SCOPE_KEY : channelId;
    let breaker = this._breakers.get(key);
    if (breaker === undefined) {
      breaker = new CircuitBreaker(options, {
        now: epochNow,
        key,
        onChange: (state, snapshot) => this._emitSafely(`circuit_${state}`, snapshot)
      });
      this._breakers.set(key, breaker);
    }
    return breaker;
  }

  // ------------------------------------------------------ the outgoing path

  /**
   * The choke point of every request and one-way message (docs/resilience.md §4).
   *
   * Connected with nothing queued: sent now. Connecting or reconnecting
   * (or connected while the queue is replayed, to keep order): queued,
   * unless the call's policy is 'fail' or queueing is off. Disconnected:
   * not_connected, since nothing would ever send it.
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @param {{priority: number, onDisconnect: string}} call
   * @param {boolean} expectReply a request, or a publish with ack.
   * @returns {Promise<object>|Promise<void>|undefined} the reply (expectReply), else when written/queued.
   * @private
   */
  _submit(msg, deadline, call, expectReply) {
    const state = this._state;
    if (state === State.CONNECTED && this._queue.size === 0 && this._replaying === null) {
      return expectReply ? this._request(msg, deadline) : this._sendOneWay(msg, deadline);
    }
    if (state === State.DISCONNECTED || state === State.DISCONNECTING) {
      throw new NotConnectedError(state === State.DISCONNECTING ? 'the client is disconnecting' : 'the client is not connected');
    }
    if (state !== State.CONNECTED && (call.onDisconnect === 'fail' || this.options.queueMaxSize === 0)) {
      throw new NotConnectedError(`the client is ${state}`);
    }
    const promise = this._enqueue(msg, deadline, call.priority, expectReply);
    if (state === State.CONNECTED && this._replaying === null) this._startReplay(this._conn);
    return promise;
  }

  /**
   * Puts a call in the offline queue (and a one-way message in the queue
   * file). Evicted entries fail with queue_full now.
   * @param {object} msg
   * @param {number} deadline
   * @param {number} priority
   * @param {boolean} expectReply
   * @returns {Promise<object>|undefined} the reply, for a request.
   * @throws {QueueFullError} the queue refused it.
   * @throws {MessageError|FrameTooLargeError} it could never be sent.
   * @private
   */
  _enqueue(msg, deadline, priority, expectReply) {
    const body = encodeMessage(msg); // fails now, not later, on what cannot be sent
    const limit = this._sendLimit ?? this.options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE_BYTES;
    if (body.length > limit) throw new FrameTooLargeError(body.length, limit);
    /** @type {QueuedCall} */
    const entry = {
      id: msg.message_id,
      priority,
      bytes: HEADER_SIZE_BYTES + body.length,
      deadline,
      msg,
      expectReply,
      persisted: false,
      resolve: null,
      reject: null
    };
    const { accepted, evicted } = this._queue.push(entry);
    for (const victim of evicted) this._drop(victim, 'evicted', new QueueFullError('evicted from the offline queue to make room'));
    if (!accepted) {
      const stats = this._queue.stats();
      throw new QueueFullError(`the offline queue is full (${stats.size} calls, ${stats.bytes} bytes)`);
    }
    if (!expectReply && this._store !== null) {
      try {
        const left = deadline - now();
        this._store.add({ id: entry.id, priority, expiresAt: Number.isFinite(left) ? Date.now() + left : Number.MAX_SAFE_INTEGER, message: msg });
        entry.persisted = true;
      } catch (err) {
        this._queue.remove(entry.id);
        this._queue.dropped++; // it left the queue unsent; the caller gets the error
        throw err;
      }
    }
    this._armQueueTimer(deadline);
    if (!expectReply) return undefined;
    return new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
  }

  /**
   * Ends a queued call that will not be sent: a request rejects with
   * `error`; a one-way message is reported by 'queue_dropped' and counted.
   * @param {QueuedCall} entry already out of the queue.
   * @param {'expired'|'evicted'|'gave_up'|'refused'} reason
   * @param {Error} error
   * @private
   */
  _drop(entry, reason, error) {
    if (entry.expectReply) {
      entry.reject(error);
      return;
    }
    if (entry.persisted) this._store.remove(entry.id);
    this._metrics.failed();
    this._emitSafely('queue_dropped', { reason, channel: entry.msg.channel_id, messageType: entry.msg.message_type, priority: entry.priority });
  }

  /**
   * Fails or drops everything queued when no connection is coming.
   * Persisted one-way messages stay, in memory and on disk, for a later
   * connect() or the next client on the same file.
   * @param {Error} error what waiting requests reject with.
   * @private
   */
  _abandonQueue(error) {
    for (const entry of this._queue.removeWhere((e) => !e.persisted)) this._drop(entry, 'gave_up', error);
    if (this._queue.size === 0) this._disarmQueueTimer();
  }

  /**
   * Arms the one timer of the queue for `deadline` unless an earlier one is set.
   * @param {number} deadline monotonic ms.
   * @private
   */
  _armQueueTimer(deadline) {
    if (!Number.isFinite(deadline) || deadline >= this._queueTimerAt) return;
    const delay = deadline - now();
    if (delay > MAX_TIMER_MS) return;
    clearTimeout(this._queueTimer);
    this._queueTimerAt = deadline;
    this._queueTimer = setTimeout(() => this._onQueueTimer(), Math.max(0, Math.ceil(delay)));
    this._queueTimer.unref(); // the reconnect loop, not the queue, keeps the process alive
  }

  /** @private */
  _disarmQueueTimer() {
    clearTimeout(this._queueTimer);
    this._queueTimer = null;
    this._queueTimerAt = Infinity;
  }

  /**
   * Expires what is due: requests reject with timeout at their own deadline.
   * @private
   */
  _onQueueTimer() {
    this._disarmQueueTimer();
    this._expireQueued();
    const next = this._queue.nextDeadline();
    if (next !== null) this._armQueueTimer(next);
  }

  /** @private */
  _expireQueued() {
    for (const entry of this._queue.expire(now())) {
      this._drop(entry, 'expired', new RequestTimeoutError(`no connection for ${entry.msg.channel_id} before its deadline (it waited in the offline queue)`));
    }
  }

  /**
   * Starts the replay; a failure no caller waits for goes to 'error'.
   * @param {Connection} conn
   * @private
   */
  _startReplay(conn) {
    this._replay(conn).catch((err) => this._emitError(err));
  }

  /**
   * Writes the offline queue on a restored connection, highest priority
   * first, FIFO within a priority (docs/resilience.md §3 step 3). Calls
   * made meanwhile queue behind. Stops, keeping what is left, when the
   * connection goes; requests already written then fail with
   * connection_lost like any in-flight call.
   * @param {Connection} conn
   * @returns {Promise<void>}
   * @private
   */
  async _replay(conn) {
    this._replaying = conn;
    try {
      while (this._conn === conn && this._state === State.CONNECTED && conn.writable) {
        this._expireQueued();
        const entry = this._queue.shift();
        if (entry === undefined) break;
        if (entry.expectReply) {
          this._request(entry.msg, entry.deadline, () => this._queue.dropped++).then(entry.resolve, entry.reject);
          continue;
        }
        let flushed;
        // a persisted message leaves the file only once the socket has taken its bytes; if
        // the connection fails first, it stays on disk for the next load (at least once)
        const onWritten = entry.persisted ? (err) => err || this._forget(entry.id) : undefined;
        try {
          flushed = this._writeOneWay(entry.msg, onWritten);
        } catch (err) {
          if (err instanceof ConnectionLostError) {
            this._queue.unshift(entry);
            break;
          }
          this._queue.dropped++; // e.g. larger than the new server accepts
          this._drop(entry, 'refused', err);
          this._emitError(err);
          continue;
        }
        if (!flushed) await conn.drained();
      }
    } finally {
      if (this._replaying === conn) this._replaying = null;
    }
    if (this._queue.size === 0) this._disarmQueueTimer();
  }

  /**
   * Sends a call that expects an answer on the current connection.
   * @param {object} msg
   * @param {number} deadline
   * @param {() => void} [onUnsent] called when it fails without being written.
   * @returns {Promise<object>} the reply message.
   * @private
   */
  _request(msg, deadline, onUnsent) {
    if (msg.message_type === 'publish' && this._conn !== null && this._conn.legacy) {
      // a version-1 server has no publish acks (§10)
      try {
        this._send(msg);
        this._metrics.sent(); // delivered is counted once, by publish(), when this resolves
      } catch (err) {
        if (onUnsent !== undefined) onUnsent();
        return Promise.reject(err);
      }
      return Promise.resolve({ payload: null });
    }
    return this._call(msg, deadline, true, onUnsent);
  }

  /**
   * Sends a one-way message now; resolves once the socket took it. A full
   * socket buffer is waited for, but never past the call's deadline.
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @returns {Promise<void>|undefined}
   * @throws {RequestTimeoutError} (the promise) the buffer was still full at the deadline.
   * @private
   */
  _sendOneWay(msg, deadline) {
    const conn = this._conn;
    const flushed = this._send(msg);
    this._metrics.sent();
    if (flushed) {
      this._metrics.delivered();
      return undefined;
    }
    return this._drained(conn, msg, deadline).then(() => this._metrics.delivered());
  }

  /**
   * Waits for a full socket buffer to drain, up to the call's deadline.
   * @param {Connection} conn
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @returns {Promise<void>}
   * @throws {RequestTimeoutError} (the promise) still full at the deadline.
   * @private
   */
  async _drained(conn, msg, deadline) {
    if (!(await conn.drained(deadline - now()))) {
      throw new RequestTimeoutError(`${msg.message_type} on ${msg.channel_id}: the connection did not take it before the deadline`);
    }
  }

  /**
   * Writes a one-way message and counts it as sent and delivered.
   * @param {object} msg
   * @param {(err?: Error|null) => void} [onWritten] see Connection.write().
   * @returns {boolean} false when the socket buffer is full.
   * @private
   */
  _writeOneWay(msg, onWritten) {
    const flushed = this._send(msg, onWritten);
    this._metrics.sent();
    this._metrics.delivered();
    return flushed;
  }

  /**
   * Removes a sent message from the queue file; a failure goes to 'error'
   * (the message then stays on disk and is sent again by the next load).
   * @param {string} id
   * @private
   */
  _forget(id) {
    try {
      this._store.remove(id);
    } catch (err) {
      this._emitError(err);
    }
  }

  /**
   * Loads the messages an earlier run persisted into the offline queue.
   * @private
   */
  _loadStore() {
    const t = now();
    const wall = Date.now();
    const loaded = this._store.load();
    this._queue.dropped += this._store.expired; // expired on disk: they left the queue unsent
    for (let i = 0; i < this._store.expired; i++) this._metrics.failed();
    const { corrupt } = this._store;
    if (corrupt > 0) {
      this._queue.dropped += corrupt; // each unreadable stretch lost at least one message
      for (let i = 0; i < corrupt; i++) this._metrics.failed();
      const err = new Error(`queue file ${this._store.file}: ${corrupt} unreadable stretch(es) skipped; the messages in them are lost`);
      err.code = 'EQUEUECORRUPT';
      process.nextTick(() => this._emitError(err)); // after the constructor, once listeners are on
    }
    for (const stored of loaded) {
      const body = encodeMessage(stored.message);
      const entry = {
        id: stored.id,
        priority: Number.isSafeInteger(stored.priority) ? stored.priority : 0,
        bytes: HEADER_SIZE_BYTES + body.length,
        deadline: stored.expiresAt >= Number.MAX_SAFE_INTEGER ? Infinity : t + (stored.expiresAt - wall),
        msg: stored.message,
        expectReply: false,
        persisted: true,
        resolve: null,
        reject: null
      };
      const { accepted, evicted } = this._queue.push(entry);
      for (const victim of evicted) this._drop(victim, 'evicted', new QueueFullError('evicted from the offline queue'));
      if (!accepted) {
        this._queue.dropped++;
        this._drop(entry, 'evicted', new QueueFullError('the offline queue is full'));
        continue;
      }
      this._armQueueTimer(entry.deadline);
    }
  }

  // ------------------------------------------------- connection lifecycle

  /**
   * Opens a connection and restores subscriptions and responders; then
   * emits 'reconnected' (after a loss) and 'connected', and only then
   * replays the offline queue (docs/resilience.md §3).
   *
   * `generation` ties the attempt to one connect() or reconnect loop: once
   * disconnect() (and maybe a new connect()) moved on, the attempt closes
   * its own socket and touches nothing of the client's.
   *
   * A 'reconnected' or 'connected' listener that throws is reported
   * (see _emitSafely()); the connection stays up and the queue is sent.
   * No handshake within `connectTimeout` is a NotConnectedError whose
   * `.cause` is the timeout: the server was not reached, as far as the
   * caller is concerned, exactly as when the TCP connect fails.
   * @param {number} generation `this._generation` when the attempt started.
   * @returns {Promise<void>}
   * @private
   */
  async _establish(generation) {
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
    this._metrics.attempt();
    let info;
    try {
      info = await conn.open(this.options.connectTimeout);
    } catch (err) {
      if (!(err instanceof RequestTimeoutError)) throw err;
      const { host, port, connectTimeout } = this.options;
      throw new NotConnectedError(`no handshake with ${host}:${port} within ${connectTimeout} ms`, { cause: err });
    } finally {
      if (this._opening === conn) this._opening = null;
    }
    if (generation !== this._generation) {
      conn.destroy();
      throw new NotConnectedError('the client disconnected');
    }
    this._metrics.opened();
    this._info = info;
    this._connectionId = info.connectionId;
    this._sendLimit = conn.sendLimit;
    this._conn = conn;
    this._running = 0; // inbound flow control starts afresh on every connection
    this._held = [];
    this._heldHead = 0;
    this._startHeartbeat(conn);
    await this._restore(conn);
    if (generation !== this._generation) {
      conn.destroy(); // disconnect() already let go of it
      throw new NotConnectedError('the client disconnected');
    }
    if (this._conn !== conn) throw new NotConnectedError('the connection was lost while restoring subscriptions'); // never CONNECTED on a dead socket
    // a first connection reached through waitOnFirstConnect is no reconnection
    const reconnected = this._state === State.RECONNECTING && !this._firstWait;
    const attempts = this._attempt;
    this._setState(State.CONNECTED);
    this._attempt = 0;
    this._replaying = conn; // calls made by the listeners below queue behind the replay
    for (const waiter of this._waiters) waiter.resolve();
    this._waiters.clear();
    if (reconnected) this._emitSafely('reconnected', { attempts, elapsed: this._metrics.reconnected() });
    if (this._conn === conn && this._state === State.CONNECTED) this._emitSafely('connected', info);
    if (this._replaying === conn) this._replaying = null;
    if (this._conn === conn && this._state === State.CONNECTED) this._startReplay(conn);
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
    if (this._conn === null) throw new ConnectionLostError('the connection is closed');
    const legacy = this._conn.legacy;
    const payload = serve ? { serve: true } : legacy ? { connection_id: this._connectionId } : null;
    const msg = buildMessage(type, this.appId, pattern, payload);
    if (legacy) await this._sendAndDrain(msg, deadline);
    else await this._call(msg, deadline);
  }

  /**
   * The connection-dropped path: in-flight calls fail at once (they may
   * have run, so they are never resent), queued calls stay, then the
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
    const retry = this.options.reconnect && !(err instanceof UnauthorizedError);
    this._metrics.closed(retry && this._state !== State.CONNECTING);
    this._detach(reason);
    if (this._state !== State.CONNECTED) return; // failed during restore: _establish() rejects
    const next = retry ? State.RECONNECTING : State.DISCONNECTED;
    this._setState(next);
    if (!retry) {
      const gone = new NotConnectedError('the connection was lost and reconnection is off', { cause: err ?? undefined });
      this._failWaiters(gone);
      this._abandonQueue(gone);
    }
    this._emitSafely('disconnected', err ?? reason); // never null: a server that just closed is connection_lost
    if (err instanceof IpcError) this._emitError(err); // a protocol error or a heartbeat timeout
    if (this._state !== next) return; // a listener called disconnect() or connect()
    if (retry) this._reconnect();
    else this._emitSafely('close');
  }

  /**
   * Forgets the current connection: stops the heartbeat and rejects every
   * pending call with `reason`.
   * @param {Error} reason
   * @private
   */
  _detach(reason) {
    if (this._conn !== null) this._lastReceived = this._conn.lastReceived;
    this._conn = null;
    this._running = 0;
    this._held = []; // requests the server answers responder_lost; at-most-once publishes (§5.3)
    this._heldHead = 0;
    clearTimeout(this._heartbeatTimer);
    this._heartbeatTimer = null;
    this._heartbeat = null;
    this._ping = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(reason);
    }
  }

  /**
   * The reconnect loop: backoff with jitter, up to `maxRetries` attempts.
   * Single flight by construction: it starts only on the CONNECTED ->
   * RECONNECTING (or, see _keepConnecting(), CONNECTING -> RECONNECTING)
   * transition and runs only while RECONNECTING.
   * @param {Error|null} [firstError] why the connection attempt before the loop failed.
   * @returns {Promise<Error|null>} once the loop ends: null when connected,
   *   else the last attempt's error (or null if disconnect() stopped it).
   * @private
   */
  _reconnect(firstError = null) {
    const generation = this._generation;
    const run = async () => {
      let lastError = firstError;
      while (this._state === State.RECONNECTING && this._generation === generation) {
        const attempt = ++this._attempt;
        if (attempt > this.options.maxRetries) return this._giveUp(lastError);
        const delay = backoffDelay(attempt, {
          initial: this.options.initialDelay,
          max: this.options.maxDelay,
          multiplier: this.options.multiplier,
          jitter: this.options.jitter
        });
        this._emitSafely('reconnecting', { attempt, delay });
        if (this._state !== State.RECONNECTING) return; // a listener called disconnect()
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this._wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this._wake = null;
        if (this._state !== State.RECONNECTING || this._generation !== generation) return;
        try {
          await this._establish(generation);
          return null;
        } catch (err) {
          lastError = err;
          if (err instanceof UnauthorizedError) return this._giveUp(err);
        }
      }
      return lastError;
    };
    const loop = run()
      .catch((err) => {
        this._emitError(err); // never an unhandled rejection: nobody but _keepConnecting() awaits the loop
        return err;
      })
      .finally(() => {
        if (this._connecting === loop) this._connecting = null;
      });
    this._connecting = loop;
    return loop;
  }

  /**
   * waitOnFirstConnect: the attempt of connect() failed, so the client
   * moves CONNECTING -> RECONNECTING (seed 003's "connection failed") and
   * runs the reconnect loop, with its 'reconnecting' events; calls queued
   * meanwhile stay queued. Settles connect()'s promise: true on the first
   * success, NotConnectedError once the loop gives up ('reconnect_failed')
   * or disconnect() stops it.
   * @param {number} generation the connect() attempt's.
   * @param {Error} err why its attempt failed.
   * @returns {Promise<true>}
   * @private
   */
  async _keepConnecting(generation, err) {
    this._setState(State.RECONNECTING);
    this._firstWait = true;
    let lastError;
    try {
      lastError = await this._reconnect(err);
    } finally {
      this._firstWait = false;
    }
    if (this._state === State.CONNECTED && this._generation === generation) return true;
    const cause = lastError ?? err;
    if (this._generation !== generation) throw new NotConnectedError('the client disconnected while waiting for the first connection', { cause });
    if (cause instanceof UnauthorizedError) throw cause; // as when the first attempt is refused
    const { host, port, maxRetries } = this.options;
    throw new NotConnectedError(`could not connect to ${host}:${port}: gave up after ${maxRetries + 1} attempts`, { cause });
  }

  /**
   * Stops reconnecting after too many failures (or a refused token):
   * waiting and queued calls fail with not_connected. The failure is
   * reported unless a waiting connect() (waitOnFirstConnect) rejects with it.
   * @param {Error|null} cause
   * @returns {Error} cause.
   * @private
   */
  _giveUp(cause) {
    const attempts = this._attempt - (cause instanceof UnauthorizedError ? 0 : 1);
    this._setState(State.DISCONNECTED);
    this._metrics.closed(false);
    const err = new ConnectionLostError(`gave up reconnecting after ${attempts} attempts`, { cause: cause ?? undefined });
    const gone = new NotConnectedError('gave up reconnecting', { cause: err });
    this._failWaiters(gone);
    this._abandonQueue(gone);
    this._emitSafely('reconnect_failed', attempts);
    if (!this._firstWait) this._emitError(err);
    this._emitSafely('close');
    return cause;
  }

  /**
   * Waits until the client is connected, up to `deadline`, for subscribe()
   * and serve(): at once when connected, not_connected when no connection
   * is coming.
   * @param {number} deadline monotonic ms.
   * @returns {Promise<void>}
   * @private
   */
  _ready(deadline) {
    if (this._state === State.CONNECTED) return undefined;
    if (this._state !== State.CONNECTING && this._state !== State.RECONNECTING) {
      return Promise.reject(new NotConnectedError('the client is not connected'));
    }
    if (this._waiters.size >= MAX_WAITING_REGISTRATIONS) {
      return Promise.reject(new QueueFullError(`${this._waiters.size} registrations are already waiting for a connection`));
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
      if (deadline - now() <= MAX_TIMER_MS) {
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
   * with the remote error, a local timeout, or connection_lost. A request
   * carries what is left of its deadline as `timeout_ms` (§6.5).
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @param {boolean} [counted] an application call (counted in `messagesSent`).
   * @param {() => void} [onUnsent] called when it fails without being written.
   * @returns {Promise<object>} the response message.
   * @private
   */
  _call(msg, deadline, counted = false, onUnsent) {
    return new Promise((resolve, reject) => {
      const remaining = deadline - now();
      if (remaining <= 0) {
        if (onUnsent !== undefined) onUnsent();
        reject(new RequestTimeoutError('the deadline passed before the call was sent'));
        return;
      }
      const timed = remaining <= MAX_TIMER_MS;
      if (msg.message_type === 'request' && timed) msg.timeout_ms = Math.ceil(remaining);
      const id = msg.message_id;
      const timer = timed
        ? setTimeout(() => {
            if (this._pending.delete(id)) {
              this._rememberSettled(id); // its answer may still come: drop it then
              reject(new RequestTimeoutError(`no answer on ${msg.channel_id} within ${Math.round(remaining)} ms`));
            }
          }, remaining)
        : null;
      this._pending.set(id, { resolve, reject, timer });
      try {
        this._send(msg);
        if (counted) this._metrics.sent();
      } catch (err) {
        this._pending.delete(id);
        clearTimeout(timer);
        if (onUnsent !== undefined) onUnsent();
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
   * @param {(err?: Error|null) => void} [onWritten] see Connection.write().
   * @returns {boolean} false when the socket buffer is full.
   * @private
   */
  _send(msg, onWritten) {
    if (this._conn === null) throw new ConnectionLostError('the connection is closed');
    return this._conn.send(msg, onWritten);
  }

  /**
   * Writes a message and, when the socket buffer is full, waits for it to
   * drain, up to `deadline`.
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @returns {Promise<void>|undefined}
   * @private
   */
  _sendAndDrain(msg, deadline) {
    const conn = this._conn;
    if (!this._send(msg)) return this._drained(conn, msg, deadline);
    return undefined;
  }

  /**
   * A pong arrived (heartbeat or healthCheck()).
   * @param {number} latencyMs
   * @private
   */
  _pong(latencyMs) {
    this._latencyMs = latencyMs;
    this._lastHeartbeat = Date.now();
    this._emitSafely('heartbeat', { latency: latencyMs });
  }

  // ------------------------------------------------------ the incoming path

  /**
   * Dispatches one message from the server.
   * @param {Connection} conn the connection it came on.
   * @param {object} msg
   * @private
   */
  _onMessage(conn, msg) {
    if (conn !== this._conn) return undefined; // after disconnect() or from a replaced connection: nobody's
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
   * Inbound flow control for the messages that run application handlers
   * (requests to serve, notifications, publishes): dispatched at once while
   * fewer than `highWaterMark` async handlers run, else held back in
   * arrival order until running handlers finish.
   *
   * The socket is never paused for it: responses and pings must keep
   * flowing, or a handler that awaits a request of its own could wait on
   * itself, and the server would take the unanswered pings for a dead
   * client. A held request whose deadline (its `timeout_ms`, counted from
   * receipt) passes is dropped unrun: the server has answered it already.
   * Held work is dropped with its connection (see _detach()).
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _admit(conn, msg) {
    if (this._heldCount() === 0 && this._running < this.options.highWaterMark) {
      this._dispatch(conn, msg);
      return;
    }
    const timed = msg.message_type === 'request' && typeof msg.timeout_ms === 'number' && msg.timeout_ms > 0;
    this._held.push({ conn, msg, expires: timed ? now() + msg.timeout_ms : Infinity });
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
   * @returns {{conn: Connection, msg: object, expires: number}}
   * @private
   */
  _takeHeld() {
    const held = this._held[this._heldHead];
    this._held[this._heldHead++] = undefined;
    if (this._heldHead === this._held.length) {
      this._held = [];
      this._heldHead = 0;
    } else if (this._heldHead >= 1024 && this._heldHead * 2 >= this._held.length) {
      this._held = this._held.slice(this._heldHead);
      this._heldHead = 0;
    }
    return held;
  }

  /**
   * Runs the handlers of one admitted message.
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _dispatch(conn, msg) {
    if (msg.message_type === 'publish') this._onPublish(conn, msg);
    else this._onServed(conn, msg, msg.message_type === 'request');
  }

  /**
   * Dispatches held-back messages while there is room, skipping requests
   * whose deadline passed while they waited (see _admit()).
   * @param {Connection} conn
   * @private
   */
  _drainHeld(conn) {
    while (this._heldCount() > 0 && this._running < this.options.highWaterMark && this._conn === conn) {
      const held = this._takeHeld();
      if (held.conn !== conn || held.expires <= now()) continue; // never answered on another connection
      this._dispatch(conn, held.msg);
    }
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
      if (this._ping !== null && msg.reply_to === this._ping.id) {
        const { sentAt } = this._ping;
        this._ping = null;
        this._pong(now() - sentAt);
        return;
      }
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
   * Answers the server's pings (§9.1) itself. Any other `system` request
   * is one the server routed to this client because it serves `system`
   * (§8): it runs the `system` responder like any served request; without
   * one it is answered `no_responders`.
   * @param {Connection} conn
   * @param {object} msg
   * @private
   */
  _onSystemRequest(conn, msg) {
    const action = msg.payload && msg.payload.action;
    if (action === 'ping') {
      this._reply(conn, msg, { status: 'pong' });
      this._emitSafely('ping', { messageId: msg.message_id });
    } else if (this._responders.has(SYSTEM_CHANNEL)) {
      this._admit(conn, msg);
    } else {
      // As the server answers when nobody serves 'system' (§8), and as a
      // request on any channel this client does not serve is answered.
      this._reply(conn, msg, null, { code: ErrorCode.NO_RESPONDERS, message: `no responder for system action ${JSON.stringify(action)}` });
    }
  }

  /**
   * Delivers a publish to every local handler whose pattern matches, each
   * handler once even when several of its patterns match (§5.3).
   * @param {Connection} conn the connection it came on.
   * @param {object} msg
   * @private
   */
  _onPublish(conn, msg) {
    let called = null;
    for (const [pattern, handlers] of this._subscriptions) {
      if (!patternMatches(pattern, msg.channel_id)) continue;
      for (const handler of handlers) {
        if (called !== null && called.has(handler)) continue;
        (called ??= new Set()).add(handler);
        this._invoke(handler, msg, conn, false);
      }
    }
    this._emitSafely('message', msg);
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
    this._invoke(handler, msg, conn, answer);
  }

  /**
   * Calls a handler, sync or async. With `answer`, its result (or error) is
   * the response on `conn`; without, errors go to the 'error' event. Async
   * handlers count towards the inbound high water mark of the connection
   * the message came on (see _admit()).
   * @param {Function} handler
   * @param {object} msg
   * @param {Connection} from the connection the message came on.
   * @param {boolean} answer
   * @private
   */
  _invoke(handler, msg, from, answer) {
    const conn = answer ? from : null;
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
    const tracked = this._track(from);
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
   * One more async handler running, counted against the connection its
   * message came on (only ever the current one: see _onMessage()).
   * @param {Connection} conn
   * @returns {Connection} the connection it counts against.
   * @private
   */
  _track(conn) {
    if (conn === this._conn) this._running++;
    return conn;
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

  // -------------------------------------------------------------- heartbeat

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
   * starts a reconnection (docs/resilience.md §5: a black hole is noticed
   * within interval + timeout of the last frame).
   * @private
   */
  _onHeartbeat() {
    const conn = this._conn;
    const hb = this._heartbeat;
    if (conn === null || hb === null) return;
    const t = now();
    hb.received(conn.lastReceived);
    const action = hb.poll(t);
    if (action === HeartbeatAction.DEAD) {
      const silent = t - hb.lastReceived;
      this._emitSafely('heartbeat_timeout', { silent });
      conn.destroy(new RequestTimeoutError(`heartbeat timeout: nothing received for ${Math.round(silent)} ms`));
      return;
    }
    if (action === HeartbeatAction.PING) {
      const ping = buildMessage('request', this.appId, SYSTEM_CHANNEL, { action: 'ping' });
      try {
        conn.send(ping);
        this._ping = { id: ping.message_id, sentAt: t };
      } catch {
        // closed meanwhile: the close path takes over
      }
    }
    if (this._conn === conn) this._scheduleHeartbeat();
  }
}

module.exports = { IPCClient, State };
