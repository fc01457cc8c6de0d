'use strict';

/**
 * The server's goaway notice (docs/protocol.md §13 item 3, docs/resilience.md
 * §12): it is closing this connection and reads on until the client closes.
 *
 * Closing at once would reset what crosses the close, answers included; not
 * closing would let new calls cross it. So, as an HTTP/2 client on GOAWAY:
 * at the notice the client sends nothing new on the connection (its state
 * leaves 'connected': new calls wait in the offline queue as while
 * reconnecting, or fail NotConnectedError with reconnect off), emits
 * 'disconnected' with a ShuttingDownError, and keeps reading: each call in
 * flight ends with its answer (shutting_down for those the server did not
 * run). Once none is left, or after the server's own wait (2 s, when it
 * aborts), it closes the socket and reconnects with its usual backoff; a
 * call still waiting then fails connection_lost, as it would.
 *
 * A notice that comes while the client is still connecting (with the
 * connect answer, or while the subscriptions are restored: a shutdown
 * during a reconnection storm) marks the connection; the attempt then fails
 * instead of going 'connected' (leaveToldWhileConnecting), closes the
 * socket without a reset, and is retried as any failed attempt; calls made
 * meanwhile wait in the offline queue. The Python mirror is
 * ipc_client/going_away.py.
 */

const { now } = require('./connection');
const { State } = require('./state');
const { NotConnectedError, ShuttingDownError } = require('./errors');
const { isGoaway } = require('./protocol/restarts');

const GOAWAY_WAIT_MS = 2000; // the server's wait for its clients to close (ipc_server/shutdown.py)
const CHECK_MS = 10; // how often the wait looks at what is still in flight

/**
 * If `msg` is the notice: stop using `conn`, let what it carries end, then close it.
 * @param {object} lifecycle the client's Lifecycle.
 * @param {object} conn the connection it came on.
 * @param {object} msg a publish on `system`.
 * @returns {boolean} whether it was the notice.
 */
function goAway(lifecycle, conn, msg) {
  if (!isGoaway(msg)) return false;
  conn.goingAway = true; // still connecting: the attempt fails once it would be connected
  const host = lifecycle.host;
  if (conn !== host._conn || host._state !== State.CONNECTED) return true;
  const retry = host.options.reconnect;
  const cause = new ShuttingDownError(`${host.options.host}:${host.options.port} is shutting down: the connection closes once its calls are answered`);
  conn._stopHeartbeat(); // it sends nothing new, pings included; the wait is bounded
  host._setState(retry ? State.RECONNECTING : State.DISCONNECTED); // new calls queue for the next connection
  if (!retry) lifecycle._abandon(new NotConnectedError('the server is shutting down and reconnection is off', { cause }));
  const generation = host._generation;
  host._emitSafely('disconnected', cause);
  closeWhenDone(host, conn, generation, retry);
  return true;
}

/**
 * Waits for the calls and streams in flight (bounded), then closes `conn`
 * and starts the reconnection; the close's loss (Lifecycle.onClosed) fails
 * what is still waiting.
 * @private
 */
function closeWhenDone(host, conn, generation, retry) {
  const deadline = now() + GOAWAY_WAIT_MS; // monotonic: a wall clock step neither cuts nor stretches it
  const check = () => {
    if (!conn.closed && host._calls.pending.size + host._streams.size > 0 && now() < deadline) {
      setTimeout(check, CHECK_MS);
      return;
    }
    conn.close().then(() => {
      if (retry && host._generation === generation && host._state === State.RECONNECTING) host._reconnector.start();
      else if (!retry && host._generation === generation && host._state === State.DISCONNECTED) host._emitSafely('close');
    });
  };
  check();
}

/**
 * Where an attempt would go 'connected' but its connection was told goaway
 * meanwhile (`conn.goingAway`): closes it without a reset and fails the
 * attempt, retried with backoff as any failed attempt; with reconnect off,
 * what connect() rejects with.
 * @param {object} host the IPCClient.
 * @param {object} conn the connection being opened.
 * @returns {Promise<never>}
 */
async function leaveToldWhileConnecting(host, conn) {
  await conn.close(); // its close (Lifecycle.onClosed) lets go of it: never CONNECTED
  const peer = `${host.options.host}:${host.options.port}`;
  throw new NotConnectedError(`cannot connect to ${peer}: it is shutting down`, {
    cause: new ShuttingDownError(`${peer} sent goaway while the connection was being opened`)
  });
}

module.exports = { goAway, leaveToldWhileConnecting, GOAWAY_WAIT_MS };
