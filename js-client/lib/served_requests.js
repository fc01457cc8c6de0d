'use strict';

/**
 * Served requests as an async iterator (`client.requests(pattern)`), on the
 * buffer of lib/iterators.js; ipc_client/served_requests.py is the same in Python.
 *
 * A served request always gets exactly one answer: the loop's `respond()`
 * or `fail()`; `limit_exceeded` for one dropped by the buffer's policy;
 * `responder_lost` for one still buffered or unanswered when the loop ends.
 * One whose requester stopped waiting (its deadline passed, or the
 * connection it came on is gone, it cancelled: the server has answered it)
 * is skipped unanswered, as handler admission skips held requests; `req.signal` aborts
 * when the requester gives up on a request the loop holds (§15.4).
 */

const { now } = require('./connection');
const { BufferedIterator } = require('./iterators');
const { HandlerError, LimitExceededError, RequestTimeoutError, ResponderLostError } = require('./errors');

/**
 * One request the loop of `client.requests()` received; answer it once,
 * with respond() or fail().
 */
class ServedRequest {
  /**
   * @param {RequestIterator} owner
   * @param {object} message the request.
   * @param {object|null} conn the connection it came on.
   * @param {object|null} ctx the handler's context: its `signal` aborts when the requester gives up (§15.4).
   * @param {(value: unknown) => void} resolve answers it (the admission writes the response).
   * @param {(err: unknown) => void} reject
   */
  constructor(owner, message, conn, ctx, resolve, reject) {
    this.message = message;
    this._owner = owner;
    this._conn = conn;
    this._ctx = ctx;
    this._signal = ctx === null ? null : ctx.signal;
    const timed = typeof message.timeout_ms === 'number' && message.timeout_ms > 0;
    this._expires = timed ? now() + message.timeout_ms : Infinity;
    this._resolve = resolve;
    this._reject = reject;
    this._answered = false;
    this._settled = false;
  }

  /** @returns {unknown} */
  get payload() {
    return this.message.payload;
  }

  /** @returns {string} */
  get channel() {
    return this.message.channel_id;
  }

  /** @returns {Record<string, string>|null} */
  get headers() {
    return this.message.headers ?? null;
  }

  /** @returns {AbortSignal|null} aborts when the requester gives up (its deadline, its abort, its connection lost). */
  get signal() {
    return this._signal;
  }

  /** @returns {boolean} whether respond() or fail() was called. */
  get answered() {
    return this._answered;
  }

  /**
   * Answers with `result`.
   * @param {unknown} [result]
   * @returns {boolean} false when the answer can no longer be sent (the
   *   connection it came on is gone, the requester gave up, or the loop
   *   ended and answered responder_lost).
   * @throws {Error} it was already answered.
   */
  respond(result = null) {
    return this._answer(true, result);
  }

  /**
   * Answers with an error: a RemoteError keeps its code, any other error (or
   * a message) is handler_error, as a handler's.
   * @param {unknown} err
   * @returns {boolean} as respond().
   */
  fail(err) {
    return this._answer(false, typeof err === 'string' ? new HandlerError(err) : err);
  }

  /** @private */
  _answer(ok, value) {
    if (this._answered) throw new Error(`request ${this.message.message_id} on ${this.channel} was already answered`);
    this._answered = true;
    this._owner._outstanding.delete(this);
    if (this._settled) return false;
    this._settled = true;
    if (ok) this._resolve(value);
    else this._reject(value);
    if (this._signal !== null && this._signal.aborted) return false; // the requester gave up: dropped (§15.4)
    return this._conn === this._owner._client._conn && this._conn !== null && !this._conn.closed;
  }

  /**
   * Answered by the iterator (dropped, skipped, or left when the loop ended).
   * @param {Error} err
   * @private
   */
  _settle(err) {
    if (this._settled) return;
    this._settled = true;
    if (this.message.message_type === 'request') this._reject(err);
    else this._resolve(undefined); // a notification: nobody waits for an answer
  }
}

/**
 * `for await (const req of client.requests(pattern))`: the requests this client serves on `pattern`.
 * Each unanswered one holds a handler slot (maxConcurrentHandlers).
 */
class RequestIterator extends BufferedIterator {
  constructor(client, channelId, options) {
    super(client, channelId, options);
    /** @type {Set<ServedRequest>} given to the loop, not answered yet */
    this._outstanding = new Set();
    /** The responder: the request waits in a promise until the loop answers it. */
    this._handler = (msg, ctx) =>
      new Promise((resolve, reject) => this._push(new ServedRequest(this, msg, this._client._conn, ctx ?? null, resolve, reject)));
  }

  /** @private */
  async _register() {
    this._registered = true;
    try {
      await this._client.serve(this.channel, this._handler, this._ackOptions);
    } catch (err) {
      this._registered = false; // serve() left nothing behind
      throw err;
    }
  }

  /** @private */
  _withdraw() {
    return this._client.unserve(this.channel);
  }

  /** @private */
  get _callback() {
    return this._handler;
  }

  /** @private */
  _accept(req) {
    if (req._settled) return false;
    if (req._conn !== this._client._conn || req._conn === null || req._conn.closed) {
      req._settle(new ResponderLostError('the connection the request came on is gone')); // never written
      return false;
    }
    if (req._signal !== null && req._signal.aborted) {
      req._settle(new ResponderLostError('the requester gave up before the loop took it')); // never written (§15.4)
      return false;
    }
    if (req._expires <= now()) {
      // The server answered it `timeout` at its deadline and drops a late answer (§6.2): none is written, as Python's.
      const late = new RequestTimeoutError('the requester stopped waiting before the loop took it');
      if (req._ctx !== null) req._ctx._skip(late);
      req._settle(late);
      return false;
    }
    this._outstanding.add(req);
    return true;
  }

  /** @private */
  _refuse(req, overflow) {
    const details = { channel: this.channel, max_buffered: this.maxBuffered, overflow: this.overflow };
    req._settle(
      overflow
        ? new LimitExceededError(`the responder's loop on ${this.channel} has ${this.maxBuffered} requests waiting`, { details })
        : new ResponderLostError(`the responder's loop on ${this.channel} ended before answering`)
    );
  }

  /** @private */
  _finish(leftovers) {
    for (const req of [...leftovers, ...this._outstanding]) this._refuse(req, false);
    this._outstanding.clear();
  }
}

module.exports = { RequestIterator, ServedRequest };
