'use strict';

/**
 * The message envelope (docs/protocol.md §2): canonical encoding (§1.2),
 * decoding in the bridge's JSON profile (§1.1) and validation.
 *
 * Messages are plain objects with the wire's snake_case field names, so what
 * a handler sees is exactly what travelled. Decoding raises the same codes as
 * the Python core: `bad_frame` when the bytes are not one UTF-8 JSON object
 * (NaN, lone surrogates included), `bad_message` when the object is not a
 * valid envelope.
 */

const { randomBytes } = require('node:crypto');
const { MESSAGE_TYPES, V1_FIELDS } = require('./constants');
const { FrameError, MessageError } = require('./errors');

const MESSAGE_TYPE_SET = new Set(MESSAGE_TYPES);
const ERROR_FIELDS = ['code', 'message', 'details', 'remote_type', 'remote_stack'];

// ignoreBOM keeps a leading U+FEFF in the text, so JSON.parse rejects it as
// the Python side does, instead of silently stripping it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// A \uD800-\uDFFF escape in the raw text is the only way a decoded string can
// hold a lone surrogate (valid UTF-8 cannot encode one), so the costly walk
// over decoded strings runs only when such an escape appears.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
// In encoder output (JSON.stringify escapes lone surrogates in lower case),
// an escape preceded by an even number of backslashes.
const LONE_SURROGATE_OUT = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f]/;

// The deepest a value may sit, the frame's object being 1 (scalars count):
// pydantic-core's parser, the Python decoder's, refuses anything deeper.
const MAX_JSON_DEPTH = 201;

const isWellFormed =
  typeof String.prototype.isWellFormed === 'function'
    ? (s) => s.isWellFormed()
    : (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

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
 * JSON.stringify replacer that refuses what JSON cannot carry (§1.1).
 * @param {string} key
 * @param {unknown} value
 * @returns {unknown}
 * @private
 */
function finiteReplacer(key, value) {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new MessageError(`${value} is not valid JSON${key ? ` (at key ${JSON.stringify(key)})` : ''}`);
  }
  return value;
}

/**
 * Serialises one JSON value in the bridge's profile.
 *
 * JSON.stringify turns NaN and Infinity into `null`, silently. They can only
 * hide where the output says `null`, so the strict (slower) replacer pass
 * runs only then.
 *
 * @param {unknown} value
 * @param {string} what the field, for error messages.
 * @returns {string}
 * @throws {MessageError} NaN/Infinity, BigInt, cycles, lone surrogates, or nothing to serialise.
 * @private
 */
function stringifyValue(value, what, depth = 2) {
  let out;
  try {
    out = JSON.stringify(value);
    if (out !== undefined && out.includes('null')) out = JSON.stringify(value, finiteReplacer);
  } catch (err) {
    if (err instanceof MessageError) throw err;
    throw new MessageError(`${what} is not JSON serialisable: ${err.message}`, { cause: err });
  }
  if (out === undefined) throw new MessageError(`${what} is not JSON serialisable`);
  if (out.includes('\\ud') && LONE_SURROGATE_OUT.test(out)) {
    throw new MessageError(`${what} holds a lone surrogate, which is not valid Unicode`);
  }
  if (tooDeepOutput(out, MAX_JSON_DEPTH - depth + 1) && deeperThan(value, depth, MAX_JSON_DEPTH)) {
    throw new MessageError(`${what} is nested deeper than ${MAX_JSON_DEPTH} levels: no peer decodes it`);
  }
  return out;
}

/**
 * Whether serialised JSON may hold a value `levels` deep: that takes at
 * least `levels - 1` bracket pairs. A native indexOf count spares nearly
 * every frame the walk of deeperThan.
 * @private
 */
function tooDeepOutput(out, levels) {
  if (out.length < 2 * (levels - 1)) return false;
  let brackets = 0;
  for (const open of ['[', '{']) {
    for (let at = out.indexOf(open); at !== -1; at = out.indexOf(open, at + 1)) {
      if (++brackets >= levels - 1) return true;
    }
  }
  return false;
}

/**
 * Whether `value`, at level `depth` (the frame's object is level 1), holds
 * a value below level `limit`: the peer's decoder would refuse the frame.
 * @private
 */
function deeperThan(value, depth, limit) {
  if (depth > limit) return true;
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (deeperThan(value[i], depth + 1, limit)) return true;
    return false;
  }
  for (const key in value) if (deeperThan(value[key], depth + 1, limit)) return true;
  return false;
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
 * Whether `value` is a JSON object (not null, not an array).
 * @private
 */
