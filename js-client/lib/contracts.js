'use strict';

/**
 * Typed contracts (docs/typed-contracts.md), the mirror of
 * ipc_protocol/contracts.py: a responder may declare the JSON Schemas of
 * what it serves, `serve(channel, handler, { schema: { request, response } })`.
 * The schemas go to the server with the registration (docs/protocol.md §7.1),
 * which publishes them through the `describe` action (§8); and the handler
 * is wrapped so that a payload that does not match `request` is answered
 * `bad_request` with the field errors (`{loc, msg, type}`, in the manner of
 * pydantic's), a result that does not match `response` `handler_error`
 * (`remote_type` 'ValidationError'). The handler still receives the message
 * and its `ctx`.
 *
 * The validator is a small subset of JSON Schema, the part pydantic writes:
 * `type`, `enum`, `const`, `properties`, `required`, `additionalProperties`,
 * `items`, `prefixItems`, `minItems`/`maxItems`, `anyOf`/`oneOf` (read as
 * anyOf), `allOf`, `$ref` into `$defs`/`definitions`, the numeric bounds,
 * `minLength`/`maxLength`/`pattern`, and the formats `date-time`, `date`,
 * `time`, `uuid` and `binary` (pydantic's bytes: a Buffer, any typed array,
 * a DataView or an ArrayBuffer passes, its length in bytes, §16).
 * Other keywords are ignored: a schema never refuses more than it says, it
 * may accept more. A result is checked as it will be sent (wireForm): a
 * Date as its ISO string, undefined properties dropped, Buffers as bytes.
 */

const { BadRequestError, HandlerError } = require('./errors');
const { isThenable } = require('./listeners');
const { MAX_JSON_DEPTH } = require('./json_profile');
const { isBinary } = require('./protocol/payload_paths');
const { isStreamResult } = require('./producers');
const { show, pyNumber, orList, summary, pyRepr, typeError, typeName, arrayKind, lengthError, choiceError } = require('./contract_errors');
const { compilePattern } = require('./contract_patterns');

const SIDES = ['request', 'response'];
const FORMATS = {
  'date-time': /^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:?\d\d)?$/,
  date: /^\d{4}-\d\d-\d\d$/,
  time: /^\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:?\d\d)?$/,
  uuid: /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/
};
// Keys whose values are data, not schemas: a `pattern` under them is no regex.
const DATA_KEYS = new Set(['const', 'enum', 'default', 'examples']);
// Each schema node's compiled `pattern` (null: not checked), compiled once.
const PATTERNS = new WeakMap();

/**
 * Checks the `schema` option of serve(): `{request?, response?}`, each a
 * JSON Schema (an object or a boolean).
 * @param {unknown} schema
 * @returns {{request: object|boolean, response: object|boolean}|null} null when not given.
 * @throws {TypeError}
 */
function checkSchemaOption(schema) {
  if (schema === undefined || schema === null) return null;
  if (typeof schema !== 'object' || Array.isArray(schema)) throw new TypeError('schema must be {request?, response?}');
  for (const key of Object.keys(schema)) {
    if (!SIDES.includes(key)) throw new TypeError(`schema has an unknown key ${JSON.stringify(key)}: only request and response`);
  }
  const out = {};
  for (const side of SIDES) {
    const value = schema[side] === undefined ? {} : schema[side];
    if (typeof value !== 'boolean' && (typeof value !== 'object' || value === null || Array.isArray(value))) {
      throw new TypeError(`schema.${side} must be a JSON Schema (an object or a boolean)`);
    }
    compilePatterns(value, `schema.${side}`);
    out[side] = value;
  }
  return out;
}

/**
 * Compiles every `pattern` of a schema once, at serve() time.
 * @throws {TypeError} a pattern that is a regular expression in no dialect, named.
 * @private
 */
function compilePatterns(node, where, depth = 0) {
  if (node === null || typeof node !== 'object' || depth > MAX_JSON_DEPTH) return;
  if (typeof node.pattern === 'string' && patternOf(node) === undefined) {
    throw new TypeError(`${where} has a pattern that is not a valid regular expression: ${JSON.stringify(node.pattern)}`);
  }
  for (const [key, child] of Object.entries(node)) {
    if (!DATA_KEYS.has(key)) compilePatterns(child, where, depth + 1);
  }
}

/**
 * A schema node's pattern, compiled once (lib/contract_patterns.js).
 * @param {{pattern: string}} schema
 * @returns {RegExp|null|undefined} null: not checked; undefined: not a regular expression.
 * @private
 */
