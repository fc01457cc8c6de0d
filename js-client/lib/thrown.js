'use strict';

/**
 * What application code threw, described without throwing.
 *
 * JavaScript lets a handler or a listener throw anything: a value with no
 * string form (`throw Object.create(null)`, an object whose `toString`
 * throws), an Error whose `message`, `name` or `stack` is a getter that
 * throws, a Proxy. The client must still answer the request
 * (docs/protocol.md §6.3) or report the error, never crash on it, so every
 * place that renders a thrown value reads it through these helpers.
 */

/**
 * What an Error whose `message` cannot be read says instead, as the Python
 * side writes an exception whose `__str__` fails (docs/protocol.md §6.3).
 * @param {string} name the error's type.
 * @returns {string}
 */
function unprintable(name) {
  return `<unprintable ${name} object>`;
}

/**
 * `String(value)`, or, when that throws (no string form), its
 * `Object.prototype.toString` tag (`[object Object]`), or its `typeof`.
 * Never throws.
 * @param {unknown} value
 * @returns {string}
 */
function safeString(value) {
  try {
    return String(value);
  } catch {
    // no string form: below
  }
  try {
    return Object.prototype.toString.call(value);
  } catch {
    return `[${typeof value}]`;
  }
}

/**
 * A value as an error message shows what was given: its JSON, with `NaN`,
 * `Infinity` and BigInts spelled as in source (JSON.stringify writes
 * `null` for the first two and throws on the last), or its string form
 * when it has no JSON (a function, a cycle). Never throws.
 * @param {unknown} value
 * @returns {string}
 */
function shownValue(value) {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'bigint') return `${value}n`;
  try {
    const text = JSON.stringify(value, (_key, v) => {
      if (typeof v === 'number' && !Number.isFinite(v)) return `\u0000${v}\u0000`;
      return typeof v === 'bigint' ? `\u0000${v}n\u0000` : v;
    });
    if (text !== undefined) return text.replace(/"\\u0000(.*?)\\u0000"/g, '$1');
  } catch {
    // a cycle, a throwing toJSON or getter: below
  }
  return typeof value === 'function' ? `[function ${safeString(safeGet(value, 'name') || 'anonymous')}]` : safeString(value);
}

/**
 * `value[key]`, or undefined when reading it throws (a getter, a Proxy).
 * @param {unknown} value
 * @param {string} key
 * @returns {unknown}
 */
function safeGet(value, key) {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  try {
    return value[key];
  } catch {
    return undefined;
  }
}

/**
 * Whether `value` is an instance of `cls`, false when asking throws (a
 * Proxy whose getPrototypeOf trap throws).
 * @param {unknown} value
 * @param {Function} cls
 * @returns {boolean}
 */
function safeInstanceOf(value, cls) {
  try {
    return value instanceof cls;
  } catch {
    return false;
  }
}

/**
 * A thrown value's type and text, as the wire (§6.3) and the warnings show
 * them: an Error's `name` and `message`; any other value's `typeof` and
 * string form. Never throws.
 * @param {unknown} err
 * @returns {{isError: boolean, name: string, message: string}}
 */
function describeThrown(err) {
  if (!safeInstanceOf(err, Error)) return { isError: false, name: typeof err, message: safeString(err) };
  const given = safeGet(err, 'name');
  const name = given === undefined || given === null || given === '' ? 'Error' : safeString(given);
  let message;
  try {
    message = err.message;
  } catch {
    return { isError: true, name, message: unprintable(name) };
  }
  return { isError: true, name, message: message === undefined ? '' : safeString(message) };
}

/**
 * A thrown value's text alone (its `message` for an Error).
 * @param {unknown} err
 * @returns {string}
 */
function thrownMessage(err) {
  return describeThrown(err).message;
}

module.exports = { unprintable, safeString, safeGet, safeInstanceOf, describeThrown, thrownMessage, shownValue };
