'use strict';

/**
 * The responder's side of streams and cancellation (docs/protocol.md §15),
 * the mirror of ipc_client/producers.py: served requests that a `cancel`
 * can stop, and handlers that stream.
 *
 * A served request's handler is called `handler(msg, ctx)`; `ctx.signal` is
 * an AbortSignal aborted when the requester gives up (its `reason` an
 * IpcError: code `cancelled`, `timeout` or `connection_lost`). The
 * AbortController is made only when a handler reads `ctx.signal`. An answer
 * the handler gives anyway is not sent (the server no longer waits for it)
 * and is counted (`lateAnswers`, in getMetrics()).
 *
 * A handler that is an `async function*`, or returns any async iterable,
 * streams its items: one is pulled only while credit remains (the
 * request's `window` plus every `credit` since), so the iterator never runs
 * ahead of its consumer; the end is `stream_end`, a failure an error
 * response. A cancel, or the connection's loss, aborts `ctx.signal` and
 * closes the iterator (`return()`).
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`
 * (`exposeStacks`), `_emitError()`.
 */

const { ErrorCode, IpcError, ConnectionLostError, RequestTimeoutError, AbortError } = require('./errors');
const { reply, replyError } = require('./replies');
const { Credit, STREAMS, streamItem, streamEnd, cancelReason } = require('./protocol/streams');

/**
 * What a served request's handler gets beside the message: its `signal`.
 */
class ServeContext {
  constructor() {
    this._controller = null;
    this._reason = null;
  }

  /** @returns {AbortSignal} aborted when the requester gives up (§15.4). */
  get signal() {
    if (this._controller === null) {
      this._controller = new AbortController();
      if (this._reason !== null) this._controller.abort(this._reason);
    }
    return this._controller.signal;
  }

  /** @returns {boolean} whether the requester gave up. */
  get cancelled() {
    return this._reason !== null;
  }

  /**
   * @param {Error} reason
   * @private
   */
  _abort(reason) {
    if (this._reason !== null) return;
    this._reason = reason;
    if (this._controller !== null) this._controller.abort(reason);
  }
}

/**
 * The error a cancel's reason stands for, as `ctx.signal.reason`.
 * @param {string} code
 * @returns {Error}
 */
function reasonError(code) {
  if (code === ErrorCode.TIMEOUT) return new RequestTimeoutError('the request timed out: the requester gave up', { remote: true });
  if (code === ErrorCode.CONNECTION_LOST) return new ConnectionLostError('the requester disconnected');
  if (code === ErrorCode.CANCELLED) return new AbortError('the requester cancelled the request');
  return new IpcError(code, `the request was cancelled: ${code}`);
}

/**
 * Served requests by id, and the streams among them.
 */
class Producers {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    /** @type {Map<string, ServeContext>} request id -> its context, while its handler runs */
    this.running = new Map();
    /** Answers not sent: the requester had given up. */
    this.lateAnswers = 0;
    /** @type {Map<string, {credit: Credit, wake: Function|null, ctx: ServeContext}>} */
    this._producing = new Map();
  }

  /**
   * A served request's handler starts: its context, found by a cancel.
   * @param {object} msg
   * @returns {ServeContext}
   */
  serving(msg) {
    const ctx = new ServeContext();
    if (msg.message_type === 'request') this.running.set(msg.message_id, ctx);
    return ctx;
  }

  /**
   * The handler answered: whether its answer goes out (false when a cancel
   * came first: dropped and counted).
   * @param {object} msg
   * @param {ServeContext} ctx
   * @returns {boolean}
   */
  answers(msg, ctx) {
    if (this.running.get(msg.message_id) === ctx) this.running.delete(msg.message_id);
    if (!ctx.cancelled) return true;
    this.lateAnswers++;
    return false;
  }

  /**
   * A `credit` or `cancel` from the server for a request we serve.
   * @param {Connection} conn
   * @param {object} msg
   */
  onFrame(conn, msg) {
    const id = msg.reply_to;
    if (msg.message_type === 'credit') {
      const producing = this._producing.get(id);
      if (producing !== undefined && producing.credit.grant(msg.window) && producing.wake !== null) producing.wake();
      return;
    }
    const ctx = this.running.get(id);
    if (ctx === undefined) return; // no longer running: nothing to stop (§15.4)
    this.running.delete(id);
    this._stop(id, ctx, reasonError(cancelReason(msg)));
  }

  /**
   * Nobody will grant credit again, nor read an answer: every handler's
   * signal aborts and every stream stops.
   */
  connectionLost() {
    const running = [...this.running];
    this.running.clear();
    for (const [id, ctx] of running) this._stop(id, ctx, new ConnectionLostError('the connection to the server was lost'));
  }

  /**
   * @param {string} id
   * @param {ServeContext} ctx
   * @param {Error} reason
   * @private
   */
  _stop(id, ctx, reason) {
    ctx._abort(reason);
    const producing = this._producing.get(id);
    if (producing !== undefined && producing.wake !== null) producing.wake();
  }

  /**
   * Streams the items of an async iterable a handler returned, answering
   * `msg` (§15.3); `done()` when it is over (the admission slot).
   * @param {Connection} conn
   * @param {object} msg
   * @param {AsyncIterable<unknown>} iterable
   * @param {ServeContext} ctx
   * @param {() => void} done
   * @returns {Promise<void>}
   */
  async produce(conn, msg, iterable, ctx, done) {
    const { appId } = this.host;
    const exposeStacks = this.host.options.exposeStacks;
    const id = msg.message_id;
    let iterator = null;
    let ended = false;
    try {
      iterator = iterable[Symbol.asyncIterator]();
      if (msg.window === undefined || msg.message_type !== 'request' || !conn.features.has(STREAMS)) {
        if (msg.message_type === 'request' && this.answers(msg, ctx)) {
          reply(conn, appId, msg, null, { code: ErrorCode.BAD_REQUEST, message: `the handler of ${msg.channel_id} streams its answer: call stream()` });
        }
        return;
      }
      const producing = { credit: new Credit(msg.window), wake: null, ctx };
      this._producing.set(id, producing);
      for (;;) {
        while (producing.credit.available === 0 && !ctx.cancelled && !conn.closed) {
          await new Promise((resolve) => (producing.wake = resolve));
          producing.wake = null;
        }
        if (ctx.cancelled || conn.closed) return;
        const step = await iterator.next();
        if (step.done) {
          ended = true;
          break;
        }
        if (ctx.cancelled || conn.closed) return;
        producing.credit.take();
        if (!conn.send(streamItem(appId, msg, step.value))) await conn.drained();
      }
      if (this.answers(msg, ctx) && !conn.closed) conn.send(streamEnd(appId, msg));
    } catch (err) {
      ended = true; // a throwing iterator is finished
      if (!conn.closed && this.answers(msg, ctx)) replyError(conn, appId, msg, err, exposeStacks);
    } finally {
      this._producing.delete(id);
      if (this.running.get(id) === ctx) this.running.delete(id);
      if (!ended && iterator !== null && typeof iterator.return === 'function') {
        try {
          await iterator.return();
        } catch (err) {
          this.host._emitError(err, 'closing a stream handler');
        }
      }
      done();
    }
  }
}

/**
 * Whether a handler's result streams (§15.6): an async iterable.
 * @param {unknown} result
 * @returns {boolean}
 */
function isAsyncIterable(result) {
  return result !== null && typeof result === 'object' && typeof result[Symbol.asyncIterator] === 'function';
}

module.exports = { Producers, ServeContext, isAsyncIterable };
