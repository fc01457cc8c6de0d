'use strict';

/**
 * IPCClient, the public facade of the Node client: the API, the options and
 * the events. The work is done by one object per concern
 * (docs/architecture.md, "The client, by concern"); each reaches back to
 * this client only through the members its module's doc lists:
 *
 *     calls.js          request lifecycle: the one send path, pending table, deadlines
 *     publishing.js     publish() and notify(); argument errors thrown, the rest rejected
 *     outbox.js         the offline queue, its expiry, file and replay
 *     admission.js      inbound handlers, at most `maxConcurrentHandlers` async ones at a time
 *     subscriptions.js  subscriptions and responders, restored on every connection
 *     lifecycle.js      connect(), one attempt, the loss, disconnect(), dispatch
 *     protocol/         the handshake, frame limit, pings and heartbeat (sans-I/O)
 *     reconnect.js      the reconnect loop, backoff, waitOnFirstConnect
 *     introspection.js  health reports and the connection's snapshot
 *     connection.js     the socket pump
 *     client_extensions.js  the base class: subscription()/requests() iterators, clearCache()
 *
 * Connection state moves only through `_setState()`, checked against the
 * table in lib/state.js. Every call settles exactly once: by its response,
 * its own deadline (in the queue or on the wire), the loss of the
 * connection, or a queue decision (full, evicted, given up).
 */

const { randomBytes } = require('node:crypto');
const { parseOptions, checkIdLength } = require('./options');
const { readOnce } = require('./json_profile');
const { now } = require('./connection');
const { State, transition } = require('./state');
const { Breakers } = require('./circuit_breaker');
const { Metrics } = require('./metrics');
const { reportError, emitEach } = require('./listeners');
const { Calls } = require('./calls');
const publishing = require('./publishing');
const { Outbox } = require('./outbox');
const { Admission } = require('./admission');
const { Subscriptions } = require('./subscriptions');
const { Lifecycle } = require('./lifecycle');
const { Reconnector } = require('./reconnect');
const { Introspection, ClientIntrospection } = require('./introspection');
const { Streams } = require('./streams');
const { Producers } = require('./producers');
const { KeyedRuns } = require('./keyed_runs');
const { abortableConnect } = require('./cancellation');
const { SharedCalls } = require('./coalescing');
const { Drain } = require('./drain');

/**
 * Node.js client of the IPC bridge.
 *
 * Events (docs/resilience.md §2): 'connecting', 'connected' (info),
 * 'disconnected' (error|null), 'reconnecting' ({attempt, delay}),
 * 'reconnected' ({attempts, elapsed}), 'reconnect_failed' (attempts),
 * 'heartbeat' ({latency}), 'heartbeat_timeout' ({silent}), 'queue_dropped'
 * ({reason, channel, messageType, priority}), 'circuit_open',
 * 'circuit_half_open', 'circuit_closed' (snapshot), 'lame_duck' ({deadlineMs}:
 * the server is leaving, docs/protocol.md §13.1), 'error'; also
 * 'message' (publish), 'ping' (the server pinged us) and 'close' (closed
 * for good).
 *
 * Errors no call waits for (error frames, handler failures, a failed
 * reconnection, a throwing listener) go to 'error' when someone listens,
 * else each becomes one process warning (lib/warnings.js): never dropped,
 * never a crash. A listener that throws never breaks the client.
 */
