'use strict';

/**
 * Streams through a pool, a load-balanced client and a service client
 * (docs/protocol.md §15; docs/resilience.md §7, §8, §9), the mirror of
 * ipc_client/pooled_streams.py.
 *
 * `stream()` on ConnectionPool, LoadBalancedClient and ServiceClient
 * returns an async iterator as IPCClient.stream() does (`for await`; the
 * request goes out on the first next()), read from a pooled member:
 *
 * - Pool: a member shared as lease() shares it (a client multiplexes, so
 *   the stream does not hold the connection alone), taken at the first
 *   next() within the stream's `timeout` (at most `acquireTimeout`), held
 *   until the stream ends, fails or is left (`break`/return(), the
 *   `signal` aborting; a `cancel` goes to the producer at once), and then
 *   given back, once. One that failed before it got a member (none in
 *   time, none could be opened, the pool closed) counts in the pool's
 *   `messagesFailed`, as its requests that reached no member; one its
 *   reader left meanwhile does not.
 * - Load-balanced client: a server picked as for a request; until the
 *   first item arrives, an error a request fails over on (not_connected,
 *   connection_lost, shutting_down, no_responders, circuit_open) tries the
 *   next healthy server, within the stream's `timeout` (null: the client's
 *   `requestTimeout` bounds the failovers and the stream then has no
 *   deadline). Once an item was delivered, an error goes to the reader: a
 *   stream never starts again elsewhere. An attempt that got no connection
 *   counts as failed in its server's pool, a stream that reached no server
 *   in the client's own count, as a request.
 * - Service client: the service's balanced client, started first if need
 *   be (within the deadline), and counted in its metrics: one stream is one
 *   call, counted when it ends, an error if it ended with one (a `timeout`
 *   among the timeouts), its latency the time to its first item (to its
 *   end when none came). A reader that leaves (return(), an abort) is no
 *   error; one that leaves before the first item is not counted, as an
 *   aborted request is not. The load-balanced client's serverStats() count
 *   a stream so too, in flight for its whole life.
 *
 * Arguments are checked at the call (a throw), as IPCClient.stream()
 * checks them; the state (a closed pool or client, one not started, a
 * service client shut down) rejects the first next() with not_connected.
 * A pool or client closed while a stream is open ends it with
 * connection_lost, after the items that came, as it ends the calls in flight.
 *
 * This module has the stream (HeldStream) and the pool's; balanced_streams.js
 * the load-balanced client's and the service client's.
 */

const { checkStream } = require('./streams');
const { PoolCalls } = require('./pool_calls');
const { abortError } = require('./cancellation');
const { whenAborted } = require('./abort_listeners');
const { AbortError, RequestTimeoutError } = require('./errors');

const DONE = Object.freeze({ value: undefined, done: true });
const noop = () => {};
/** Thrown inside when the reader left: the stream ends, nobody sees it. */
const LEFT = Symbol('left');
const now = () => performance.now();

/**
 * Whether a stream's end is its reader's doing (return(), an abort), not a failure.
 * @param {unknown} error
 * @returns {boolean}
 */
function leftBy(error) {
  return error === LEFT || error instanceof AbortError;
}

/**
 * One stream read on a pooled member: the async iterator the three return.
 * `open(held)` reads the first result, taking members with _member() and
 * reading a member's stream with _read(); what it holds is given back once,
 * whoever ends first (the end, an error, return(), the signal).
 */
class HeldStream {
  /**
   * @param {string} channelId
   * @param {(held: HeldStream) => Promise<IteratorResult<unknown>>} open
   * @param {AbortSignal|undefined} signal
   */
  constructor(channelId, open, signal) {
    this.channelId = channelId;
    this._open = open;
    this._signal = signal;
    this._stopAbortListening = null;
    this._inner = null; // the member's stream
    this._lease = null; // {pool, member}: the member held now
    this._attemptEnd = null; // (error) => void: the balancer's count of this attempt
    this.onEnd = null; // (error) => void: the stream ended (the service's metrics)
    this.answered = null; // when the first item came (monotonic ms)
    this._opened = false;
    this._reading = false; // a next() waits on open() or on the member's stream
    this._finished = false; // no more items: ended, failed or left
    this._ended = false;
    this._error = null; // what the next next() throws, once (an abort while none waited)
    this._stopWaiting = null; // ends a wait for a member
    this._turn = null;
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

  /** @private */
  async _next() {
    if (this._error !== null) {
      const error = this._error;
      this._error = null;
      throw error;
    }
    if (this._finished) return DONE;
    let result;
    this._reading = true;
    try {
      if (this._opened) {
        result = await this._inner.next();
      } else {
        this._opened = true;
        const signal = this._signal;
        if (signal !== undefined) {
          this._stopAbortListening = whenAborted(signal, () => this._aborted());
        }
        result = await this._open(this);
      }
    } catch (err) {
      if (err === LEFT) return DONE;
      this._end(err);
      throw err;
    } finally {
      this._reading = false;
    }
    if (this._finished) return DONE; // left meanwhile
    if (result.done) this._end(null);
    else if (this.answered === null) this.answered = now();
    return result;
  }

  /**
   * Leaves the stream (the loop's `break`): `cancel` to the producer, the member given back.
   * @returns {Promise<IteratorResult<unknown>>}
   */
  async return() {
    this._leave();
    return DONE;
  }

  /**
   * @param {unknown} err
   * @returns {Promise<never>}
   */
  async throw(err) {
    this._leave();
    throw err;
  }

  /**
   * A member of `pool` shared as lease() shares it, within `timeout` ms;
   * given up (a member that comes later goes straight back) when the
   * reader leaves or the signal aborts first.
   * @param {import('./pool').ConnectionPool} pool
   * @param {number} timeout
   * @returns {Promise<object>}
   */
  _member(pool, timeout) {
    const signal = this._signal;
    if (this._finished) return Promise.reject(LEFT);
    if (signal !== undefined && signal.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      let waiting = true;
      let stopListening = null;
      const stop = (err) => {
        if (!waiting) return;
        waiting = false;
        this._stopWaiting = null;
        if (stopListening !== null) stopListening();
        if (err !== null) reject(err);
      };
      this._stopWaiting = stop;
      if (signal !== undefined) stopListening = whenAborted(signal, () => stop(abortError(signal)));
      pool._share(timeout).then(
        (member) => {
          if (!waiting) return pool._unshare(member);
          stop(null);
          this._lease = { pool, member }; // held from now: given back by whoever ends first
          resolve(member);
        },
        (err) => stop(err)
      );
    });
  }