function patternOf(schema) {
  if (!PATTERNS.has(schema)) PATTERNS.set(schema, compilePattern(schema.pattern));
  return PATTERNS.get(schema);
}

/**
 * A result as the peer will decode it: JSON.stringify's view (toJSON
 * applied, undefined properties dropped, undefined or a hole in a list and
 * undefined at the top null) with binary values kept, since they travel as
 * bytes (§16). NaN and ±Infinity stay: the bridge's JSON refuses them
 * (§1.1), so a schema refuses them too, `null` allowed or not.
 * The value itself when nothing changes.
 * @param {unknown} value
 * @returns {unknown}
 */
function wireForm(value, depth = 1) {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return null;
  if (typeof value !== 'object' || value === null || isBinary(value) || depth > MAX_JSON_DEPTH) return value;
  if (typeof value.toJSON === 'function') return wireForm(value.toJSON(), depth);
  if (value instanceof Number || value instanceof String || value instanceof Boolean) return value.valueOf();
  if (Array.isArray(value)) {
    let copy = null;
    for (let i = 0; i < value.length; i++) {
      // By index: a hole ([1, , 3], new Array(2)) is sent as null, as undefined is.
      const item = value[i];
      const form = wireForm(item, depth + 1);
      if (form !== item) (copy ??= value.slice())[i] = form;
    }
    return copy ?? value;
  }
  let copy = null;
  for (const key of Object.keys(value)) {
    const item = value[key];
    const dropped = item === undefined || typeof item === 'function' || typeof item === 'symbol';
    const form = dropped ? item : wireForm(item, depth + 1);
    if (dropped || form !== item) {
      copy ??= { ...value };
      if (dropped) delete copy[key];
      else copy[key] = form;
    }
  }
  return copy ?? value;
}

/**
 * Wraps a handler in its declared contract; the handler itself when there
 * is none. The wrapper passes the handler its `ctx` (`ctx.signal`, §15.4)
 * as serve() does. A stream's producer is checked on its request alone
 * (a generator it returns, or resolves to, is not an answer: its items are
 * not checked, as in Python).
 * @param {(msg: object, ctx?: object) => unknown} handler
 * @param {{request: object|boolean, response: object|boolean}|null} schema from checkSchemaOption().
 * @returns {(msg: object, ctx?: object) => unknown}
 */
function bindContract(handler, schema) {
  if (schema === null) return handler;
  const request = acceptsAll(schema.request) ? null : schema.request;
  const response = acceptsAll(schema.response) ? null : schema.response;
  if (request === null && response === null) return handler;
  const checked = (value) => {
    if (isStreamResult(value)) return value; // a producer: its items are not the answer
    const errors = validate(response, wireForm(value));
    if (errors.length > 0) {
      throw new HandlerError(`the handler's result does not match its response schema: ${summary(errors)}`, { remoteType: 'ValidationError', details: { errors } });
    }
    return value;
  };
  return function typedHandler(msg, ctx) {
    if (request !== null) {
      const errors = validate(request, msg.payload);
      if (errors.length > 0) throw new BadRequestError(`invalid request for ${pyRepr(String(msg.channel_id))}: ${summary(errors)}`, { details: { errors } });
    }
    const result = handler(msg, ctx);
    if (response === null) return result;
    return isThenable(result) ? Promise.resolve(result).then(checked) : checked(result);
  };
}

/**
 * Validates a JSON value against a JSON Schema (the subset in the module's doc).
 * @param {object|boolean} schema
 * @param {unknown} value
 * @returns {Array<{loc: Array<string|number>, msg: string, type: string}>} empty when valid.
 */
function validate(schema, value) {
  const errors = [];
  check(schema, value, [], schema, errors, true);
  return errors;
}

/** @returns {boolean} whether the schema accepts every value ({} or true). */
function acceptsAll(schema) {
  return schema === true || (typeof schema === 'object' && schema !== null && Object.keys(schema).length === 0);
}

/**
 * Checks `value` at `loc` against `schema`, pushing what is wrong.
 * `named`: the node is a definition (`$ref` leads to it) or the root, as
 * pydantic writes a model or an Enum class.
 * @private
 */
