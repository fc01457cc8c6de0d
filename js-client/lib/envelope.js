'use strict';

/**
 * The message envelope (docs/protocol.md §2): canonical encoding (§1.2),
 * decoding and validation; the JSON profile itself (§1.1) is
 * lib/json_profile.js.
 *
 * Messages are plain objects with the wire's snake_case field names, so what
 * a handler sees is exactly what travelled. Decoding raises the same codes as
 * the Python core: `bad_frame` when the bytes are not one UTF-8 JSON object
 * (NaN, lone surrogates included), `bad_message` when the object is not a
 * valid envelope.
 */

const { randomBytes } = require('node:crypto');
const { MESSAGE_TYPES, V1_FIELDS } = require('./constants');
const { MessageError } = require('./errors');
const { isObject, parseBody, stringifyString, stringifyValue } = require('./json_profile');
const { AttachmentError } = require('./protocol/payload_paths');

const MESSAGE_TYPE_SET = new Set(MESSAGE_TYPES);
const ERROR_FIELDS = ['code', 'message', 'details', 'remote_type', 'remote_stack'];

let idCounter = 0;
const idPrefix = randomBytes(6).toString('hex');

/**
 * A message id unique within this process, hence per sending connection (§2).
 * A random prefix plus a counter is much cheaper than a UUID per message.
 * @returns {string}
 */
function newMessageId() {
  idCounter = (idCounter + 1) % Number.MAX_SAFE_INTEGER;
  return idPrefix + idCounter.toString(36);
}

/**
 * Builds an outgoing message with a fresh id and the current timestamp.
 *
 * @param {string} messageType one of the six message types.
 * @param {string} appId
 * @param {string} channelId
 * @param {unknown} [payload]
 * @param {object} [extra] optional fields (`reply_to`, `headers`, `error`, `timeout_ms`, `ack`, `message_id`).
 * @returns {object}
 */
function buildMessage(messageType, appId, channelId, payload = null, extra = undefined) {
  const msg = {
    message_id: newMessageId(),
    app_id: appId,
    channel_id: channelId,
    message_type: messageType,
    payload,
    timestamp: Date.now() / 1000,
    reply_to: null
  };
  return extra === undefined ? msg : Object.assign(msg, extra);
}

/**
 * Checks that `value` is a string (or, with `nullable`, null/undefined).
 * @private
 */
function checkString(value, field, nullable = false) {
  if (typeof value === 'string' || (nullable && value == null)) return;
  throw new MessageError(`invalid envelope: ${field}: must be a string${nullable ? ' or null' : ''}`);
}

/**
 * Checks a finite number >= 0.
 * @private
 */
function checkNonNegative(value, field) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new MessageError(`invalid envelope: ${field}: must be a finite number >= 0`);
  }
}

/**
 * Checks a stream's credit (§15.2): a whole number of items, 1 to 2^31-1.
 * @private
 */
function checkWindow(value) {
  if (!Number.isInteger(value) || value < 1 || value > 2147483647) {
    throw new MessageError('invalid envelope: window: must be an integer from 1 to 2147483647');
  }
  return value;
}

/**
 * Checks a finite number > 0.
 * @private
 */
function checkPositive(value, field) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new MessageError(`invalid envelope: ${field}: must be a finite number > 0`);
  }
  return value;
}

/**
 * Validates `headers` (object string -> string).
 * @returns {string[]} its keys.
 * @private
 */
function checkHeaders(headers) {
  if (!isObject(headers)) throw new MessageError('invalid envelope: headers: must be an object');
  const keys = Object.keys(headers);
  for (const key of keys) {
    if (typeof headers[key] !== 'string') {
      throw new MessageError(`invalid envelope: headers.${key}: must be a string`);
    }
  }
  return keys;
}

/**
 * Validated `headers` as JSON, as JSON.stringify writes them.
 * @private
 */
function headersText(headers) {
  let out = '';
  for (const key of checkHeaders(headers)) {
    out += `${out === '' ? '{' : ','}${stringifyString(key, 'headers')}:${stringifyString(headers[key], 'headers')}`;
  }
  return out === '' ? '{}' : `${out}}`;
}

// Messages sent within the same millisecond share a timestamp: its text is
// worked out once (a double's shortest form costs as much as a short id's
// whole encoding).
let lastTimestamp = -1;
let lastTimestampText = '';

/**
 * @param {number} timestamp finite, >= 0 (checked).
 * @returns {string} as JSON.stringify writes it.
 * @private
 */
function timestampText(timestamp) {
  if (timestamp !== lastTimestamp) {
    lastTimestampText = JSON.stringify(timestamp);
    lastTimestamp = timestamp;
  }
  return lastTimestampText;
}

/**
 * Validates an `error` object and returns it with only the known fields,
 * `message` defaulting to '' when absent, as in Python.
 * @private
 */
function normaliseError(error) {
  if (!isObject(error)) throw new MessageError('invalid envelope: error: must be an object');
  checkString(error.code, 'error.code');
  if (error.message !== undefined) checkString(error.message, 'error.message'); // absent means ''; null is not a string
  checkString(error.remote_type, 'error.remote_type', true);
  checkString(error.remote_stack, 'error.remote_stack', true);
  const out = { code: error.code, message: error.message ?? '' };
  if (error.details != null) out.details = error.details;
  if (error.remote_type != null) out.remote_type = error.remote_type;
  if (error.remote_stack != null) out.remote_stack = error.remote_stack;
  return out;
}