  /**
   * Reads the first result of `inner`, a member's stream (lazy: nothing
   * was sent before this).
   * @param {import('./streams').Stream} inner
   * @returns {Promise<IteratorResult<unknown>>}
   */
  _read(inner) {
    if (this._finished) return Promise.reject(LEFT); // left while the member came: never sent
    this._inner = inner;
    return inner.next();
  }

  /**
   * The current attempt is over: its member given back, its count kept, once.
   * @param {unknown} error null: it ended well.
   */
  _settleAttempt(error) {
    const lease = this._lease;
    const attemptEnd = this._attemptEnd;
    this._lease = null;
    this._attemptEnd = null;
    this._inner = null;
    if (lease !== null) lease.pool._unshare(lease.member);
    if (attemptEnd !== null) attemptEnd(error);
  }

  /**
   * The stream is over, once: null its end, LEFT or an AbortError its reader left, else its error.
   * @param {unknown} error
   * @private
   */
  _end(error) {
    if (this._ended) return;
    this._ended = true;
    this._finished = true;
    if (this._stopAbortListening !== null) this._stopAbortListening();
    this._stopAbortListening = null;
    this._settleAttempt(error);
    const onEnd = this.onEnd;
    this.onEnd = null;
    if (onEnd !== null) onEnd(error);
  }

  /** @private */
  _leave() {
    if (this._finished) return;
    const inner = this._inner;
    if (inner !== null) inner.return(); // cancel at the producer, at once; its pending next() resolves done
    if (this._stopWaiting !== null) this._stopWaiting(LEFT);
    this._end(LEFT);
  }

  /**
   * The signal aborted. What a next() waits on (the member, the member's
   * stream, a service's start) rejects with it by itself; with no next()
   * waiting, the member goes back now (the member's stream sends the
   * cancel) and the next next() throws it.
   * @private
   */
  _aborted() {
    if (this._finished || this._reading) return;
    this._error = abortError(this._signal);
    this._end(this._error);
  }
}

/**
 * ConnectionPool.stream() (a base of the pool).
 */
class PoolStreaming extends PoolCalls {
  /**
   * IPCClient.stream() on a member shared as lease() shares it, held until
   * the stream ends and then given back. `timeout` (the whole stream's,
   * ms; default none) covers the wait for the member (at most
   * `acquireTimeout`).
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload]
   * @param {{timeout?: number|null, idleTimeout?: number, window?: number, signal?: AbortSignal, headers?: Record<string, string>}} [options]
   * @returns {HeldStream} an async iterator, as IPCClient.stream()'s.
   * @throws {TypeError|RangeError} bad arguments (at the call); the first
   *   next() rejects `timeout` when no member came in time, `not_connected`
   *   once the pool is closed, `connection_lost` when it closes meanwhile.
   */
  stream(channelId, payload = null, options = {}) {
    const checked = checkStream(channelId, options);
    return new HeldStream(channelId, (held) => this._streamOn(held, channelId, payload, checked), checked.signal);
  }

  /** @private */
  async _streamOn(held, channelId, payload, options) {
    const started = now();
    const { timeout } = options;
    let member;
    try {
      member = await held._member(this, timeout === null ? this.acquireTimeout : Math.min(this.acquireTimeout, timeout));
    } catch (err) {
      if (!leftBy(err)) this._countUnsent(); // no member saw it: failed, as a pool's request that got none
      throw err;
    }
    const left = timeout === null ? null : timeout - (now() - started);
    if (left !== null && left <= 0) {
      this._countUnsent();
      throw new RequestTimeoutError(`stream on ${JSON.stringify(channelId)} timed out waiting for a connection, before it was sent`);
    }
    return held._read(member.client.stream(channelId, payload, { ...options, timeout: left }));
  }
}

module.exports = { HeldStream, PoolStreaming, leftBy, LEFT };
