'use strict';

/**
 * A served request's answer (docs/protocol.md §6.3, §7.3): a handler's
 * result, or the error it threw, as the response frame, written on the
 * connection the request came on (only that one may answer it).
 */

const { buildMessage } = require('./envelope');
const { ErrorCode, errorToWire } = require('./errors');

/**
 * Sends the response to a request. If the result cannot be encoded (a
 * BigInt, over this client's maxFrameSize), the requester gets that error
 * as handler_error instead of a silent timeout: the handler's fault, not the
 * requester's message nor its frame limit (as the Python client answers).
 * @param {Connection} conn the connection the request came on.
 * @param {string} appId
 * @param {object} request
 * @param {unknown} payload
 * @param {object} [error] an `error` object (§2).
 * @param {boolean} [exposeStacks] for the error of a result that cannot be encoded.
 */
function reply(conn, appId, request, payload, error, exposeStacks = false) {
  if (conn.closed) return; // the server answers responder_lost (§6.2)
  const extra = { reply_to: request.message_id };
  if (error !== undefined) extra.error = error;
  try {
    conn.send(buildMessage('response', appId, request.channel_id, error ? null : payload, extra));
  } catch (err) {
    if (error === undefined && !conn.closed) reply(conn, appId, request, null, { ...errorToWire(err, { exposeStacks }), code: ErrorCode.HANDLER_ERROR });
  }
}

/**
 * Answers a request with the error its handler threw (§6.3).
 * @param {Connection} conn
 * @param {string} appId
 * @param {object} request
 * @param {unknown} err
 * @param {boolean} exposeStacks include the stack trace (option `exposeStacks`).
 */
function replyError(conn, appId, request, err, exposeStacks) {
  reply(conn, appId, request, null, errorToWire(err, { exposeStacks }));
}

module.exports = { reply, replyError };
