'use strict';

/**
 * One pooled client and what the pool knows of it (pool_core.js), as
 * planPool() (pool_plan.js) reads it. Mirrors ipc_client/pool_core.py's Member.
 */

/**
 * The error of a 'disconnected' event: the event passes the error (§2), or
 * an object holding it.
 * @param {unknown} arg
 * @returns {Error|null}
 * @private
 */
function lostError(arg) {
  if (arg instanceof Error) return arg;
  return arg !== null && typeof arg === 'object' && arg.error instanceof Error ? arg.error : null;
}

/** One pooled client and its use, as planPool() reads it. */
class Member {
  constructor(client, now) {
    this.client = client;
    this.leased = false; // held by acquire()
    this.shared = 0; // lease() calls in flight
    this.idleSince = now;
    this.idleTimer = null;
    this.dead = false; // its connection dropped: never handed out again
    this.lostError = null; // why, for its 'destroyed' event
  }

  get usable() {
    return !this.dead && this.client.connected;
  }
}

module.exports = { Member, lostError };
