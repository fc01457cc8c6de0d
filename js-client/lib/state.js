'use strict';

/**
 * The client's connection states and the one table of allowed moves
 * (docs/resilience.md §2). Keeping the table here, apart from the client,
 * makes every transition reviewable at a glance; any other move is a bug.
 */

/** Connection states, the same strings as the Python client. */
const State = Object.freeze({
  DISCONNECTED: 'disconnected', // never connected, disconnect()ed, or gave up
  CONNECTING: 'connecting', // connect() in progress
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting', // lost the connection (or waitOnFirstConnect), retrying with backoff
  DISCONNECTING: 'disconnecting' // disconnect() is closing the socket
});

/** Allowed transitions: state -> states it may move to. */
const TRANSITIONS = Object.freeze({
  [State.DISCONNECTED]: Object.freeze([State.CONNECTING]),
  // CONNECTING -> RECONNECTING: the attempt of connect() failed and waitOnFirstConnect keeps trying
  [State.CONNECTING]: Object.freeze([State.CONNECTED, State.RECONNECTING, State.DISCONNECTED, State.DISCONNECTING]),
  [State.CONNECTED]: Object.freeze([State.RECONNECTING, State.DISCONNECTING, State.DISCONNECTED]),
  [State.RECONNECTING]: Object.freeze([State.CONNECTED, State.DISCONNECTING, State.DISCONNECTED]),
  [State.DISCONNECTING]: Object.freeze([State.DISCONNECTED])
});

/**
 * Checks a move against the table.
 * @param {string} from
 * @param {string} to
 * @returns {string} `to`.
 * @throws {Error} the move is not in the table (an internal bug).
 */
function transition(from, to) {
  const allowed = TRANSITIONS[from];
  if (allowed === undefined || !allowed.includes(to)) {
    throw new Error(`internal error: invalid transition ${from} -> ${to}`);
  }
  return to;
}

module.exports = { State, TRANSITIONS, transition };