function check(schema, value, loc, root, errors, named = false) {
  if (schema === true || schema === undefined) return;
  if (schema === false) {
    errors.push({ loc, msg: 'No value is allowed here', type: 'never' });
    return;
  }
  if (typeof schema.$ref === 'string') {
    check(resolve(schema.$ref, root), value, loc, root, errors, true);
  }
  if (Array.isArray(schema.allOf)) for (const part of schema.allOf) check(part, value, loc, root, errors);
  const branches = schema.anyOf || schema.oneOf;
  if (Array.isArray(branches)) checkUnion(branches, value, loc, root, errors);
  // pydantic checks a Literal's or an Enum's choices before the type: a value of another type is refused as not one of them
  if (Array.isArray(schema.enum) && !schema.enum.some((v) => same(v, value))) {
    errors.push({ loc, ...choiceError(schema.enum, named && typeof schema.title === 'string', schema.type) });
    return;
  }
  if (schema.const !== undefined && !same(schema.const, value)) {
    errors.push({ loc, ...choiceError([schema.const], false, schema.type) });
    return;
  }
  if (schema.type !== undefined && !checkType(schema, value, loc, errors)) return;
  if (typeof value === 'string') checkString(schema, value, loc, errors);
  else if (isBinary(value)) checkBytes(schema, value, loc, errors);
  else if (typeof value === 'number') checkNumber(schema, value, loc, errors);
  else if (Array.isArray(value)) checkArray(schema, value, loc, root, errors);
  else if (value !== null && typeof value === 'object') checkObject(schema, value, loc, root, errors);
}

/** @private */
function checkUnion(branches, value, loc, root, errors) {
  const other = branches.length === 2 && value !== null ? branches.findIndex((b) => !isNullSchema(b)) : -1;
  if (other >= 0 && isNullSchema(branches[1 - other])) {
    check(branches[other], value, loc, root, errors); // `X | None`: to pydantic X, nullable, not a union
    return;
  }
  let best = null;
  for (const branch of branches) {
    const found = [];
    check(branch, value, loc, root, found);
    if (found.length === 0) return;
    // A branch whose errors are all deeper than here matched the value's shape: its errors say most.
    const deeper = found.every((e) => e.loc.length > loc.length);
    if (deeper && (best === null || found.length < best.length)) best = found;
  }
  if (best !== null) errors.push(...best);
  else errors.push({ loc, msg: `Input should be ${orList(branches.map((b) => name(b, root)))}`, type: 'union_type' });
}

/** @private */
function checkType(schema, value, loc, errors) {
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (types.some((t) => isType(t, value, schema.format))) return true;
  errors.push({ loc, ...typeError(schema, types, value) });
  return false;
}

/** @private */
function isNullSchema(schema) {
  return schema !== null && typeof schema === 'object' && schema.type === 'null' && Object.keys(schema).length === 1;
}

/** @private */
function isType(type, value, format) {
  if (isBinary(value)) return type === 'string' && format === 'binary'; // pydantic's bytes
  switch (type) {
    case 'string': return typeof value === 'string' && format !== 'binary'; // bytes are never a string (§16)
    case 'integer': return Number.isInteger(value);
    case 'number': return typeof value === 'number' && Number.isFinite(value);
    case 'boolean': return typeof value === 'boolean';
    case 'null': return value === null;
    case 'array': return Array.isArray(value);
    case 'object': return value !== null && typeof value === 'object' && !Array.isArray(value);
    default: return true; // an unknown type name refuses nothing
  }
}

/** @private */
function checkString(schema, value, loc, errors) {
  const length = [...value].length;
  if (schema.minLength !== undefined && length < schema.minLength) {
    errors.push({ loc, msg: `String should have at least ${schema.minLength} character${schema.minLength === 1 ? '' : 's'}`, type: 'string_too_short' });
  }
  if (schema.maxLength !== undefined && length > schema.maxLength) {
    errors.push({ loc, msg: `String should have at most ${schema.maxLength} character${schema.maxLength === 1 ? '' : 's'}`, type: 'string_too_long' });
  }
  const pattern = typeof schema.pattern === 'string' ? patternOf(schema) : null;
  if (pattern && !pattern.test(value)) {
    errors.push({ loc, msg: `String should match pattern '${schema.pattern}'`, type: 'string_pattern_mismatch' });
  }
  const format = FORMATS[schema.format];
  if (format !== undefined && (!format.test(value) || (schema.format !== 'time' && schema.format !== 'uuid' && Number.isNaN(Date.parse(value.slice(0, 10)))))) {
    const kind = schema.format.replace('-', '');
    errors.push({ loc, msg: `Input should be a valid ${kind}`, type: `${kind}_parsing` });
  }
}

