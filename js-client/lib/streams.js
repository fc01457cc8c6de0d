'use strict';

/**
 * Streams the client consumes (docs/protocol.md §15): `client.stream()`, the
 * mirror of ipc_client/streams.py.
 *
 *     for await (const item of client.stream('ticks', { symbol: 'ACME' }, { timeout: 60_000 })) ...
 *
 * The request goes out on the first next() with a `window`; the loop gets
 * the `stream_item` payloads as they come, until `stream_end` (the loop
 * ends) or an error response (thrown after the items before it). What
 * arrives waits in the stream's buffer, bounded by the window: credit is
 * granted, half a window at a time, only as the loop takes items
 * (protocol/streams.js Window), so a loop that stops reading stops its
 * producer and nothing else.
 *
 * next() calls made before the last one settled wait their turn, as an
 * async generator's do. `break` (or a throw in the loop) calls return(),
 * which sends `cancel` (nothing at all when the request had not gone out);
 * so does the `signal` option aborting (the loop then throws an AbortError,
 * code `cancelled`). The deadline (`timeout`, the whole stream) and the
 * idle timeout (`idleTimeout`, between items while the producer holds
 * credit) travel with the request and are kept by the server, which ends
 * the stream `timeout` (RequestTimeoutError, after the items before it).
 * Against a server that did not grant `streams` the request goes out plain
 * and its answer is a one-item stream.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`
 * (`requestTimeout`), `_state`, `_calls` (`conn`, `call()`,
 * `rememberSettled()`), `_reconnector` (`ready()`). lifecycle.js hands it
 * `stream_item` / `stream_end` frames (onFrame), the responses no call
 * takes (settle) and the connection's loss (failAll).
 */

const { buildMessage } = require('./envelope');
const { validateChannel } = require('./channels');
const { now } = require('./connection');
const { State } = require('./state');
const { checkTimeout } = require('./call_options');
const { toNumber } = require('./legacy_options');
const { AbortError, ConnectionLostError, errorFromWire } = require('./errors');
const { CANCEL, STREAMS, DEFAULT_WINDOW, Window, credit, cancel } = require('./protocol/streams');
const { checkSignal, abortError } = require('./cancellation');
const { whenAborted } = require('./abort_listeners');
const { traceOutgoing, endSpan } = require('./tracing');
const { isClosing, failUnsent } = require('./closing');

const DONE = Object.freeze({ value: undefined, done: true });
const noop = () => {};

/**
 * A stream's timeout option: milliseconds, finite (the request carries it).
 * @param {unknown} value
 * @param {string} name
 * @returns {number}
 */
function checkStreamTimeout(value, name) {
  const ms = checkTimeout(value, name);
  if (!Number.isFinite(ms)) throw new RangeError(`${name} must be a finite number of milliseconds, got ${ms}`);
  return ms;
}

/**
 * A stream's arguments, checked where stream() is called (also by the
 * pool's, the load-balanced client's and the service client's).
 * @param {string} channelId
 * @param {object} [options] stream()'s.
 * @returns {{timeout: number|null, idleTimeout: number|undefined, window: number, signal: AbortSignal|undefined, headers: object|undefined}}
 * @throws {TypeError|RangeError} a bad channel or option.
 */
function checkStream(channelId, options = {}) {
  validateChannel(channelId);
  if (options === null || typeof options !== 'object') throw new TypeError('stream options must be an object');
  const { timeout = null, idleTimeout, signal, headers } = options;
  const window = toNumber(options.window ?? DEFAULT_WINDOW); // numeric text too, as timeout
  if (typeof window !== 'number') throw new TypeError(`window must be an integer from 1 to 2147483647, got ${String(window)}`);
  new Window(window); // throws for a bad size
  return {
    timeout: timeout === null ? null : checkStreamTimeout(timeout, 'timeout'),
    idleTimeout: idleTimeout === undefined ? undefined : checkStreamTimeout(idleTimeout, 'idleTimeout'),
    window,
    signal: checkSignal(signal),
    headers
  };
}

/**
 * What a stream's end says went wrong, or null for an end that is no failure.
 * @param {object|Error} end stream_end, the closing response, or the error that ended it.
 * @returns {Error|null}
 */
function failureOf(end) {
  if (end instanceof Error) return end;
  return end.message_type === 'response' && end.error ? errorFromWire(end.error) : null;
}

/**
 * One stream, as an async iterator (its own [Symbol.asyncIterator]).
 */
