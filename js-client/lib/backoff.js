'use strict';

/**
 * Reconnection delays: exponential with jitter, capped. A pure function, so
 * the policy is tested without timers or sockets. The pool's refill uses it
 * too (pool_core.js).
 */

/**
 * The delay before retry number `n`, counted from 0 as the Python client's
 * `Backoff.delay(n)` counts (the `reconnecting` event's `attempt` is n + 1).
 *
 * Uniform in `[c * (1 - jitter), min(c * (1 + jitter), max))` with
 * `c = min(initial * multiplier^n, max)`: the capped base is jittered, and
 * where its upper spread passes the cap the range ends at the cap. Clamping
 * after the jitter instead makes half of the delays at the cap exactly `max`,
 * so a fleet dropped together (a server restart) would retry together there.
 * At the cap, jitter 0.5 is AWS's "equal jitter" (`c/2 + U(0, c/2)`) and
 * jitter 1 its "full jitter" (`U(0, c)`), from "Exponential Backoff And
 * Jitter" (AWS Architecture Blog, 2015); nats.js instead adds
 * `U(0, reconnectJitter)` to a fixed wait. Same rule as ipc_client/backoff.py.
 *
 * @param {number} n 0 for the first retry.
 * @param {{initial: number, max: number, multiplier?: number, jitter: number, random?: () => number}} policy
 *   milliseconds; `multiplier` defaults to 2; `random` (in [0, 1)) is injectable for tests.
 * @returns {number} milliseconds, never above `max`.
 */
function backoffDelay(n, { initial, max, multiplier = 2, jitter, random = Math.random }) {
  const capped = Math.min(max, initial * multiplier ** Math.min(n, 52));
  if (!jitter) return capped;
  const low = capped * (1 - jitter);
  const high = Math.min(max, capped * (1 + jitter));
  return Math.min(max, low + (high - low) * random());
}

module.exports = { backoffDelay };
