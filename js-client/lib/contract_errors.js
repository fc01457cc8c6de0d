'use strict';

/**
 * How a contract's check words what it refused (lib/contracts.js): pydantic's
 * texts, so that a caller reads the same `bad_request` from a Node responder
 * as from a Python one (docs/typed-contracts.md).
 */

const MAX_LISTED_ERRORS = 5;

/** A value as pydantic's messages quote it. */
function show(value) {
  return typeof value === 'string' ? `'${value}'` : JSON.stringify(value);
}

// What Python's str.isprintable() refuses (repr escapes): other and separator characters but the space.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
const ESCAPES = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * A string as Python's repr() writes it, so that a message naming a channel
 * reads the same from both languages: single quotes unless it holds one
 * and no double quote, unprintable characters escaped (`\x1f`, `\u2028`).
 * @param {string} text
 * @returns {string}
 */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ESCAPES[ch] !== undefined) out += ESCAPES[ch];
    else if (ch === quote) out += `\\${ch}`;
    else if (ch === ' ' || !UNPRINTABLE.test(ch)) out += ch;
    else if (code < 0x100) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code < 0x10000) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += `\\U${code.toString(16).padStart(8, '0')}`;
  }
  return quote + out + quote;
}

/** `a, b or c`. */
function orList(items) {
  return items.length <= 1 ? String(items[0]) : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

/**
 * The errors in one line, as the Python side writes them.
 * @param {Array<{loc: Array<string|number>, msg: string}>} errors
 * @returns {string}
 */
function summary(errors) {
  const parts = errors.slice(0, MAX_LISTED_ERRORS).map((e) => `${e.loc.join('.') || 'payload'}: ${e.msg}`);
  const more = errors.length - MAX_LISTED_ERRORS;
  return parts.join('; ') + (more > 0 ? ` (and ${more} more)` : '');
}

module.exports = { show, orList, summary, pyRepr };
