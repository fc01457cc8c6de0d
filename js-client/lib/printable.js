'use strict';

/**
 * Text a peer chose (a channel, an error's text), made safe for a log line
 * or a terminal, as ipc_protocol/printable.py does for the Python side
 * (docs/operations.md §4): a newline would start a forged line, an escape
 * sequence would reach the terminal.
 */

const { safeString } = require('./thrown');

/** What Python's str.isprintable() refuses: categories C (Cc, Cf, Cs, Co, Cn) and Z but the space. */
const NON_PRINTABLE = /(?! )[\p{C}\p{Z}]/gu;
const NAMED = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * Escapes one character as Python's `repr` does.
 * @param {string} c
 * @returns {string}
 */
function escape(c) {
  if (NAMED[c] !== undefined) return NAMED[c];
  const code = c.codePointAt(0);
  const hex = code.toString(16);
  if (code < 0x100) return `\\x${hex.padStart(2, '0')}`;
  if (code < 0x10000) return `\\u${hex.padStart(4, '0')}`;
  return `\\U${hex.padStart(8, '0')}`;
}

/**
 * `String(value)` with each character that is not printable escaped as
 * Python's `repr` escapes it (`\n`, `\x1b`, `\u202e`), without quotes;
 * printable text, other scripts included, as it is. Never throws.
 * @param {unknown} value
 * @returns {string}
 */
function printable(value) {
  const text = typeof value === 'string' ? value : safeString(value);
  return text.replace(NON_PRINTABLE, escape);
}

module.exports = { printable };
