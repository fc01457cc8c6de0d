'use strict';

/**
 * Failover of a LoadBalancedClient's calls (docs/resilience.md §8): one
 * healthy server after another, within the call's original deadline; which
 * errors are worth another server, and which say the server is gone.
 */

const { ErrorCode, NotConnectedError, RequestTimeoutError } = require('./errors');
const { toNumber } = require('./legacy_options');

/** Errors after which the call is tried on the next healthy server (§8). */
const FAILOVER_CODES = new Set([
  ErrorCode.NOT_CONNECTED,
  ErrorCode.CONNECTION_LOST,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.NO_RESPONDERS,
  ErrorCode.CIRCUIT_OPEN
]);

/** Of those, the ones that say the server itself is gone: it leaves the rotation. */
const SERVER_DOWN_CODES = new Set([ErrorCode.NOT_CONNECTED, ErrorCode.CONNECTION_LOST, ErrorCode.SHUTTING_DOWN]);

/**
 * Monotonic milliseconds.
 * @returns {number}
 */
function now() {
  return performance.now();
}

/**
 * Checks a positive duration (a numeric string is read as its number).
 * @param {string} name
 * @param {unknown} value
 * @returns {number}
 */
function checkDuration(name, value) {
  value = toNumber(value);
  if (typeof value !== 'number' || !(value > 0)) {
    throw new TypeError(`${name} must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}

/**
 * The next server a call fails over to, added to `tried` (Python's
 * `Balancer.next_server`). Throws when there is none: a `RequestTimeoutError`
 * once `left` is spent (the last server's own timeout, if that is how it
 * failed), the last error when no other server can fix it, else
 * `NotConnectedError`.
 * @param {Balancer} balancer
 * @param {Set<ServerState>} tried
 * @param {Error|null} lastError
 * @param {number} left milliseconds.
 * @param {string} what for the timeout's message: "no server <what> within ...".
 * @param {number} total the call's whole budget, milliseconds.
 * @returns {ServerState}
 */
function nextServer(balancer, tried, lastError, left, what, total) {
  if (left <= 0) {
    if (lastError !== null && lastError.code === ErrorCode.TIMEOUT) throw lastError;
    throw new RequestTimeoutError(`no server ${what} within ${Math.round(total)} ms`);
  }
  const server = balancer.pick(tried);
  if (server === null) {
    if (lastError !== null && !SERVER_DOWN_CODES.has(lastError.code)) throw lastError; // no_responders or circuit_open everywhere
    throw new NotConnectedError('no healthy server', lastError ? { cause: lastError } : undefined);
  }
  tried.add(server);
  return server;
}

/**
 * `err` ended an attempt on `server`: takes the server out of the rotation
 * when the error says it is gone, and throws it when no other server can
 * do better (Python's `LoadBalancedClient._fail_over`). Without a
 * connection to it in time (or at all), the next server may always do better.
 * @param {ServerState} server
 * @param {Error} err
 * @param {boolean} connected whether the attempt had a connection to it.
 * @param {(server: ServerState, err: Error) => void} markDown
 */
function failOver(server, err, connected, markDown) {
  if (!connected) {
    if (err.code === ErrorCode.NOT_CONNECTED) markDown(server, err);
    return;
  }
  if (!FAILOVER_CODES.has(err && err.code)) throw err;
  if (SERVER_DOWN_CODES.has(err.code)) markDown(server, err);
}

/**
 * Runs `call` on a leased client of one healthy server after another
 * until it succeeds, fails with an error that is not worth another
 * server, or the deadline passes. Each server is tried at most once.
 *
 * As in the Python client, a call counts on its server from before the
 * lease: one waiting for a first connection is in flight there for
 * least_connections, and one that gets no connection counts as an error,
 * and as failed in that server's pool's metrics; a call that reached no
 * server at all (none healthy) is counted by `unsent`.
 * @template T
 * @param {Balancer} balancer picks the server.
 * @param {Map<ServerState, ConnectionPool>} pools each server's pool.
 * @param {(server: ServerState, err: Error) => void} markDown takes a server out of the rotation.
 * @param {number} timeout milliseconds.
 * @param {(client: IPCClient, left: number, total: number) => Promise<T>} call
 * @param {() => void} unsent counts a call that failed before any server was tried.
 * @returns {Promise<T>}
 */
async function routeCall(balancer, pools, markDown, timeout, call, unsent) {
  timeout = checkDuration('timeout', timeout);
  const deadline = now() + timeout;
  const tried = new Set();
  let lastError = null;
  try {
    for (;;) {
      const left = deadline - now();
      const server = nextServer(balancer, tried, lastError, left, 'answered', timeout);
      const pool = pools.get(server);
      const started = now();
      let leased = false;
      server.begin();
      try {
        const result = await pool.lease(
          (client) => {
            leased = true;
            return call(client, Math.max(1, deadline - now()), timeout); // a timeout names the call's own
          },
          { timeout: Math.min(left, pool.acquireTimeout) }
        );
        server.end(true, now() - started);
        return result;
      } catch (err) {
        server.end(false, now() - started);
        if (!leased) pool._countUnsent();
        failOver(server, err, leased, markDown);
        lastError = err;
      }
    }
  } catch (err) {
    if (tried.size === 0) unsent();
    throw err;
  }
}

module.exports = { FAILOVER_CODES, SERVER_DOWN_CODES, checkDuration, failOver, nextServer, routeCall };
