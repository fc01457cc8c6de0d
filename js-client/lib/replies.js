'use strict';

/**
 * A served request's answer (docs/protocol.md §6.3, §7.3): a handler's
 * result, or the error it threw, as the response frame, written on the
 * connection the request came on (only that one may answer it).
 *
 * Every request gets an answer (§6.2), whatever its handler returned or
 * threw: a result that cannot be sent is answered `handler_error` with the
 * encoding error, and an error that cannot be sent as it is (a lone
 * surrogate in its text, details JSON cannot carry, over the frame limit)
 * is sent made sendable (sendableError()), as the Python side does
 * (ipc_protocol/replies.py).
 */

const { buildMessage } = require('./envelope');
const { stringifyValue } = require('./json_profile');
const { ConnectionLostError, ErrorCode, FrameTooLargeError, errorToWire } = require('./errors');
const { safeString, thrownMessage } = require('./thrown');

/** What a cut text ends with. */
const CUT_MARK = ' [cut to fit the frame limit]';
/** Bytes a cut leaves spare beyond the excess (the marks, rounding). */
const CUT_SPARE_BYTES = 256;
/** The longest `remote_type` of the answer of last resort. */
const MAX_TYPE_LENGTH = 256;
/** How many times an error is made smaller before the answer of last resort. */
const FIT_ATTEMPTS = 4;
/** A lone surrogate: not valid Unicode, refused by every decoder (§1.1). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Sends the response to a request. If the result cannot be encoded (a
 * BigInt, a Map, over this client's maxFrameSize), the requester gets that
 * error as handler_error instead of a silent timeout: the handler's fault,
 * not the requester's message nor its frame limit (as the Python client
 * answers).
 * @param {Connection} conn the connection the request came on.
 * @param {string} appId
 * @param {object} request
 * @param {unknown} payload
 * @param {object} [error] an `error` object (§2).
 * @param {boolean} [exposeStacks] for the error of a result that cannot be encoded.
 */