class Stream {
  /**
   * @param {Streams} streams
   * @param {string} channelId
   * @param {unknown} payload
   * @param {{timeout: number|null, idleTimeout: number, window: Window, signal: AbortSignal|undefined, headers: object|undefined}} options
   */
  constructor(streams, channelId, payload, options) {
    this._streams = streams;
    this.channelId = channelId;
    this._payload = payload;
    this._options = options;
    this._items = [];
    this._head = 0;
    /** @type {object|Error|null} stream_end, the closing response, or the error that ended it */
    this._end = null;
    this._wake = null;
    this._turn = null; // the latest next(), settled or not: a later one waits for it
    this._started = null;
    this._conn = null;
    this._id = null;
    this._finished = false; // the loop saw the end, or gave up
    this._stopAbortListening = null;
    this._span = null; // its request's OpenTelemetry span: ends with the stream
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /**
   * The next item, after those of the next() calls before it.
   * @returns {Promise<IteratorResult<unknown>>}
   */
  next() {
    const turn = this._turn === null ? this._next() : this._turn.then(() => this._next());
    this._turn = turn.then(noop, noop);
    return turn;
  }

  /**
   * @returns {Promise<IteratorResult<unknown>>}
   * @private
   */
  async _next() {
    if (this._finished) return DONE;
    if (this._started === null) this._started = this._start();
    try {
      await this._started;
    } catch (err) {
      this._finish(err);
      throw err;
    }
    for (;;) {
      if (this._finished) return DONE;
      if (this._head < this._items.length) {
        const value = this._items[this._head];
        this._items[this._head++] = undefined;
        if (this._head === this._items.length) {
          this._items = [];
          this._head = 0;
        }
        this._taken();
        return { value, done: false };
      }
      const end = this._end;
      if (end === null) {
        await new Promise((resolve) => (this._wake = resolve));
        continue;
      }
      // An error response, or a producer that did not stream: its payload is the one item (§15.3 item 4).
      const failure = failureOf(end);
      this._finish(failure);
      if (failure !== null) throw failure;
      return end.message_type === 'response' ? { value: end.payload, done: false } : DONE;
    }
  }

  /**
   * Leaves the stream (the loop's `break`): the producer is told to stop.
   * @returns {Promise<IteratorResult<unknown>>}
   */
  async return() {
    this._giveUp(null);
    return DONE;
  }

  /**
   * @param {unknown} err
   * @returns {Promise<never>}
   */
  async throw(err) {
    this._giveUp(null);
    throw err;
  }

  /**
   * Sends the request, once connected.
   * @private
   */
  async _start() {
    const { host } = this._streams;
    const { timeout, idleTimeout, window, signal, headers, fromHandler } = this._options;
    // none while draining (docs/resilience.md §12): refused here, not at stream(), as in every other closed state
    host._drain.check(fromHandler || host._drain.fromHandler());
    if (signal !== undefined) {
      if (signal.aborted) throw abortError(signal);
      this._stopAbortListening = whenAborted(signal, () => this._giveUp(abortError(signal)));
    }
    const started = now();
    // the signal also ends the wait for a connection: AbortError at once, not a timeout later
    if (host._state !== State.CONNECTED) await host._reconnector.ready(started + (timeout ?? host.options.requestTimeout), signal);
    if (this._end !== null || this._finished) return; // aborted or given up meanwhile: never sent
    const conn = host._calls.conn;
    if (conn === null) throw new ConnectionLostError('the connection is closed');
    if (isClosing(conn)) await failUnsent(host, conn, started + (timeout ?? idleTimeout)); // once the loss is handled (lib/closing.js)
    const extra = headers === undefined ? {} : { headers };
    if (!conn.features.has(STREAMS)) {
      // An older server: one request, one item (§15.1 item 3).
      const msg = buildMessage('request', host.appId, this.channelId, this._payload, extra);
      this._id = msg.message_id;
      this._span = traceOutgoing(msg, 'request', host); // a traceparent as any request's (docs/tracing.md)
      const reply = await host._calls.call(msg, started + (timeout ?? idleTimeout), true, undefined, timeout ?? idleTimeout);
      if (this._end === null) this._end = reply;
      return;
    }
    extra.window = window.size;
    extra.idle_timeout_ms = Math.ceil(idleTimeout);
    if (timeout !== null) extra.timeout_ms = Math.max(1, Math.ceil(timeout - (now() - started)));
    const msg = buildMessage('request', host.appId, this.channelId, this._payload, extra);
    this._id = msg.message_id;
    this._span = traceOutgoing(msg, 'request', host); // a traceparent as any request's (docs/tracing.md)
    this._conn = conn;
    this._streams.open.set(this._id, this);
    conn.send(msg);
  }

  /**
   * The loop took an item: grant credit when half a window was taken.
   * @private
   */
  _taken() {
    const grant = this._options.window.taken();
    const conn = this._conn;
    if (grant === 0 || this._end !== null || conn === null || conn.closed) return;
    try {
      conn.send(credit(this._streams.host.appId, this.channelId, this._id, grant));
    } catch {
      // closed meanwhile: the connection's loss ends the stream
    }
  }

  /**
   * What arrived for this stream (Streams.onFrame / settle / failAll).
   * @param {object|Error|undefined} end
   * @param {unknown} [item]
   */
  _arrived(end, item) {
    if (end === undefined) this._items.push(item);
    else this._end = end;
    const wake = this._wake;
    this._wake = null;
    if (wake !== null) wake();
  }

  /**
   * Gives the stream up before its end: `cancel` to the producer (§15.4).
   * @param {Error|null} error what the loop throws next (an abort), or null: it just ends.
   * @private
   */
  _giveUp(error) {
    if (this._finished) return;
    if (this._end === null && this._id !== null && this._conn !== null) {
      const { host } = this._streams;
      host._calls.rememberSettled(this._id); // whatever still comes is dropped
      const conn = this._conn;
      if (!conn.closed && conn.features.has(CANCEL)) {
        try {
          conn.send(cancel(host.appId, this.channelId, this._id));
        } catch {
          // closed meanwhile: the server cancels for a lost requester
        }
      }
    }
    this._detach();
    // left before its end: its span ends `cancelled`, as a request whose caller gave up
    const failure = this._end === null ? error ?? new AbortError('the stream was left before its end') : failureOf(this._end);
    if (this._span !== null) this._span = endSpan(this._span, failure);
    if (error === null) {
      this._finished = true;
    } else {
      this._items = [];
      this._head = 0;
      this._end = error; // the loop's next() throws it, once
    }
    const wake = this._wake;
    this._wake = null;
    if (wake !== null) wake();
  }

  /**
   * The loop saw the end: `failure`, or null for a stream that ended well.
   * @param {unknown} [failure]
   * @private
   */
  _finish(failure = null) {
    this._finished = true;
    this._detach();
    if (this._span !== null) this._span = endSpan(this._span, failure);
  }

  /** @private */
  _detach() {
    if (this._id !== null) this._streams.open.delete(this._id);
    if (this._stopAbortListening !== null) this._stopAbortListening();
    this._stopAbortListening = null;
  }
}

/**
 * The streams of one client, by request id.
 */
class Streams {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    /** @type {Map<string, Stream>} */
    this.open = new Map();
  }

