'use strict';

/**
 * Channel names and subscription patterns (docs/protocol.md §4).
 *
 * A channel is dot-separated non-empty tokens (`orders.created`). In a
 * pattern the token `*` matches exactly one token and a final `>` matches one
 * or more remaining tokens, as in NATS subjects. The rules are the Python
 * package's (`ipc_protocol.channels`), so both sides accept the same names.
 */

const { MAX_CHANNEL_LENGTH, RESERVED_PREFIXES } = require('./constants');
const { MessageError } = require('./errors');
const { isWellFormed } = require('./json_profile');

/**
 * What Python's str.strip() removes, str.isspace(): a token may neither
 * start nor end with one. Not JS trim(), which also strips U+FEFF and
 * keeps U+001C-U+001F and U+0085; the server decides with Python's.
 */
const SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const EDGE_SPACE = new RegExp(`^[${SPACE}]|[${SPACE}]$`);

/**
 * Whether a name is longer than MAX_CHANNEL_LENGTH characters, counted as
 * Python counts them: code points, a surrogate pair (an emoji) being one.
 * @param {string} name
 * @returns {boolean}
 * @private
 */
function tooLong(name) {
  if (name.length <= MAX_CHANNEL_LENGTH) return false; // UTF-16 units are never fewer than code points
  if (name.length > 2 * MAX_CHANNEL_LENGTH) return true;
  let count = 0;
  for (const _ of name) if (++count > MAX_CHANNEL_LENGTH) return true;
  return false;
}

/**
 * Splits a name into tokens, checking the rules shared by channels and patterns.
 * @param {unknown} name
 * @param {string} what 'channel' or 'pattern', for the message.
 * @returns {string[]}
 * @private
 */
function tokens(name, what) {
  if (typeof name !== 'string' || name.length === 0) {
    throw new MessageError(`${what} must be a non-empty string`);
  }
  if (tooLong(name)) {
    throw new MessageError(`${what} is longer than ${MAX_CHANNEL_LENGTH} characters`);
  }
  if (!isWellFormed(name)) {
    // no frame can carry it (§1.1): refused here, before a registration is kept
    throw new MessageError(`${what} ${JSON.stringify(name)} holds a lone surrogate, which is not valid Unicode`);
  }
  const parts = name.split('.');
  for (const t of parts) {
    if (t.length === 0 || EDGE_SPACE.test(t)) {
      throw new MessageError(`${what} ${JSON.stringify(name)} has an empty token or surrounding spaces`);
    }
  }
  return parts;
}

/** Whether a token is a wildcard (`*` or `>`). @private */
const isWildcard = (t) => t === '*' || t === '>';

// The channels last found valid: a service sends on a few, again and again,
// and splitting one into tokens on every call costs an array each time.
const VALID_CHANNELS_KEPT = 1024;
const validChannels = new Set();

/**
 * Checks a concrete channel (no wildcards), as publish/request need (§4.3).
 * @param {unknown} name
 * @returns {string} the name.
 * @throws {MessageError} code bad_message.
 */
function validateChannel(name) {
  if (validChannels.has(name)) return name;
  const parts = tokens(name, 'channel');
  if (name.includes('*') || name.includes('>')) {
    if (parts.some(isWildcard)) {
      throw new MessageError(`channel ${JSON.stringify(name)} contains a wildcard; wildcards are for subscriptions`);
    }
    // 'ord*' could never be subscribed to or served (§4.3)
    throw new MessageError(`channel ${JSON.stringify(name)}: wildcards must be whole tokens`);
  }
  if (validChannels.size >= VALID_CHANNELS_KEPT) validChannels.clear();
  validChannels.add(name);
  return name;
}

/**
 * Checks a channel or pattern, as subscribe and serve accept (§4.2).
 * @param {unknown} pattern
 * @returns {string} the pattern.
 * @throws {MessageError} code bad_message.
 */
function validatePattern(pattern) {
  const parts = tokens(pattern, 'pattern');
  for (let i = 0; i < parts.length; i++) {
    const t = parts[i];
    if (t === '>' && i !== parts.length - 1) {
      throw new MessageError(`pattern ${JSON.stringify(pattern)}: '>' may only be the last token`);
    }
    if (!isWildcard(t) && (t.includes('*') || t.includes('>'))) {
      throw new MessageError(`pattern ${JSON.stringify(pattern)}: wildcards must be whole tokens`);
    }
  }
  return pattern;
}

/**
 * Whether a (valid) name contains a wildcard token: `*` and `>` are never
 * part of a longer token in one, so looking for the characters is enough.
 * @param {string} name
 * @returns {boolean}
 */
function isPattern(name) {
  return name.includes('*') || name.includes('>');
}

/**
 * Whether a channel belongs to the server (first token `system` or `$sys`, §4.4).
 * @param {string} channel
 * @returns {boolean}
 */
function isReserved(channel) {
  const dot = channel.indexOf('.');
  return RESERVED_PREFIXES.includes(dot === -1 ? channel : channel.slice(0, dot));
}

/**
 * Whether `channel` matches `pattern` (both assumed valid).
 * @param {string} pattern a channel or pattern.
 * @param {string} channel a concrete channel.
 * @returns {boolean}
 */
function patternMatches(pattern, channel) {
  if (pattern === channel) return true;
  if (!isPattern(pattern)) return false;
  const p = pattern.split('.');
  const c = channel.split('.');
  for (let i = 0; i < p.length; i++) {
    const tok = p[i];
    if (tok === '>') return c.length > i;
    if (i >= c.length) return false;
    if (tok !== '*' && tok !== c[i]) return false;
  }
  return p.length === c.length;
}

module.exports = { validateChannel, validatePattern, isPattern, isReserved, patternMatches };