class IPCClient extends ClientIntrospection {
  /**
   * @param {string} appId the application namespace, fixed for the connection (§3.1).
   * @param {object} [options] see DEFAULTS in lib/constants.js; durations in ms.
   * @throws {TypeError|RangeError} a bad app id or bad options.
   */
  constructor(appId, options) {
    super();
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    checkIdLength('appId', appId); // what the server refuses in a connect (docs/protocol.md §3 item 12)
    this.appId = appId;
    this.options = parseOptions(options);
    this._state = State.DISCONNECTED;
    this._conn = null; // the connection once its handshake is done
    this._opening = null; // a connection still in its handshake
    this._info = null;
    this._connectionId = this.options.connectionId ?? `node-${randomBytes(6).toString('hex')}`;
    this._connecting = null; // single-flight promise of connect() / the reconnect loop
    this._generation = 0; // bumped by connect() and disconnect(): an older attempt knows it is stale
    this._closing = null; // disconnect()'s promise while DISCONNECTING
    this._lastReceived = null; // monotonic ms of the last frame of a closed connection
    this._sendLimit = null; // the last negotiated frame limit
    this._metrics = new Metrics({ now });
    this._breakers = new Breakers(this.options.circuitBreaker, (state, snapshot) => this._emitSafely(`circuit_${state}`, snapshot));
    this._calls = new Calls(this);
    this._shared = new SharedCalls(this); // coalesce, cacheTtl (docs/resilience.md §11)
    this._outbox = new Outbox(this);
    this._admission = new Admission(this);
    this._subs = new Subscriptions(this);
    this._reconnector = new Reconnector(this);
    this._introspection = new Introspection(this);
    this._lifecycle = new Lifecycle(this);
    this._streams = new Streams(this); // streams and cancellation (docs/protocol.md §15)
    this._producers = new Producers(this);
    this._keyedRuns = new KeyedRuns(this); // a resent keyed request runs once (docs/resilience.md §3)
    this._drain = new Drain(this); // drain(): docs/resilience.md §12
    if (this._outbox.store !== null) this._outbox.load();
  }

  /** @returns {string} 'disconnected', 'connecting', 'connected', 'reconnecting' or 'disconnecting'. */
  get state() {
    return this._state;
  }

  /** @returns {boolean} whether the client can send right now. */
  get connected() {
    return this._state === State.CONNECTED;
  }

  /**
   * The id the server gave the current connection, null without one. A
   * 1.1.x server's handlers answer the connection a request names, so a
   * request to one carries `connection_id: client.connectionId` (docs/legacy.md).
   * @returns {string|null}
   */
  get connectionId() {
    return this._conn !== null && this._info !== null ? this._info.connectionId : null;
  }

  /**
   * Connects and performs the handshake. Concurrent calls share one attempt.
   * Messages persisted by an earlier run (`queuePath`) are sent once
   * connected. If the attempt fails, calls queued meanwhile fail with
   * not_connected at once, unless `waitOnFirstConnect` is set: then the
   * client moves to 'reconnecting' and keeps trying with the reconnect
   * policy, and the promise settles with the first success or once
   * `maxRetries` attempts are spent ('reconnect_failed'). A listener that
   * throws does not reject it (its error is reported).
   * @returns {Promise<true>}
   * @throws {NotConnectedError} unreachable (`.cause`: the socket error), no
   *   handshake within `connectTimeout` (`.cause`: the RequestTimeoutError),
   *   or, with `waitOnFirstConnect`, every attempt failed or disconnect() was called.
   * @throws {UnauthorizedError} the server refused the token.
   * @throws {AbortError} `options.signal` aborted first (the attempt is stopped).
   */
  connect(options) {
    return abortableConnect(this, options, () => this._lifecycle.connect()); // {signal} (§15.4)
  }

  /**
   * Closes the connection and stops reconnecting. Pending calls reject with
   * connection_lost; queued and waiting calls with not_connected; queued
   * one-way messages are dropped ('queue_dropped', reason 'gave_up') unless
   * persisted: those stay for the next connect() or the next client started
   * on the same `queuePath`.
   * @returns {Promise<void>} resolves once the socket is closed.
   */
  disconnect() {
    return this._lifecycle.disconnect();
  }
  /**
   * Finishes what is in flight, then closes (docs/resilience.md §12). From
   * the call on, new calls reject with NotConnectedError (calls made by the
   * handlers still running go through); every responder registration and
   * subscription is withdrawn, so the server routes elsewhere; this client's
   * calls in flight and its offline queue (sent once connected), the
   * requests it serves and its handlers may finish within `timeout` ms
   * (default 30000); then disconnect(). A second call shares the first.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<boolean>} true when all of it ended in time, false
   *   when the deadline cut some of it (that ends as disconnect() ends it).
   */
  drain(options) {
    return this._drain.run(options);
  }


