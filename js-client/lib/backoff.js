'use strict';

/**
 * Reconnection delays: exponential with jitter, capped. A pure function, so
 * the policy is tested without timers or sockets.
 */

/**
 * The delay before retry number `n`, counted from 0 as the Python client's
 * `Backoff.delay(n)` counts (the `reconnecting` event's `attempt` is n + 1).
 *
 * `initial * multiplier^n`, capped at `max`, then spread by `jitter` (0.5
 * means a factor drawn from [0.5, 1.5)) so that many clients dropped at
 * once by a server restart do not reconnect in lockstep.
 *
 * @param {number} n 0 for the first retry.
 * @param {{initial: number, max: number, multiplier?: number, jitter: number, random?: () => number}} policy
 *   milliseconds; `multiplier` defaults to 2; `random` is injectable for tests.
 * @returns {number} milliseconds, never above `max`.
 */
function backoffDelay(n, { initial, max, multiplier = 2, jitter, random = Math.random }) {
  const base = Math.min(max, initial * multiplier ** Math.min(n, 52));
  const spread = base * jitter * (2 * random() - 1);
  return Math.max(0, Math.min(max, base + spread));
}

module.exports = { backoffDelay };
