'use strict';

/**
 * The client's KPI counters (docs/resilience.md §2, "KPIs"). The client
 * reports what happened; this module only counts and derives the rates and
 * averages, on an injected clock, so the arithmetic is tested on its own.
 */

/**
 * Milliseconds as both clients report a mean: 3 decimals (whole
 * microseconds), rounded from the number's exact value as Python's round() is.
 * @param {number} ms
 * @returns {number}
 */
function roundMs(ms) {
  return Number(ms.toFixed(3));
}

/**
 * @param {number} total
 * @param {number} count
 * @returns {number} the mean, rounded as roundMs(); 0 over nothing.
 */
function meanMs(total, count) {
  return count > 0 ? roundMs(total / count) : 0;
}

/**
 * Counters since the client was created.
 */
class Metrics {
  /**
   * @param {{now?: () => number}} [options] monotonic clock in ms.
   */
  constructor({ now = () => performance.now() } = {}) {
    this._now = now;
    this.connectionAttempts = 0;
    this.connectionSuccesses = 0;
    this.reconnections = 0;
    this.messagesSent = 0;
    this.messagesDelivered = 0;
    this.messagesFailed = 0;
    // Shared calls and iterators (docs/resilience.md §11), counted by their modules.
    this.cacheHits = 0;
    this.cacheMisses = 0;
    this.cacheSize = 0;
    this.requestsCoalesced = 0;
    this.iteratorDropped = 0;
    // Inbound messages not held for a handler slot: maxHeldMessages reached (admission.js).
    this.heldDropped = 0;
    this._reconnectTotalMs = 0;
    this._closedConnections = 0;
    this._closedDurationMs = 0;
    this._openedAt = null; // start of the current connection
    this._lostAt = null; // when the last connection was lost unexpectedly
  }

  /** A TCP connect plus handshake starts. */
  attempt() {
    this.connectionAttempts++;
  }

  /** A handshake succeeded: a connection starts living. */
  opened() {
    this.connectionSuccesses++;
    this._openedAt = this._now();
  }

  /**
   * The current connection ended (or the client stopped trying).
   * @param {boolean} unexpected a loss that reconnection will try to repair:
   *   the reconnection time counts from the first loss, not from a later
   *   attempt that failed while restoring; false forgets the loss.
   */
  closed(unexpected) {
    const t = this._now();
    if (this._openedAt !== null) {
      this._closedConnections++;
      this._closedDurationMs += t - this._openedAt;
      this._openedAt = null;
    }
    if (!unexpected) this._lostAt = null;
    else if (this._lostAt === null) this._lostAt = t;
  }

  /**
   * A reconnection succeeded.
   * @returns {number} ms since the connection was lost.
   */
  reconnected() {
    const elapsed = this._lostAt === null ? 0 : this._now() - this._lostAt;
    this._lostAt = null;
    this.reconnections++;
    this._reconnectTotalMs += elapsed;
    return elapsed;
  }

  /** A request or one-way message was written to a socket. */
  sent() {
    this.messagesSent++;
  }

  /** A call ended in a result (or a one-way message was written). */
  delivered() {
    this.messagesDelivered++;
  }

  /** A call ended in a local failure. */
  failed() {
    this.messagesFailed++;
  }

  /**
   * The KPI table, in camelCase.
   * @param {{queued?: number, queuedBytes?: number, queueDropped?: number}} [queue]
   * @returns {object}
   */
  snapshot({ queued = 0, queuedBytes = 0, queueDropped = 0 } = {}) {
    const live = this._openedAt === null ? null : this._now() - this._openedAt;
    const count = this._closedConnections + (live === null ? 0 : 1);
    const ended = this.messagesDelivered + this.messagesFailed;
    return {
      connectionAttempts: this.connectionAttempts,
      connectionSuccesses: this.connectionSuccesses,
      connectionSuccessRate: this.connectionAttempts === 0 ? 1 : this.connectionSuccesses / this.connectionAttempts,
      reconnections: this.reconnections,
      averageReconnectionTimeMs: meanMs(this._reconnectTotalMs, this.reconnections),
      messagesSent: this.messagesSent,
      messagesDelivered: this.messagesDelivered,
      messagesFailed: this.messagesFailed,
      messageDeliveryRate: ended === 0 ? 1 : this.messagesDelivered / ended,
      activeConnections: live === null ? 0 : 1,
      averageConnectionDurationMs: meanMs(this._closedDurationMs + (live ?? 0), count),
      cacheHits: this.cacheHits,
      cacheMisses: this.cacheMisses,
      cacheSize: this.cacheSize,
      requestsCoalesced: this.requestsCoalesced,
      iteratorDropped: this.iteratorDropped,
      heldDropped: this.heldDropped,
      queued,
      queuedBytes,
      queueDropped
    };
  }
}

module.exports = { Metrics, meanMs, roundMs };
