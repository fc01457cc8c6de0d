'use strict';

/**
 * What the client does differently on a connection to a 1.1.x server
 * (version 1, docs/legacy.md, docs/protocol.md §10), beyond the wire's
 * form: a `notification` from it is a broadcast to the channel's
 * subscribers. The 1.1.x server sends its own broadcasts so (its examples'
 * `server._handle_publish(Message(message_type=NOTIFICATION, ...))`), and
 * the 1.1.x client hands them to the subscriber; it never forwards a
 * request or a notification to a client to serve, so on such a connection
 * every notification goes to the subscribers (isBroadcast()). Python
 * applies the same rule in ipc_client/lifecycle.py.
 */

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

module.exports = { isBroadcast };
