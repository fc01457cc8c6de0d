'use strict';

/**
 * `drain()`: leave without dropping work (docs/resilience.md §12), after
 * nats.js's `drain()`. In order:
 *
 * 1. No new work: a call the application starts from now on rejects with
 *    NotConnectedError (code `not_connected`: this client will not send
 *    it). Calls made by the handlers the client is still running (inside
 *    the trace of a message it received, `currentTraceContext()`) go
 *    through: they are how that work finishes.
 * 2. The server routes elsewhere: every responder registration is
 *    withdrawn (`unserve`, whose ack means no more requests come) and every
 *    subscription removed.
 * 3. What is in flight ends: this client's calls (and the queue, replayed
 *    once connected: the offline queue is flushed, not dropped), the served
 *    requests and handlers running or held, the streams it consumes, the
 *    calls waiting to be written behind a full send buffer.
 * 4. `disconnect()`; what did not end by the deadline ends as there: calls
 *    connection_lost, queued calls not_connected.
 *
 * The Python client's `ipc_client/drain.py` is the same. Host interface
 * (the IPCClient that owns it): `_calls` (`pending`, `line`), `_outbox` (`queue`,
 * `replaying`, `keyed`), `_admission` (`running`, `heldCount`), `_streams` (`size`),
 * `_subs` (`responders`, `subscriptions`, `unserve()`, `unsubscribe()`),
 * `disconnect()`.
 */

const { NotConnectedError } = require('./errors');
const { currentTraceContext } = require('./tracing');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');

/** nats.js's default drain timeout, ms. */
const DEFAULT_DRAIN_TIMEOUT_MS = 30000;
/** How often what is in flight is looked at again, ms. */
const CHECK_EVERY_MS = 10;

/**
 * One client's drain: whether it is under way (`check()` refuses new calls
 * then), and the steps.
 */
class Drain {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    this.active = false;
    this._done = null;
  }

  /**
   * Whether a call made now is made by a handler of this client (those go
   * through while draining): read where a call is made that starts later.
   * @returns {boolean}
   */
  fromHandler() {
    return currentTraceContext() !== null;
  }

  /**
   * Refuses a new call while draining, unless a handler of this client makes it.
   * @param {boolean} [fromHandler] fromHandler() where the call was made, when it starts later.
   * @throws {NotConnectedError}
   */
  check(fromHandler = this.fromHandler()) {
    if (this.active && !fromHandler) {
      throw new NotConnectedError('the client is draining (drain()): it starts no new calls');
    }
  }

  /**
   * IPCClient.drain().
   * @param {{timeout?: number}} [options] ms.
   * @returns {Promise<boolean>} true when everything ended in time.
   */
  run({ timeout = DEFAULT_DRAIN_TIMEOUT_MS } = {}) {
    if (typeof timeout !== 'number' || !(timeout > 0)) {
      return Promise.reject(new TypeError(`timeout must be a positive number of milliseconds, got ${String(timeout)}`));
    }
    if (this._done !== null) return this._done; // a drain is under way: the same outcome
    this.active = true;
    this._done = this._steps(performance.now() + timeout).finally(() => {
      this.active = false;
      this._done = null;
    });
    return this._done;
  }

  /**
   * @param {number} deadline monotonic ms.
   * @returns {Promise<boolean>}
   * @private
   */
  async _steps(deadline) {
    let clean = false;
    try {
      await this._withdraw(deadline);
      clean = await this._settle(deadline);
    } finally {
      await this.host.disconnect();
    }
    return clean;
  }

  /**
   * Unserves and unsubscribes everything; each unserve resolves once the
   * server has acknowledged (requests it forwarded before still arrive).
   * @param {number} deadline
   * @returns {Promise<void>}
   * @private
   */
  async _withdraw(deadline) {
    const subs = this.host._subs;
    const withdrawals = [...subs.responders.keys()].map((channel) => subs.unserve(channel));
    withdrawals.push(...[...subs.subscriptions.keys()].map((channel) => subs.unsubscribe(channel)));
    if (withdrawals.length === 0) return;
    let timer;
    const expired = new Promise((resolve) => {
      // the deadline came first: disconnect() ends the rest (past 2^31-1 ms, or Infinity, in steps)
      timer = setLongTimeout(resolve, Math.max(0, deadline - performance.now()));
    });
    try {
      await Promise.race([Promise.allSettled(withdrawals), expired]);
    } finally {
      clearLongTimeout(timer);
    }
  }

  /**
   * Whether anything is still in flight. A keyed request counts from start
   * to end (`outbox.keyed`): between a loss and its resend it is in neither
   * the pending table nor the queue, yet it will be settled.
   * @returns {boolean}
   * @private
   */
  _busy() {
    const { _calls: calls, _outbox: outbox, _admission: admission, _streams: streams } = this.host;
    return calls.pending.size > 0 || (calls.line !== null && calls.line.waiting.size > 0) || outbox.queue.size > 0 || outbox.replaying !== null || outbox.keyed > 0 || admission.running > 0 || admission.heldCount > 0 || streams.size > 0;
  }

  /**
   * Waits until nothing is in flight (true) or the deadline (false).
   * @param {number} deadline
   * @returns {Promise<boolean>}
   * @private
   */
  async _settle(deadline) {
    while (this._busy()) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, CHECK_EVERY_MS)));
    }
    return true;
  }
}

module.exports = { Drain, DEFAULT_DRAIN_TIMEOUT_MS };