/** @private pydantic's bounds of bytes, in bytes (a view's byteLength, not its element count). */
function checkBytes(schema, value, loc, errors) {
  const n = value.byteLength;
  if (schema.minLength !== undefined && n < schema.minLength) {
    errors.push({ loc, msg: `Data should have at least ${schema.minLength} byte${schema.minLength === 1 ? '' : 's'}`, type: 'bytes_too_short' });
  }
  if (schema.maxLength !== undefined && n > schema.maxLength) {
    errors.push({ loc, msg: `Data should have at most ${schema.maxLength} byte${schema.maxLength === 1 ? '' : 's'}`, type: 'bytes_too_long' });
  }
}

/** @private */
function checkNumber(schema, value, loc, errors) {
  const bounds = [
    ['minimum', (v, b) => v >= b, 'greater_than_equal', 'greater than or equal to'],
    ['exclusiveMinimum', (v, b) => v > b, 'greater_than', 'greater than'],
    ['maximum', (v, b) => v <= b, 'less_than_equal', 'less than or equal to'],
    ['exclusiveMaximum', (v, b) => v < b, 'less_than', 'less than']
  ];
  for (const [key, ok, type, words] of bounds) {
    if (typeof schema[key] === 'number' && !ok(value, schema[key])) errors.push({ loc, msg: `Input should be ${words} ${pyNumber(schema[key])}`, type });
  }
  if (typeof schema.multipleOf === 'number' && schema.multipleOf > 0 && Math.abs(value / schema.multipleOf - Math.round(value / schema.multipleOf)) > 1e-9) {
    errors.push({ loc, msg: `Input should be a multiple of ${pyNumber(schema.multipleOf)}`, type: 'multiple_of' });
  }
}

/**
 * A list, tuple or set (arrayKind) as pydantic checks it: too long, that
 * alone; else its items, by index (a hole is one); then, if they passed,
 * too short (a set counted without its repeats), or a tuple's missing places.
 * @private
 */
function checkArray(schema, value, loc, root, errors) {
  const kind = arrayKind(schema);
  const count = kind === 'Set' ? new Set(value.map((item) => JSON.stringify(item))).size : value.length;
  if (typeof schema.maxItems === 'number' && count > schema.maxItems) {
    errors.push({ loc, ...lengthError(kind, schema.maxItems, kind === 'Set' ? 'more' : count, true) });
    return;
  }
  const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
  const before = errors.length;
  for (let i = 0; i < value.length; i++) {
    const itemSchema = i < prefix.length ? prefix[i] : schema.items;
    if (itemSchema !== undefined) check(itemSchema, value[i], [...loc, i], root, errors);
  }
  if (typeof schema.minItems !== 'number' || count >= schema.minItems) return;
  for (let i = value.length; kind === 'Tuple' && i < Math.min(schema.minItems, prefix.length); i++) {
    errors.push({ loc: [...loc, i], msg: 'Field required', type: 'missing' });
  }
  if (errors.length === before) errors.push({ loc, ...lengthError(kind, schema.minItems, count, false) });
}

/** @private */
function checkObject(schema, value, loc, root, errors) {
  const properties = schema.properties || {};
  if (Array.isArray(schema.required)) {
    for (const key of schema.required) {
      if (!Object.prototype.hasOwnProperty.call(value, key)) errors.push({ loc: [...loc, key], msg: 'Field required', type: 'missing' });
    }
  }
  for (const [key, item] of Object.entries(value)) {
    if (Object.prototype.hasOwnProperty.call(properties, key)) check(properties[key], item, [...loc, key], root, errors);
    else if (schema.additionalProperties === false) errors.push({ loc: [...loc, key], msg: 'Extra inputs are not permitted', type: 'extra_forbidden' });
    else if (schema.additionalProperties !== undefined) check(schema.additionalProperties, item, [...loc, key], root, errors);
  }
}

/**
 * The schema a local `$ref` names (`#`, `#/$defs/X`, `#/definitions/X`, any JSON pointer into the root).
 * @private
 */
function resolve(ref, root) {
  if (!ref.startsWith('#')) return true; // a remote reference is not fetched: accepted
  let node = root;
  for (const raw of ref.slice(1).split('/').slice(1)) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    node = node !== null && typeof node === 'object' ? node[key] : undefined;
  }
  return node === undefined ? true : node;
}

/** @private */
function name(schema, root) {
  if (schema === true) return 'anything';
  if (typeof schema.$ref === 'string') return schema.$ref.split('/').pop();
  if (schema.const !== undefined) return show(schema.const, schema.type === 'number');
  if (schema.type !== undefined) return [].concat(schema.type).map((t) => typeName(t, schema.format)).join(' or ');
  return 'the declared schema';
}

/** @private */
function same(a, b) {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

module.exports = { checkSchemaOption, bindContract, validate, wireForm, summary };
