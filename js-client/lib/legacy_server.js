'use strict';

/**
 * What the client does differently on a connection to a 1.1.x server
 * (version 1, docs/legacy.md, docs/protocol.md §10), beyond the wire's
 * form; the same rules as Python's ipc_client/legacy_server.py:
 *
 * - a `notification` from it is a broadcast to the channel's subscribers:
 *   the 1.1.x server sends its own broadcasts so (its examples'
 *   `server._handle_publish(Message(message_type=NOTIFICATION, ...))`), and
 *   the 1.1.x client hands them to the subscriber; it never forwards a
 *   request or a notification to a client to serve, so on such a
 *   connection every notification goes to the subscribers (isBroadcast());
 * - what it lacks is refused before anything is sent (unavailable()):
 *   responders (`serve`: a 1.1.x server routes requests only to its own
 *   handlers) and wildcard subscriptions (it matches channel names
 *   exactly). Both clients throw MessageError (`bad_message`), as for a
 *   feature the handshake did not grant (§15.1, §16.1).
 */

const { isPattern } = require('./channels');
const { MessageError } = require('./errors');

/** The errors unavailable() made: restore() reports them instead of failing the connection. */
const made = new WeakSet();

/**
 * Whether a message goes to the subscribers of its channel: a publish, or
 * a notification from a 1.1.x server.
 * @param {{legacy: boolean}} conn the connection it came on.
 * @param {object} msg
 * @returns {boolean}
 */
function isBroadcast(conn, msg) {
  return msg.message_type === 'publish' || (msg.message_type === 'notification' && conn.legacy === true);
}

/**
 * The error a registration gets on a connection to a 1.1.x server, or null
 * when that server can hold it (a subscription to an exact name).
 * @param {string} pattern
 * @param {boolean} serve
 * @returns {MessageError|null}
 */
function unavailable(pattern, serve) {
  const name = `'${pattern}'`;
  let err = null;
  if (serve) {
    err = new MessageError(`serve(${name}) needs a version-2 server: a 1.1.x server (protocol 1) routes requests only to its own handlers`);
  } else if (isPattern(pattern)) {
    err = new MessageError(`subscribe(${name}): wildcard subscriptions need a version-2 server; a 1.1.x server (protocol 1) matches channel names exactly`);
  }
  if (err !== null) made.add(err);
  return err;
}

/**
 * Whether `err` is a refusal of unavailable().
 * @param {unknown} err
 * @returns {boolean}
 */
function isUnavailable(err) {
  return typeof err === 'object' && err !== null && made.has(err);
}

module.exports = { isBroadcast, unavailable, isUnavailable };
