'use strict';

/**
 * JSON in the bridge's profile (docs/protocol.md §1.1), the mirror of
 * ipc_protocol/_json.py: UTF-8, no NaN or Infinity, no number that
 * overflows a double, strings that are valid Unicode, and no value nested
 * deeper than MAX_JSON_DEPTH, refused on encode (bad_message) and on decode
 * (bad_frame) alike.
 */

const { types } = require('node:util');
const { FrameError, MessageError } = require('./errors');
const { thrownMessage } = require('./thrown');

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

// What JSON.stringify writes as it is between quotes: not a quote, a
// backslash or a control character; surrogates (paired or not) take the
// full path, which checks them.
const NOTHING_TO_ESCAPE = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

// The deepest a value may sit, the frame's object being 1 (scalars count):
// pydantic-core's parser, the Python decoder's, refuses anything deeper.
const MAX_JSON_DEPTH = 201;

const isWellFormed =
  typeof String.prototype.isWellFormed === 'function'
    ? (s) => s.isWellFormed()
    : (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

/**
 * What JSON.stringify writes as `{}` whatever it holds, by its type's name:
 * their data would be lost without a word (Python refuses a set). A class
 * instance with no enumerable property is a fine `{}`; these are not. One
 * with a `toJSON` says how it is written, and is never asked here.
 */
const LOSSY = [
  ['Map', types.isMap],
  ['Set', types.isSet],
  ['WeakMap', types.isWeakMap],
  ['WeakSet', types.isWeakSet],
  ['Promise', types.isPromise]
];

/**
 * Whether `value` is an iterator with nothing else to write (a generator,
 * an array's or a Map's `values()`...): JSON.stringify would write `{}`
 * and its items be lost.
 * @param {object} value
 * @returns {boolean}
 * @private
 */
function isBareIterator(value) {
  return (
    typeof value.next === 'function' &&
    (typeof value[Symbol.iterator] === 'function' || typeof value[Symbol.asyncIterator] === 'function') &&
    Object.keys(value).length === 0
  );
}

/**
 * An iterator payload (a generator) as the array of its items, anything
 * else as it is: called once where a send API takes a payload, before any
 * key, size, encoding or resend reads it, since each would use it up and
 * send what is left (`[]`, docs/protocol.md §16.3). A plain object costs
 * one property read.
 * @param {unknown} payload
 * @returns {unknown}
 */
function readOnce(payload) {
  return typeof payload === 'object' && payload !== null && typeof payload.next === 'function' &&
    typeof payload[Symbol.iterator] === 'function' && isBareIterator(payload)
    ? [...payload]
    : payload;
}

/**
 * JSON.stringify replacer that refuses what JSON cannot carry (§1.1), and
 * what it would write as `{}`, losing its data (LOSSY, async iterators);
 * a sync iterator is written as the array of its items.
 * @param {string} key
 * @param {unknown} value
 * @returns {unknown}
 * @private
 */
function strictReplacer(key, value) {
  const at = key ? ` (at key ${JSON.stringify(key)})` : '';
  if (typeof value === 'object' && value !== null) {
    for (const [name, is] of LOSSY) {
      if (is(value)) throw new MessageError(`a ${name} is not JSON: it would arrive as {}${at}${name === 'Promise' ? '; await it first' : ''}`);
    }
    if (isBareIterator(value)) {
      // Written as the array of its items, as Python writes an iterator; an
      // async one cannot be read here, and Python refuses one too.
      if (typeof value[Symbol.iterator] === 'function') return [...value];
      throw new MessageError(`an async iterator (${value[Symbol.toStringTag] || 'iterator'}) is not JSON: it would arrive as {}${at}`);
    }
  }
  // A boxed number reaches the replacer as an object; JSON.stringify unboxes it after.
  const number = typeof value === 'number' ? value : value instanceof Number ? value.valueOf() : 0;
  if (!Number.isFinite(number)) {
    throw new MessageError(`${number} is not valid JSON${at}`);
  }
  return value;
}

/**
 * Serialises one JSON value in the bridge's profile.
 *
 * JSON.stringify turns NaN and Infinity into `null`, and a Map, a Set (and
 * the rest of LOSSY) into `{}`, silently. They can only hide where the
 * output says `null` or `{}`, so the strict (slower) replacer pass runs
 * only then, and only when a walk of the value finds where one may be
 * (mayMisencode).
 *
 * @param {unknown} value
 * @param {string} what the field, for error messages.
 * @returns {string}
 * @throws {MessageError} NaN/Infinity, BigInt, a Map or a Set (LOSSY), cycles, lone surrogates, or nothing to serialise.
 * @private
 */
function stringifyValue(value, what, depth = 2) {
  let out;
  try {
    out = JSON.stringify(value);
    if (out !== undefined && (out.includes('null') || out.includes('{}')) && mayMisencode(value, depth)) out = JSON.stringify(value, strictReplacer);
  } catch (err) {
    if (err instanceof MessageError) throw err;
    throw new MessageError(`${what} is not JSON serialisable: ${thrownMessage(err)}`, { cause: err }); // a toJSON may throw anything
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
 * A string as JSON, per the profile: what JSON.stringify writes. A string
 * with nothing to escape and no surrogate (ids, names, a traceparent: most
 * strings an envelope holds) is only quoted, several times cheaper than
 * the call; any other goes through stringifyValue and its checks.
 * @param {string} value
 * @param {string} what the field, for error messages.
 * @returns {string}
 * @throws {MessageError} a lone surrogate.
 * @private
 */
function stringifyString(value, what) {
  return NOTHING_TO_ESCAPE.test(value) ? `"${value}"` : stringifyValue(value, what);
}

/**
 * Whether JSON.stringify may have written NaN or Infinity in `value` as
 * `null`, or a Map or a Set as `{}`: a number that is not finite in a
 * plain object or array, or anything it turns into JSON by its own rules
 * (`toJSON`, boxed numbers, class instances, a Map), which the strict
 * replacer pass then judges. A `null` or a `{}` in the output is most often
 * a null or an empty object in the value, and this walk costs a fraction
 * of that pass (a replacer call per value).
 * @param {unknown} value
 * @param {number} depth the value's: 1 for the frame's object.
 * @returns {boolean}
 * @private
 */
function mayMisencode(value, depth) {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (typeof value !== 'object' || value === null) return false;
  if (depth > MAX_JSON_DEPTH || typeof value.toJSON === 'function') return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (mayMisencode(value[i], depth + 1)) return true;
    return false;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return true;
  for (const key in value) if (mayMisencode(value[key], depth + 1)) return true;
  return false;
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
 * Whether `value` is a JSON object (not null, not an array).
 * @private
 */
function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
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
 * such as `1e400`, which JSON.parse turns into Infinity). It runs on every
 * frame but a short one from a version-2 server (parseBody's `screened`):
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
 * @param {boolean} [screened] sent by a version-2 server, which refuses
 *   numbers that overflow a double in what it relays and never encodes
 *   one (§1.1): the walk for them is skipped where it has nothing else to
 *   do, on a text too short to nest deeper than MAX_JSON_DEPTH (a tenth of
 *   the decoding of a small frame).
 * @returns {object} the parsed object, not yet validated as an envelope.
 * @throws {FrameError} code bad_frame.
 */
function parseBody(body, screened = false) {
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
  // for surrogates stays well within the stack. Each level takes two
  // characters: a shorter text cannot nest deeper than MAX_JSON_DEPTH.
  if ((!screened || text.length > 2 * MAX_JSON_DEPTH) && hasNonFinite(obj, 1)) {
    throw new FrameError('invalid JSON: a number overflows a double');
  }
  // indexOf first: ~5x cheaper than the regex on a frame with no escape at all.
  if (text.indexOf('\\u') !== -1 && SURROGATE_ESCAPE.test(text) && hasLoneSurrogate(obj)) {
    throw new FrameError('invalid JSON: lone surrogate in a string');
  }
  return obj;
}

/**
 * Best effort: the message_id of a frame that failed validation, so its
 * error frame can say which one (§6.4).
 * @param {Buffer} body
 * @returns {string|null}
 */
function peekMessageId(body) {
  let obj;
  try {
    obj = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return null;
  }
  const id = obj !== null && typeof obj === 'object' ? obj.message_id : undefined;
  return typeof id === 'string' ? id : null;
}

module.exports = { MAX_JSON_DEPTH, deeperThan, isWellFormed, isObject, isBareIterator, readOnce, parseBody, stringifyString, stringifyValue, peekMessageId };
