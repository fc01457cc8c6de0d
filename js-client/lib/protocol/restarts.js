'use strict';

/**
 * What the wire says about restarts (docs/protocol.md §13): the mark a
 * client puts on a request it replays from its offline queue (§13.2), the
 * lame-duck notice a server sends before it closes (§13.1), and the goaway
 * notice it sends as it closes a connection (§13 item 3).
 *
 * Pure; the Python mirror is `ipc_protocol/restarts.py`, and
 * `interop-tests/spec/restarts.json` holds what both must agree on.
 */

const { SYSTEM_CHANNEL } = require('../constants');

/** A header, as the idempotency key (§6.6): unknown to a server, it is ignored; responders receive it unchanged; a version-1 peer never sees it. */
const REPLAY_HEADER = 'ipc-replayed';
const REPLAY_VALUE = '1';
/** The feature (§15.1) a connection asks for to be sent the notice: a peer that does not ask might hand it to a `>` subscriber. */
const LAME_DUCK = 'lame_duck';
const LAME_DUCK_EVENT = 'lame_duck';
/** The feature a connection asks for to be told, as the server closes it, to send nothing more on it (HTTP/2's GOAWAY): the server reads on until the client closes, so no reset discards the answers not read yet. */
const GOAWAY = 'goaway';
const GOAWAY_EVENT = 'goaway';

/**
 * Whether a request's headers carry the replay mark (§13.2).
 * @param {Record<string, string>|null|undefined} headers
 * @returns {boolean}
 */
function isReplay(headers) {
  return headers != null && headers[REPLAY_HEADER] === REPLAY_VALUE;
}

/**
 * `msg` as a client replays it from its offline queue: a request or a
 * notification gets the mark (its other headers kept), anything else is
 * returned as it is.
 * @param {object} msg an envelope.
 * @returns {object}
 */
function markReplay(msg) {
  if (msg.message_type !== 'request' && msg.message_type !== 'notification') return msg;
  return { ...msg, headers: { ...(msg.headers ?? {}), [REPLAY_HEADER]: REPLAY_VALUE } };
}

/**
 * The `deadline_ms` of a lame-duck notice, or null when `msg` is none.
 * @param {object} msg an envelope.
 * @returns {number|null}
 */
function lameDuckDeadlineMs(msg) {
  if (msg.message_type !== 'publish' || msg.channel_id !== SYSTEM_CHANNEL) return null;
  const payload = msg.payload;
  if (payload === null || typeof payload !== 'object' || payload.event !== LAME_DUCK_EVENT) return null;
  const deadline = payload.deadline_ms;
  if (typeof deadline !== 'number' || !Number.isFinite(deadline) || deadline < 0) return 0; // a notice all the same: how soon unsaid
  return Math.trunc(deadline);
}

/**
 * Whether `msg` is the goaway notice (§13 item 3).
 * @param {object} msg an envelope.
 * @returns {boolean}
 */
function isGoaway(msg) {
  const payload = msg.payload;
  return msg.message_type === 'publish' && msg.channel_id === SYSTEM_CHANNEL && payload !== null && typeof payload === 'object' && payload.event === GOAWAY_EVENT;
}

module.exports = { REPLAY_HEADER, REPLAY_VALUE, LAME_DUCK, LAME_DUCK_EVENT, GOAWAY, GOAWAY_EVENT, isReplay, markReplay, lameDuckDeadlineMs, isGoaway };