/**
 * Encodes a message as JSON text in canonical form (§1.2): the seven
 * version-1 fields always, in table order, then `headers`, `error`,
 * `timeout_ms`, `ack` only when set; compact; non-ASCII as raw UTF-8.
 *
 * @param {object} msg the message (wire field names).
 * @param {{legacy?: boolean}} [options] `legacy`: only the seven version-1 fields (§10).
 * @returns {string} the frame body, ready for encodeFrame().
 * @throws {MessageError} code bad_message: an invalid field, or a value JSON cannot carry.
 */
function encodeMessage(msg, { legacy = false } = {}) {
  checkString(msg.message_id, 'message_id');
  checkString(msg.app_id, 'app_id');
  checkString(msg.channel_id, 'channel_id');
  if (!MESSAGE_TYPE_SET.has(msg.message_type)) {
    throw new MessageError(`invalid envelope: message_type: ${JSON.stringify(msg.message_type)}`);
  }
  const timestamp = msg.timestamp ?? 0;
  checkNonNegative(timestamp, 'timestamp');
  checkString(msg.reply_to, 'reply_to', true);
  let out =
    `{"message_id":${stringifyString(msg.message_id, 'message_id')}` +
    `,"app_id":${stringifyString(msg.app_id, 'app_id')}` +
    `,"channel_id":${stringifyString(msg.channel_id, 'channel_id')}` +
    `,"message_type":"${msg.message_type}"` +
    `,"payload":${msg.payload === undefined ? 'null' : stringifyValue(msg.payload, 'payload')}` +
    `,"timestamp":${timestampText(timestamp)}` +
    `,"reply_to":${msg.reply_to == null ? 'null' : stringifyString(msg.reply_to, 'reply_to')}`;
  if (!legacy) {
    if (msg.headers != null) out += `,"headers":${headersText(msg.headers)}`;
    if (msg.error != null) {
      const error = normaliseError(msg.error);
      const parts = [];
      for (const key of ERROR_FIELDS) {
        if (key in error) parts.push(`"${key}":${stringifyValue(error[key], `error.${key}`, 3)}`);
      }
      out += `,"error":{${parts.join(',')}}`;
    }
    if (msg.timeout_ms != null) {
      checkNonNegative(msg.timeout_ms, 'timeout_ms');
      out += `,"timeout_ms":${JSON.stringify(msg.timeout_ms)}`;
    }
    if (msg.ack != null) {
      if (typeof msg.ack !== 'boolean') throw new MessageError('invalid envelope: ack: must be a boolean');
      out += `,"ack":${msg.ack}`;
    }
    if (msg.window != null) out += `,"window":${checkWindow(msg.window)}`; // a stream's credit (§15.2)
    if (msg.idle_timeout_ms != null) out += `,"idle_timeout_ms":${checkPositive(msg.idle_timeout_ms, 'idle_timeout_ms')}`;
  }
  return out + '}';
}

/**
 * Validates a parsed object as an envelope and returns the message with
 * defaults applied (`payload` null, `timestamp` 0, `reply_to` null) and
 * unknown fields dropped (§2).
 *
 * @param {object} obj a parsed JSON object.
 * @returns {object} the message.
 * @throws {MessageError} code bad_message.
 */
function validateEnvelope(obj) {
  checkString(obj.message_id, 'message_id');
  checkString(obj.app_id, 'app_id');
  checkString(obj.channel_id, 'channel_id');
  if (obj.message_type === undefined) throw new MessageError('invalid envelope: message_type: field required');
  if (!MESSAGE_TYPE_SET.has(obj.message_type)) {
    throw new MessageError(`invalid envelope: message_type: unknown type ${JSON.stringify(obj.message_type)}`);
  }
  if (obj.timestamp !== undefined) checkNonNegative(obj.timestamp, 'timestamp');
  checkString(obj.reply_to, 'reply_to', true);
  const msg = {
    message_id: obj.message_id,
    app_id: obj.app_id,
    channel_id: obj.channel_id,
    message_type: obj.message_type,
    payload: obj.payload === undefined ? null : obj.payload,
    timestamp: obj.timestamp === undefined ? 0 : obj.timestamp,
    reply_to: obj.reply_to ?? null
  };
  if (obj.headers != null) {
    checkHeaders(obj.headers);
    msg.headers = obj.headers;
  }
  if (obj.error != null) msg.error = normaliseError(obj.error);
  if (obj.timeout_ms != null) {
    checkNonNegative(obj.timeout_ms, 'timeout_ms');
    msg.timeout_ms = obj.timeout_ms;
  }
  if (obj.ack != null) {
    if (typeof obj.ack !== 'boolean') throw new MessageError('invalid envelope: ack: must be a boolean');
    msg.ack = obj.ack;
  }
  if (obj.window != null) msg.window = checkWindow(obj.window);
  if (obj.idle_timeout_ms != null) msg.idle_timeout_ms = checkPositive(obj.idle_timeout_ms, 'idle_timeout_ms');
  if (obj.attachments != null) throw new AttachmentError('invalid envelope: attachments: only a binary frame carries them (§16.2)');
  return msg;
}

/**
 * Decodes and validates one frame body.
 *
 * @param {Uint8Array} body the frame body (without the length prefix).
 * @param {boolean} [screened] sent by a version-2 server (parseBody).
 * @returns {object} the message.
 * @throws {FrameError} code bad_frame: not one UTF-8 JSON object.
 * @throws {MessageError} code bad_message: not a valid envelope.
 */
function decodeMessage(body, screened = false) {
  return validateEnvelope(parseBody(body, screened));
}

module.exports = {
  V1_FIELDS,
  newMessageId,
  buildMessage,
  encodeMessage,
  decodeMessage,
  parseBody,
  validateEnvelope
};
