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

module.exports = { show, orList, summary };