  /**
   * Sends a request and resolves with the response message (§6). While the
   * client is (re)connecting it waits in the offline queue; its deadline
   * counts from this call, queue time included, and the `timeout_ms` it
   * carries is what is left when it is sent.
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload] any JSON value.
   * @param {number|object} [timeout] milliseconds (or the options object).
   * @param {{headers?: Record<string, string>, priority?: number, onDisconnect?: 'queue'|'fail', timeout?: number, coalesce?: boolean, cacheTtl?: number}} [options]
   *   `coalesce`: identical calls in flight share one round trip; `cacheTtl`:
   *   a successful answer is reused for that many ms (docs/resilience.md §11).
   * @returns {Promise<object>} the response message (with the circuit open
   *   and a `fallback` set: a response whose payload is the fallback's result,
   *   or the fallback's own message).
   * @throws {IpcError} `.code` no_responders, timeout, handler_error (with
   *   `.remoteType`), connection_lost, not_connected, queue_full,
   *   circuit_open (with `.retryAfter` ms), bad_message...
   */
  sendRequest(channelId, payload = null, timeout, options = {}) {
    payload = readOnce(payload); // an iterator, read once: a key, a size, a resend or a wait read it again (§16.3)
    if (SharedCalls.wanted(timeout, options)) return this._shared.sendRequest(channelId, payload, timeout, options);
    return this._calls.sendRequest(channelId, payload, timeout, options);
  }

  /**
   * sendRequest() resolving the response's payload only (the Python
   * client's `request()`): same arguments, same errors.
   * @returns {Promise<unknown>} the response payload.
   */
  async request(channelId, payload = null, timeout, options = {}) {
    return (await this.sendRequest(channelId, payload, timeout, options)).payload;
  }

  /**
   * Subscribes `handler` to a channel or pattern (`*`, `>`, §4.2). Resolves
   * on the server's ack; a rejected call leaves no subscription behind. The
   * subscription is kept across reconnections. Argument errors throw at
   * the call, synchronously; what depends on the connection rejects
   * (lib/publishing.js, docs/legacy.md).
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler called with each publish message.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<void>} rejects with the call's failure (not_connected, timeout, forbidden...).
   * @throws {MessageError} (synchronously) bad_message: an invalid or over-long pattern.
   * @throws {TypeError} (synchronously) a handler that is not a function, a bad timeout.
   */
  subscribe(channelId, handler, options) {
    return this._subs.subscribe(channelId, handler, options);
  }

  /**
   * Removes one handler, or all of the channel's handlers; the server is
   * told once no handler is left. A channel nothing is subscribed under
   * (an invalid name included) resolves at once.
   * @param {string} channelId the channel or pattern given to subscribe().
   * @param {Function} [handler] only this handler.
   * @returns {Promise<void>}
   * @throws {TypeError} (synchronously) a channel that is not a string, a handler that is not a function.
   */
  unsubscribe(channelId, handler) {
    return this._subs.unsubscribe(channelId, handler);
  }

  /**
   * Answers requests on a channel or pattern, from Python or Node (§7). The
   * handler's (resolved) value is the response payload; a thrown error a
   * `handler_error` response with `remote_type` = `err.name`. One handler
   * per channel, kept across reconnections. `system` may be served (the
   * server routes there the actions it does not answer, §8; the client
   * keeps answering pings); every other reserved channel is refused.
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler receives the request message.
   * @param {{timeout?: number, schema?: {request?: object, response?: object}}} [options]
   *   `schema`: JSON Schemas sent with the registration, checked on every
   *   request (bad_request) and result (docs/typed-contracts.md).
   * @returns {Promise<void>} resolves on the server's ack.
   * @throws {AlreadyServingError} the channel is already served by this client.
   * @throws {ForbiddenError} a reserved channel other than `system`.
   */
  serve(channelId, handler, options) {
    return this._subs.serve(channelId, handler, options);
  }

