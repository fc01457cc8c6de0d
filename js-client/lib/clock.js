'use strict';

/**
 * The client's two clocks. Durations, deadlines and the moments things
 * happen are stamped on the monotonic clock, which a wall-clock step (NTP,
 * an administrator setting the time) does not move. A moment
 * reported to users in epoch ms is converted from its stamp when it is
 * read, against the wall clock of that read: it says how long ago it
 * happened, whatever the wall clock did since (as the Python client does,
 * ipc_client/introspection.py). `performance.timeOrigin + stamp` would not:
 * timeOrigin is the wall clock at process start, so after a step of one
 * hour every such time would be one hour off the wall clock it is
 * compared with. The monotonic clock stops while the machine sleeps: a
 * stamp from before a suspend reads later by its length, later ones exactly.
 */

const { performance } = require('node:perf_hooks');

/**
 * Monotonic milliseconds (any origin): the clock stamps are taken on.
 * @returns {number}
 */
function monotonicNow() {
  return performance.now();
}

/**
 * Epoch ms of a monotonic stamp: the wall clock now, less the time since.
 * @param {number} stamp a monotonicNow() value.
 * @param {number} [now] monotonicNow() at the read (one read for several stamps).
 * @param {number} [wall] Date.now() at the same read.
 * @returns {number}
 */
function epochMs(stamp, now = monotonicNow(), wall = Date.now()) {
  return wall - (now - stamp);
}

module.exports = { monotonicNow, epochMs };
