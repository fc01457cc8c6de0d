'use strict';

/**
 * How a contract's check words what it refused (lib/contracts.js): pydantic's
 * texts (those of its Python mode, which a lax model's check uses), so
 * that a caller reads the same `bad_request` from a Node responder as from
 * a Python one (docs/typed-contracts.md §2).
 */

const MAX_LISTED_ERRORS = 5;
const TYPE_ERRORS = {
  string: ['string_type', 'Input should be a valid string'],
  bytes: ['bytes_type', 'Input should be a valid bytes'], // type 'string', format 'binary'
  integer: ['int_type', 'Input should be a valid integer'],
  number: ['float_type', 'Input should be a valid number'],
  boolean: ['bool_type', 'Input should be a valid boolean'],
  null: ['none_required', 'Input should be null'],
  array: ['list_type', 'Input should be a valid list'],
  object: ['dict_type', 'Input should be a valid dictionary']
};

/**
 * pydantic's error for a value of none of a schema node's `types`, worded
 * by what the node stands for in pydantic: a model (an object with a
 * `title` and `properties`), a tuple (`prefixItems`), a set
 * (`uniqueItems`), bytes (format `binary`), an int given a fraction.
 * @param {object} schema
 * @param {string[]} types
 * @param {unknown} value
 * @returns {{msg: string, type: string}}
 */
function typeError(schema, types, value) {
  const [type] = types;
  let found;
  if (types.length !== 1) found = ['type_error', `Input should be ${orList(types.map((t) => typeName(t, schema.format)))}`];
  else if (type === 'object' && typeof schema.title === 'string' && isObject(schema.properties)) {
    found = ['model_type', `Input should be a valid dictionary or instance of ${schema.title}`];
  } else if (type === 'array' && Array.isArray(schema.prefixItems)) found = ['tuple_type', 'Input should be a valid tuple'];
  else if (type === 'array' && schema.uniqueItems === true) found = ['set_type', 'Input should be a valid set'];
  else if (type === 'integer' && typeof value === 'number' && Number.isFinite(value)) {
    found = ['int_from_float', 'Input should be a valid integer, got a number with a fractional part'];
  } else found = TYPE_ERRORS[typeName(type, schema.format)] ?? ['type_error', `Input should be ${type}`];
  return { msg: found[1], type: found[0] };
}

/** A type's name in a message: pydantic's bytes are `bytes`, not a string. */
function typeName(type, format) {
  return type === 'string' && format === 'binary' ? 'bytes' : type;
}

/**
 * What pydantic calls an array schema node: `Tuple` (`prefixItems`), `Set` (`uniqueItems`), or `List`.
 * @param {object} schema
 * @returns {'Tuple'|'Set'|'List'}
 */
function arrayKind(schema) {
  return Array.isArray(schema.prefixItems) ? 'Tuple' : schema.uniqueItems === true ? 'Set' : 'List';
}

/**
 * pydantic's `too_long` / `too_short` for a list, tuple or set.
 * @param {'Tuple'|'Set'|'List'} kind
 * @param {number} bound the schema's maxItems or minItems.
 * @param {number|string} count how many there are (a set too long: 'more').
 * @param {boolean} tooLong
 * @returns {{msg: string, type: string}}
 */
function lengthError(kind, bound, count, tooLong) {
  const items = `${bound} item${bound === 1 ? '' : 's'}`;
  return tooLong
    ? { msg: `${kind} should have at most ${items} after validation, not ${count}`, type: 'too_long' }
    : { msg: `${kind} should have at least ${items} after validation, not ${count}`, type: 'too_short' };
}

/**
 * pydantic's error for a value outside an `enum` or other than a `const`:
 * `enum` for an Enum class (a named definition: a `$defs` entry or the
 * root, with a `title`), else `literal_error`, a `Literal`'s. pydantic
 * checks the choice before the type, so a value of another type gets this
 * error too (`Literal[None]` refuses 1 with `Input should be None`).
 * @param {unknown[]} choices
 * @param {boolean} named
 * @param {unknown} [type] the node's `type`: `'number'` writes 1 as the float 1.0.
 * @returns {{msg: string, type: string}}
 */
function choiceError(choices, named, type) {
  return { msg: `Input should be ${orList(choices.map((c) => show(c, type === 'number')))}`, type: named ? 'enum' : 'literal_error' };
}

/** @private */
function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * A value as pydantic's messages quote it: Python's repr() of what the JSON
 * stands for (`'a'`, `"it's"`, `True`, `None`, `1e-07`, `[1, 2]`).
 * @param {unknown} value
 * @param {boolean} [float] a whole number stands for a float (`1.0`), not an int.
 * @returns {string}
 */
function show(value, float = false) {
  if (typeof value === 'string') return pyRepr(value);
  if (typeof value === 'number') return Number.isInteger(value) && !float ? pyNumber(value) : pyFloat(value);
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (value === null || value === undefined) return 'None';
  if (Array.isArray(value)) return `[${value.map((v) => show(v)).join(', ')}]`;
  if (typeof value === 'object') return `{${Object.entries(value).map(([k, v]) => `${pyRepr(k)}: ${show(v)}`).join(', ')}}`;
  return String(value);
}

/** A finite number's sign, shortest round-trip digits and decimal exponent (JS and Python pick the same digits). */
function decimal(n) {
  const [mantissa, exp] = Math.abs(n).toExponential().split('e');
  return { sign: n < 0 || Object.is(n, -0) ? '-' : '', mantissa, digits: mantissa.replace('.', ''), exp: Number(exp) };
}

/** `digits` × 10^(exp − len + 1) written without an exponent. */
function positional({ digits, exp }) {
  if (exp < 0) return `0.${'0'.repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return digits + '0'.repeat(exp + 1 - digits.length);
  return `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/**
 * A number as pydantic-core writes a bound (`greater than 0.0000001`):
 * Rust's f64 Display, the shortest digits that read back as the same
 * float, never an exponent (1e21 is `1000000000000000000000`, -0.0 `-0`).
 * An int bound beyond 2**53 is written as the float JSON parsing made of it.
 * @param {number} n
 * @returns {string}
 */
function pyNumber(n) {
  const parts = decimal(n);
  return parts.sign + positional(parts);
}

/**
 * A float as Python's repr() writes it: the same digits, an exponent of
 * two digits or more below 1e-4 and from 1e16 (`1e-07`, `1e+16`), `.0` on
 * a whole number (`1.0`).
 * @param {number} n
 * @returns {string}
 */
function pyFloat(n) {
  const parts = decimal(n);
  if (parts.exp < -4 || parts.exp >= 16) {
    return `${parts.sign}${parts.mantissa}e${parts.exp < 0 ? '-' : '+'}${String(Math.abs(parts.exp)).padStart(2, '0')}`;
  }
  const text = positional(parts);
  return parts.sign + (text.includes('.') ? text : `${text}.0`);
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

module.exports = { show, pyNumber, pyFloat, orList, summary, pyRepr, typeError, typeName, arrayKind, lengthError, choiceError };