function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Validates `headers` (object string -> string).
 * @private
 */
function checkHeaders(headers) {
  if (!isObject(headers)) throw new MessageError('invalid envelope: headers: must be an object');
  for (const key of Object.keys(headers)) {
    if (typeof headers[key] !== 'string') {
      throw new MessageError(`invalid envelope: headers.${key}: must be a string`);
    }
  }
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
    `{"message_id":${stringifyValue(msg.message_id, 'message_id')}` +
    `,"app_id":${stringifyValue(msg.app_id, 'app_id')}` +
    `,"channel_id":${stringifyValue(msg.channel_id, 'channel_id')}` +
    `,"message_type":"${msg.message_type}"` +
    `,"payload":${msg.payload === undefined ? 'null' : stringifyValue(msg.payload, 'payload')}` +
    `,"timestamp":${JSON.stringify(timestamp)}` +
    `,"reply_to":${msg.reply_to == null ? 'null' : stringifyValue(msg.reply_to, 'reply_to')}`;
  if (!legacy) {
    if (msg.headers != null) {
      checkHeaders(msg.headers);
      out += `,"headers":${stringifyValue(msg.headers, 'headers')}`;
    }
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
 * Whether any string (key or value) inside a decoded value is a lone surrogate.
 * @param {unknown} value
 * @returns {boolean}
 * @private
 */
function hasLoneSurrogate(value) {
  if (typeof value === 'string') return !isWellFormed(value);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return value.some(hasLoneSurrogate);
  for (const key of Object.keys(value)) {
    if (!isWellFormed(key) || hasLoneSurrogate(value[key])) return true;
  }
  return false;
}

/**
 * Whether a parsed value holds a number that is not finite (an overflow
 * such as `1e400`, which JSON.parse turns into Infinity). It always runs:
 * the walk costs a fraction of JSON.parse, less than any scan of the text
 * for a huge exponent or a 300-digit run.
 *
 * It also refuses a value nested deeper than MAX_JSON_DEPTH: JSON.parse
 * nests as deep as the text does, and a walk (this one, JSON.stringify)
 * would overflow the stack with a RangeError out of the socket's data
 * handler. The Python decoder, hence the server, refuses the same depth.
 *
 * @param {unknown} value
 * @param {number} depth the value's: 1 for the frame's object.
 * @returns {boolean}
 * @throws {FrameError} nested too deeply.
 * @private
 */
function hasNonFinite(value, depth) {
  if (depth > MAX_JSON_DEPTH) throw new FrameError(`invalid JSON: nested deeper than ${MAX_JSON_DEPTH} levels`);
  if (typeof value === 'number') return !Number.isFinite(value);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (hasNonFinite(value[i], depth + 1)) return true;
    return false;
  }
  // for...in allocates no key array; JSON.parse makes plain objects.
  for (const key in value) if (hasNonFinite(value[key], depth + 1)) return true;
  return false;
}

/**
 * Parses a frame body into a JSON object, per the JSON profile (§1.1).
 *
 * @param {Uint8Array} body the frame body.
 * @returns {object} the parsed object, not yet validated as an envelope.
 * @throws {FrameError} code bad_frame.
 */
function parseBody(body) {
  let text;
  try {
    text = utf8.decode(body);
  } catch (err) {
    throw new FrameError('invalid UTF-8', { cause: err });
  }
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new FrameError(`invalid JSON: ${err.message}`, { cause: err });
  }
  if (!isObject(obj)) {
    throw new FrameError(`a frame must hold a JSON object, not ${obj === null ? 'null' : Array.isArray(obj) ? 'an array' : typeof obj}`);
  }
  // First: it bounds the nesting (JSON.parse has no bound), so the walk
  // for surrogates stays well within the stack.
  if (hasNonFinite(obj, 1)) {
    throw new FrameError('invalid JSON: a number overflows a double');
  }
  if (SURROGATE_ESCAPE.test(text) && hasLoneSurrogate(obj)) {
    throw new FrameError('invalid JSON: lone surrogate in a string');
  }
  return obj;
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
  return msg;
}

/**
 * Decodes and validates one frame body.
 *
 * @param {Uint8Array} body the frame body (without the length prefix).
 * @returns {object} the message.
 * @throws {FrameError} code bad_frame: not one UTF-8 JSON object.
 * @throws {MessageError} code bad_message: not a valid envelope.
 */
function decodeMessage(body) {
  return validateEnvelope(parseBody(body));
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
