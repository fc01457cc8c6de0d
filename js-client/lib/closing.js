'use strict';

/**
 * A call that finds its connection closing (docs/resilience.md §3): the
 * socket is destroyed at once (a write failed, a broken frame came in), but
 * the client hears of it only on the socket's 'close', a later macrotask.
 * A call that failed at once, in a microtask, let a retry loop that only
 * awaits promises spin for ever on a client still `connected`: the close
 * never got to run. Such a call fails once the client has handled the loss
 * (Calls.failAll(), from the close handling), never past its deadline; the
 * next call then sees the real state (not connected, or the offline queue).
 * The one helper of every send path (requests, acks, one-way sends, streams).
 */

const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { now } = require('./connection');
const { ConnectionLostError } = require('./errors');

/** @type {WeakMap<object, {promise: Promise<void>, resolve: () => void}>} connection -> its loss handled */
const handled = new WeakMap();

/**
 * Whether a call on `conn` would find it closing (nothing can be written).
 * @param {import('./connection').Connection|null} conn
 * @returns {boolean}
 */
function isClosing(conn) {
  return conn !== null && !conn.writable;
}

/**
 * Rejects `connection_lost` ("the connection is closed") for a call `conn`
 * did not take, once the client has handled its loss or at `deadline`,
 * whichever comes first. At once when the client let go of it already: a
 * loss handled, or disconnect()'s own close (no loss to wait for).
 * @param {object} host the IPCClient (`_conn`: the connection it holds).
 * @param {import('./connection').Connection} conn
 * @param {number} deadline monotonic ms (Infinity: no deadline).
 * @returns {Promise<never>}
 */
function failUnsent(host, conn, deadline) {
  const err = new ConnectionLostError('the connection is closed');
  const left = deadline - now();
  if (conn !== host._conn || conn.closed || !(left > 0)) return Promise.reject(err);
  let waiter = handled.get(conn);
  if (waiter === undefined) {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    handled.set(conn, (waiter = { promise, resolve }));
  }
  return new Promise((resolve, reject) => {
    const timer = Number.isFinite(left) ? setLongTimeout(() => reject(err), left) : null;
    waiter.promise.then(() => {
      clearLongTimeout(timer);
      reject(err);
    });
  });
}

/**
 * The client let go of `conn` (its loss handled, or disconnect()): the
 * calls failUnsent() holds fail now.
 * @param {import('./connection').Connection|null} conn
 */
function lossHandled(conn) {
  const waiter = conn === null ? undefined : handled.get(conn);
  if (waiter === undefined) return;
  handled.delete(conn);
  waiter.resolve();
}

module.exports = { isClosing, failUnsent, lossHandled };