  /**
   * IPCClient.stream(): checks the options now; the request goes out on the
   * first next(), which rejects when the client cannot make it (draining,
   * closed): stream() itself throws only for bad arguments.
   * @param {string} channelId
   * @param {unknown} [payload]
   * @param {{timeout?: number|null, idleTimeout?: number, window?: number, signal?: AbortSignal, headers?: Record<string, string>}} [options]
   * @returns {Stream}
   */
  stream(channelId, payload = null, options = {}) {
    const checked = checkStream(channelId, options);
    const { timeout, window, signal, headers } = checked;
    const idleTimeout = checked.idleTimeout ?? checkStreamTimeout(this.host.options.requestTimeout, 'idleTimeout');
    const fromHandler = this.host._drain.fromHandler(); // a handler's stream goes through a drain, however it is read
    return new Stream(this, channelId, payload, { timeout, idleTimeout, window: new Window(window), signal, headers, fromHandler });
  }

  /**
   * A `stream_item` or `stream_end`; one for a stream given up is dropped.
   * @param {object} msg
   */
  onFrame(msg) {
    const stream = this.open.get(msg.reply_to);
    if (stream === undefined || stream._end !== null) return;
    if (msg.message_type === 'stream_item') stream._arrived(undefined, msg.payload);
    else stream._arrived(msg);
  }

  /**
   * A response that ends a stream (an error, or a one-item answer).
   * @param {object} msg
   * @returns {boolean} false when it ends none of ours.
   */
  settle(msg) {
    const stream = msg.reply_to === null ? undefined : this.open.get(msg.reply_to);
    if (stream === undefined || stream._end !== null) return false;
    stream._arrived(msg);
    return true;
  }

  /**
   * The connection is gone: every stream ends with `reason` after the items that arrived.
   * @param {Error} reason
   */
  failAll(reason) {
    for (const stream of this.open.values()) if (stream._end === null) stream._arrived(reason);
  }

  /** @returns {number} streams open. */
  get size() {
    return this.open.size;
  }
}

module.exports = { Streams, Stream, checkStream };
