'use strict';

/**
 * Sliding-window call statistics (docs/resilience.md §9): the last N calls'
 * latencies and start times in a ring buffer, so a dashboard sees how the
 * service behaves now rather than since the process started. Pure: the
 * caller passes the times, so it is tested without clocks.
 */

/** Calls kept by default (§9). */
const DEFAULT_WINDOW_SIZE = 1024;

/**
 * The value at percentile `p` of sorted `values` (nearest rank).
 * @param {Float64Array|number[]} sorted ascending.
 * @param {number} p between 0 and 100.
 * @returns {number|null} null for an empty list.
 */
function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * The latencies and start times of the last `size` calls.
 */
class LatencyWindow {
  /**
   * @param {number} [size] how many calls to keep.
   */
  constructor(size = DEFAULT_WINDOW_SIZE) {
    if (!Number.isInteger(size) || size < 1) throw new TypeError(`size must be a positive integer, got ${String(size)}`);
    this.size = size;
    this._latencies = new Float64Array(size);
    this._starts = new Float64Array(size);
    this._next = 0; // where the next call goes
    this._count = 0; // calls in the window, up to size
  }

  /** Calls currently in the window. */
  get count() {
    return this._count;
  }

  /**
   * Adds one call; the oldest falls out once the window is full.
   * @param {number} latencyMs how long the call took.
   * @param {number} startedAt when it started (any monotonic ms clock).
   */
  record(latencyMs, startedAt) {
    this._latencies[this._next] = latencyMs;
    this._starts[this._next] = startedAt;
    this._next = (this._next + 1) % this.size;
    if (this._count < this.size) this._count++;
  }

  /**
   * The window's figures at time `at`.
   *
   * `perSecond` is the calls in the window divided by the time from the
   * oldest one's start to `at`: the recent rate, which falls when calls stop.
   *
   * @param {number} at now, on the clock given to record().
   * @returns {{count: number, avg: number|null, p50: number|null, p99: number|null, perSecond: number}}
   */
  snapshot(at) {
    const n = this._count;
    if (n === 0) return { count: 0, avg: null, p50: null, p99: null, perSecond: 0 };
    const sorted = this._latencies.slice(0, n).sort();
    let sum = 0;
    let oldest = Infinity;
    for (let i = 0; i < n; i++) {
      sum += sorted[i];
      if (this._starts[i] < oldest) oldest = this._starts[i];
    }
    const spanMs = at - oldest;
    return {
      count: n,
      avg: sum / n,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      perSecond: spanMs > 0 ? (n * 1000) / spanMs : 0
    };
  }
}

module.exports = { LatencyWindow, percentile, DEFAULT_WINDOW_SIZE };