  /**
   * Stops answering requests on a channel or pattern.
   * @param {string} channelId the channel or pattern given to serve().
   * @returns {Promise<void>}
   */
  unserve(channelId) {
    return this._subs.unserve(channelId);
  }

  /**
   * This client, typed by a contract (index.d.ts `TypedClient<Api>`, the
   * interface `ipc-bridge-types` writes; docs/typed-contracts.md). The
   * compiler checks channels, payloads and answers; at run time it is this
   * very client.
   * @returns {this}
   */
  typed() {
    return this;
  }

  /**
   * Publishes to every subscriber of the channel's app (§5). With `ack`,
   * resolves with the server's count of connections it was queued for.
   * Without, once the frame is written (waiting for a full socket buffer to
   * drain, the publisher's backpressure, never past `timeout`), or, while
   * reconnecting, once accepted into the offline queue; a later drop is
   * reported by 'queue_dropped', never by this promise.
   * @param {string} channelId a concrete channel.
   * @param {unknown} data the payload.
   * @param {{ack?: boolean, headers?: Record<string, string>, timeout?: number, priority?: number, onDisconnect?: 'queue'|'fail'}} [options]
   * @returns {Promise<{delivered: number|null}|undefined>} rejects with what
   *   depends on the connection: not_connected, queue_full, too_large, timeout...
   * @throws {MessageError} (synchronously) bad_message: an invalid or over-long
   *   channel, or a payload that cannot be encoded (NaN, a Map, a cycle...).
   * @throws {ForbiddenError} (synchronously) a reserved channel (`system...`, `$sys...`, §4.4).
   * @throws {TypeError} (synchronously) a bad option.
   */
  publish(channelId, data, options = {}) {
    return publishing.publish(this._calls, channelId, readOnce(data), options);
  }

  /**
   * Sends a one-way request: routed like a request, never answered (§6.1).
   * Resolves like publish() without ack; throws and rejects as publish()
   * does (`system` may be notified).
   * @param {string} channelId a concrete channel.
   * @param {unknown} data the payload.
   * @param {{headers?: Record<string, string>, timeout?: number, priority?: number, onDisconnect?: 'queue'|'fail'}} [options]
   * @returns {Promise<void>}
   */
  notify(channelId, data, options = {}) {
    return publishing.notify(this._calls, channelId, readOnce(data), options);
  }

  /** Calls `cb(info)` on every (re)connection; returns a function that removes it. */
  onConnected(cb) {
    this.on('connected', cb);
    return () => this.off('connected', cb);
  }

  /** Calls `cb(error|null)` whenever an established connection is lost or closed; returns its remover. */
  onDisconnected(cb) {
    this.on('disconnected', cb);
    return () => this.off('disconnected', cb);
  }

  /**
   * Calls `cb(err)` with errors that belong to no call (error frames, handler
   * failures, failed reconnections, listeners that threw); without any, each
   * is a process warning. Returns its remover.
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
   * Reports an error no caller waits for (lib/listeners.js).
   * @param {unknown} err
   * @param {string} [context] what happened, for the warning's message.
   * @private
   */
  _emitError(err, context) {
    reportError(this, err, context);
  }

  /**
   * Emits an event where a throwing listener must not break the client
   * (lib/listeners.js). Nobody listening costs one check: every publish
   * received passes here ('message').
   * @param {string} event
   * @param {...unknown} args
   * @private
   */
  _emitSafely(event, ...args) {
    if (this.listenerCount(event) !== 0) emitEach(this, event, args);
  }

  /**
   * One connection attempt (lifecycle.js); the reconnect loop calls it too.
   * @param {number} generation `this._generation` when the attempt started.
   * @returns {Promise<void>}
   * @private
   */
  _establish(generation) {
    return this._lifecycle.establish(generation);
  }
}

module.exports = { IPCClient, State };
