'use strict';

/**
 * A timer for any delay. setTimeout takes at most 2^31-1 ms (about 24.8
 * days; a longer delay fires at once, with a TimeoutOverflowWarning), so a
 * longer one waits in steps of at most that, re-armed until its deadline:
 * a call with a 30-day timeout times out after 30 days, not at once and
 * not never.
 */

const { performance } = require('node:perf_hooks');
const { MAX_TIMER_MS } = require('./constants');

/** A delay past setTimeout's ceiling: setTimeout in steps. */
class LongTimeout {
  /**
   * @param {() => void} fn
   * @param {number} due when it fires, on `clock`.
   * @param {() => number} clock monotonic ms.
   */
  constructor(fn, due, clock) {
    this._fn = fn;
    this._due = due;
    this._clock = clock;
    this._timer = null;
    this._refed = true;
    this._arm();
  }

  /** @private */
  _arm() {
    const left = this._due - this._clock();
    if (left > MAX_TIMER_MS) {
      this._timer = setTimeout(() => this._arm(), MAX_TIMER_MS);
    } else {
      this._timer = setTimeout(this._fn, Math.max(0, left));
    }
    if (!this._refed) this._timer.unref();
  }

  /**
   * Lets the process exit while it waits, as Timeout.unref() does.
   * @returns {this}
   */
  unref() {
    this._refed = false;
    this._timer.unref();
    return this;
  }

  /** Cancels it. */
  clear() {
    clearTimeout(this._timer);
  }
}

/**
 * setTimeout for any finite delay: a plain timer up to MAX_TIMER_MS, else
 * a LongTimeout. Cancel it with clearLongTimeout().
 * @param {() => void} fn
 * @param {number} ms finite.
 * @param {() => number} [clock] monotonic ms (a test's own).
 * @returns {NodeJS.Timeout|LongTimeout}
 */
function setLongTimeout(fn, ms, clock = () => performance.now()) {
  return ms <= MAX_TIMER_MS ? setTimeout(fn, ms) : new LongTimeout(fn, clock() + ms, clock);
}

/**
 * Cancels what setLongTimeout() returned (null: nothing).
 * @param {NodeJS.Timeout|LongTimeout|null|undefined} timer
 */
function clearLongTimeout(timer) {
  if (timer instanceof LongTimeout) timer.clear();
  else clearTimeout(timer);
}

module.exports = { setLongTimeout, clearLongTimeout };