function reply(conn, appId, request, payload, error, exposeStacks = false) {
  if (conn.closed) return; // the server answers responder_lost (§6.2)
  if (error !== undefined) {
    sendError(conn, appId, request, error);
    return;
  }
  try {
    conn.send(buildMessage('response', appId, request.channel_id, payload, { reply_to: request.message_id }));
  } catch (err) {
    if (conn.closed || err instanceof ConnectionLostError) return;
    sendError(conn, appId, request, { ...errorToWire(err, { exposeStacks }), code: ErrorCode.HANDLER_ERROR });
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

/**
 * Sends an error answer; one that cannot be sent as it is goes as
 * sendableError() makes it, smaller each time it is over the frame limit,
 * and, should that still fail, as a bare handler_error.
 * @param {Connection} conn
 * @param {string} appId
 * @param {object} request
 * @param {object} error an `error` object (§2).
 * @private
 */
function sendError(conn, appId, request, error) {
  let answer = error;
  for (let attempt = 0; attempt <= FIT_ATTEMPTS; attempt++) {
    try {
      conn.send(buildMessage('response', appId, request.channel_id, null, { reply_to: request.message_id, error: answer }));
      return;
    } catch (err) {
      if (conn.closed || err instanceof ConnectionLostError) return;
      answer = sendableError(answer, err instanceof FrameTooLargeError && typeof err.size === 'number' ? err.size - err.limit : 0);
    }
  }
  try {
    conn.send(buildMessage('response', appId, request.channel_id, null, { reply_to: request.message_id, error: lastResort(error) }));
  } catch {
    // nothing smaller to send: the server answers at the request's deadline
  }
}

/**
 * An error answer that can be sent (§6.3), its code and `remote_type`
 * kept, as the Python side sends it: a lone surrogate in its strings
 * escaped as text (`\ud800`, as Python's backslashreplace writes it), its
 * details dropped when JSON cannot carry them, the message then ending
 * ` (its details were not sent: <why>)`. With `excess` (bytes over the
 * frame limit), the stack is cut first, then the details dropped, then the
 * message cut, a cut text ending CUT_MARK: the requester gets what fits.
 * (The Python responder answers an error over the frame limit with
 * `remote_type` FrameTooLarge instead.)
 * @param {object} error
 * @param {number} excess bytes to take off, 0 when it was not too large.
 * @returns {object}
 */
function sendableError(error, excess) {
  const code = typeof error.code === 'string' && error.code !== '' ? escapeLone(error.code) : ErrorCode.HANDLER_ERROR;
  const out = { code, message: escapeLone(error.message) };
  if (error.remote_type != null) out.remote_type = escapeLone(error.remote_type);
  if (error.details != null) {
    const why = unencodable(error.details);
    if (why === null) out.details = error.details;
    else out.message += ` (its details were not sent: ${escapeLone(why)})`;
  }
  if (error.remote_stack != null) out.remote_stack = escapeLone(error.remote_stack);
  if (excess <= 0) return out;
  let left = excess + CUT_SPARE_BYTES;
  if (out.remote_stack !== undefined) {
    const before = jsonBytes(out.remote_stack);
    out.remote_stack = cut(out.remote_stack, left);
    left -= before - jsonBytes(out.remote_stack);
  }
  if (left > CUT_SPARE_BYTES && out.details !== undefined) {
    left -= jsonBytes(out.details);
    delete out.details;
    out.message += ' (its details were not sent: over the frame limit)';
  }
  if (left > CUT_SPARE_BYTES) out.message = cut(out.message, left);
  return out;
}

/**
 * The answer sent when nothing else could be: handler_error and the error's type.
 * @param {object} error
 * @returns {object}
 * @private
 */
function lastResort(error) {
  const type = typeof error.remote_type === 'string' ? escapeLone(error.remote_type).slice(0, MAX_TYPE_LENGTH) : 'Error';
  return { code: ErrorCode.HANDLER_ERROR, message: "the handler's error cannot be sent", remote_type: type };
}

/**
 * A field as text the wire can carry: each lone surrogate escaped as
 * Python writes it (`\ud800`), so both sides send the same text.
 * @param {unknown} value
 * @returns {string}
 * @private
 */
function escapeLone(value) {
  const text = typeof value === 'string' ? value : value == null ? '' : safeString(value);
  return text.replace(LONE_SURROGATE, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Why JSON (the bridge's profile) cannot carry `value`, or null when it can.
 * @param {unknown} value
 * @returns {string|null}
 * @private
 */
function unencodable(value) {
  try {
    stringifyValue(value, 'error.details', 3);
    return null;
  } catch (err) {
    return thrownMessage(err).split('\n')[0]; // V8's cycle message runs over several lines
  }
}

/**
 * The bytes of a value's JSON text.
 * @param {unknown} value
 * @returns {number}
 * @private
 */
function jsonBytes(value) {
  try {
    return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
  } catch {
    return 0;
  }
}

/**
 * `text` with at least `bytes` bytes of its JSON form taken off its end
 * (never splitting a surrogate pair), then CUT_MARK; '' when little would be left.
 * @param {string} text
 * @param {number} bytes
 * @returns {string}
 * @private
 */
function cut(text, bytes) {
  const total = jsonBytes(text);
  const keep = total - bytes;
  if (keep <= CUT_MARK.length) return '';
  // JSON bytes are not evenly spread over the characters: shrink until it fits.
  let length = Math.floor((text.length * keep) / total);
  let kept = text.slice(0, length);
  while (length > 0 && jsonBytes(kept) > keep) {
    length = Math.floor(length * 0.9);
    kept = text.slice(0, length);
  }
  if (/[\uD800-\uDBFF]$/.test(kept)) kept = kept.slice(0, -1);
  return kept + CUT_MARK;
}

module.exports = { reply, replyError, sendableError };
