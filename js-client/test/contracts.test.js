'use strict';

/**
 * Typed contracts in Node (lib/contracts.js, docs/typed-contracts.md): the
 * `schema` option of serve(), the validator's field errors (the shape
 * pydantic writes, so both languages answer bad_request alike) and the
 * wrapped handler. Pure: the wire is in interop-tests/test_typed_contracts.py.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { checkSchemaOption, bindContract, validate, wireForm } = require('../lib/contracts');
const { BadRequestError, HandlerError, errorToWire } = require('../lib/errors');
const { pyRepr } = require('../lib/contract_errors');

// What pydantic writes for a model with a nested model, an enum, an optional
// field, a list, a datetime and a union (interop-tests/typed_service.py).
const ORDER = {
  $defs: {
    Size: { enum: ['S', 'M', 'L'], title: 'Size', type: 'string' },
    Item: {
      properties: { sku: { type: 'string', minLength: 1 }, qty: { exclusiveMinimum: 0, type: 'integer' }, size: { $ref: '#/$defs/Size', default: 'M' } },
      required: ['sku', 'qty'],
      title: 'Item',
      type: 'object'
    }
  },
  properties: {
    items: { items: { $ref: '#/$defs/Item' }, type: 'array', minItems: 1 },
    placed_at: { format: 'date-time', type: 'string' },
    note: { anyOf: [{ type: 'string' }, { type: 'null' }], default: null },
    priority: { anyOf: [{ type: 'integer' }, { const: 'rush', type: 'string' }], default: 0 }
  },
  required: ['items', 'placed_at'],
  additionalProperties: false,
  title: 'Order',
  type: 'object'
};
const GOOD = { items: [{ sku: 'a', qty: 2, size: 'L' }], placed_at: '2026-12-05T10:00:00Z', note: null, priority: 'rush' };

test('contracts - a valid payload has no errors', () => {
  assert.deepEqual(validate(ORDER, GOOD), []);
  assert.deepEqual(validate(ORDER, { items: [{ sku: 'a', qty: 1 }], placed_at: '2026-12-05T10:00:00.123+01:00', priority: 3 }), []);
  assert.deepEqual(validate({}, Symbol.for('anything')), []);
  assert.deepEqual(validate(true, null), []);
});

test('contracts - each field error has loc, msg and type in the manner of pydantic', () => {
  const errors = validate(ORDER, { items: [{ qty: 0, size: 'XL' }, 'x'], placed_at: 'yesterday', note: 5, priority: 'later', colour: 'red' });
  assert.deepEqual(errors, [
    { loc: ['items', 0, 'sku'], msg: 'Field required', type: 'missing' },
    { loc: ['items', 0, 'qty'], msg: 'Input should be greater than 0', type: 'greater_than' },
    { loc: ['items', 0, 'size'], msg: "Input should be 'S', 'M' or 'L'", type: 'enum' },
    { loc: ['items', 1], msg: 'Input should be a valid dictionary or instance of Item', type: 'model_type' },
    { loc: ['placed_at'], msg: 'Input should be a valid datetime', type: 'datetime_parsing' },
    { loc: ['note'], msg: 'Input should be a valid string', type: 'string_type' },
    { loc: ['priority'], msg: "Input should be integer or 'rush'", type: 'union_type' },
    { loc: ['colour'], msg: 'Extra inputs are not permitted', type: 'extra_forbidden' }
  ]);
  assert.deepEqual(validate(ORDER, { items: [] }), [
    { loc: ['placed_at'], msg: 'Field required', type: 'missing' },
    { loc: ['items'], msg: 'List should have at least 1 item after validation, not 0', type: 'too_short' }
  ]);
  assert.deepEqual(validate(ORDER, 'x'), [{ loc: [], msg: 'Input should be a valid dictionary or instance of Order', type: 'model_type' }]);
  assert.deepEqual(validate({ type: 'integer', maximum: 3 }, '2'), [{ loc: [], msg: 'Input should be a valid integer', type: 'int_type' }]);
  assert.deepEqual(validate({ type: 'number', maximum: 3 }, 4), [{ loc: [], msg: 'Input should be less than or equal to 3', type: 'less_than_equal' }]);
  assert.deepEqual(validate({ prefixItems: [{ type: 'string' }, { type: 'integer' }], type: 'array' }, ['a', 'b']), [
    { loc: [1], msg: 'Input should be a valid integer', type: 'int_type' }
  ]);
  assert.deepEqual(validate({ type: 'object', additionalProperties: { type: 'integer' } }, { a: 1, b: 'x' }), [
    { loc: ['b'], msg: 'Input should be a valid integer', type: 'int_type' }
  ]);
});

test('contracts - a union reports the branch that matched the shape; `X | None` reports X\'s errors, as pydantic\'s nullable', () => {
  const $defs = { A: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] } };
  const union = { anyOf: [{ $ref: '#/$defs/A' }, { type: 'string' }, { type: 'null' }], $defs };
  assert.deepEqual(validate(union, null), []);
  assert.deepEqual(validate(union, { n: 'x' }), [{ loc: ['n'], msg: 'Input should be a valid integer', type: 'int_type' }]);
  assert.deepEqual(validate(union, 3), [{ loc: [], msg: 'Input should be A, string or null', type: 'union_type' }]);
  const nullable = { anyOf: [{ $ref: '#/$defs/A' }, { type: 'null' }], $defs };
  assert.deepEqual(validate(nullable, null), []);
  assert.deepEqual(validate(nullable, 3), [{ loc: [], msg: 'Input should be a valid dictionary', type: 'dict_type' }]);
  assert.deepEqual(validate({ anyOf: [{ type: 'null' }, { type: 'integer' }] }, 1.5), [
    { loc: [], msg: 'Input should be a valid integer, got a number with a fractional part', type: 'int_from_float' }
  ]);
});

// What pydantic publishes for a model with a Literal, an Enum, a nested model,
// a bounded list, a dict, a tuple and a set (interop-tests/test_typed_contracts.py
// holds a Python responder of the model itself to the same words).
const KINDS = {
  $defs: {
    Color: { enum: ['red', 'blue'], title: 'Color', type: 'string' },
    Item: { properties: { sku: { title: 'Sku', type: 'string' } }, required: ['sku'], title: 'Item', type: 'object' }
  },
  additionalProperties: false,
  properties: {
    lit: { default: 'a', enum: ['a', 'b'], title: 'Lit', type: 'string' },
    color: { $ref: '#/$defs/Color', default: 'red' },
    item: { anyOf: [{ $ref: '#/$defs/Item' }, { type: 'null' }], default: null },
    items: { items: { $ref: '#/$defs/Item' }, maxItems: 2, minItems: 1, title: 'Items', type: 'array' },
    d: { additionalProperties: { type: 'integer' }, title: 'D', type: 'object' },
    pair: { maxItems: 2, minItems: 2, prefixItems: [{ type: 'integer' }, { type: 'string' }], title: 'Pair', type: 'array' },
    tags: { items: { type: 'integer' }, minItems: 2, title: 'Tags', type: 'array', uniqueItems: true },
    n: { title: 'N', type: 'integer' }
  },
  title: 'M',
  type: 'object'
};

test('contracts - each refusal is worded as pydantic words it for what the schema stands for', () => {
  const words = (payload) => validate(KINDS, payload).map((e) => [e.loc.join('.'), e.type, e.msg]);
  assert.deepEqual(words({ lit: 'c', color: 'green' }), [
    ['lit', 'literal_error', "Input should be 'a' or 'b'"], // a Literal: inline
    ['color', 'enum', "Input should be 'red' or 'blue'"] // an Enum class: a titled definition
  ]);
  assert.deepEqual(words({ item: 5, items: [5], d: [1] }), [
    ['item', 'model_type', 'Input should be a valid dictionary or instance of Item'],
    ['items.0', 'model_type', 'Input should be a valid dictionary or instance of Item'],
    ['d', 'dict_type', 'Input should be a valid dictionary']
  ]);
  assert.deepEqual(words([1, 2]), [['', 'model_type', 'Input should be a valid dictionary or instance of M']]);
  const sku = { sku: 'a' };
  assert.deepEqual(words({ items: [sku, sku, 5] }), [['items', 'too_long', 'List should have at most 2 items after validation, not 3']]); // alone
  assert.deepEqual(words({ items: [] }), [['items', 'too_short', 'List should have at least 1 item after validation, not 0']]);
  assert.deepEqual(words({ pair: [1, 'a', 3] }), [['pair', 'too_long', 'Tuple should have at most 2 items after validation, not 3']]);
  assert.deepEqual(words({ pair: 'x' }), [['pair', 'tuple_type', 'Input should be a valid tuple']]);
  assert.deepEqual(words({ pair: ['x'] }), [
    ['pair.0', 'int_type', 'Input should be a valid integer'],
    ['pair.1', 'missing', 'Field required']
  ]);
  assert.deepEqual(words({ tags: 'x' }), [['tags', 'set_type', 'Input should be a valid set']]);
  assert.deepEqual(words({ tags: [1, 1] }), [['tags', 'too_short', 'Set should have at least 2 items after validation, not 1']]);
  assert.deepEqual(words({ n: 1.5 }), [['n', 'int_from_float', 'Input should be a valid integer, got a number with a fractional part']]);
  assert.deepEqual(words({ color: 'red', tags: [1, 2], pair: [1, 'a'], items: [sku] }), []);
});

test('contracts - the schema option takes request and response, each a JSON Schema', () => {
  assert.equal(checkSchemaOption(undefined), null);
  assert.deepEqual(checkSchemaOption({ request: { type: 'integer' } }), { request: { type: 'integer' }, response: {} });
  assert.deepEqual(checkSchemaOption({ response: false }), { request: {}, response: false });
  for (const bad of [5, [], { requests: {} }, { request: 5 }, { response: null }]) {
    assert.throws(() => checkSchemaOption(bad), TypeError);
  }
});

test('contracts - a handler without a schema, or with schemas that accept all, is not wrapped', () => {
  const handler = (msg) => msg.payload;
  assert.equal(bindContract(handler, null), handler);
  assert.equal(bindContract(handler, checkSchemaOption({})), handler);
});

test('contracts - the wrapped handler refuses a bad payload with bad_request, before running', () => {
  let calls = 0;
  const typed = bindContract((msg) => (calls++, { total: msg.payload.items.length }), checkSchemaOption({ request: ORDER, response: { type: 'object', required: ['total'] } }));
  assert.deepEqual(typed({ channel_id: 'shop.order', payload: GOOD }), { total: 1 });
  assert.throws(
    () => typed({ channel_id: 'shop.order', payload: { items: [] } }),
    (err) => {
      assert.ok(err instanceof BadRequestError);
      assert.match(err.message, /shop\.order.*placed_at: Field required/);
      assert.deepEqual(errorToWire(err).details, { errors: err.errors });
      return true;
    }
  );
  assert.equal(calls, 1);
});

test('contracts - a result that breaks the response schema is the handler failing, sync or async', async () => {
  const schema = checkSchemaOption({ response: { type: 'integer' } });
  const sync = bindContract(() => 'x', schema);
  assert.throws(() => sync({ payload: null }), (err) => err instanceof HandlerError && err.remoteType === 'ValidationError' && err.details.errors[0].type === 'int_type');
  const later = bindContract(async () => 'x', schema);
  await assert.rejects(later({ payload: null }), (err) => err instanceof HandlerError && errorToWire(err).remote_type === 'ValidationError');
  assert.equal(await bindContract(async () => 3, schema)({ payload: null }), 3);
});

// -- patterns, results as sent, bytes ---------------------------------------------------

test("contracts - a pattern Python accepts but the u flag refuses still checks, compiled at serve time", () => {
  for (const [pattern, good, bad] of [['^[A-Z]+\\-\\d+$', 'AB-12', 'ab-12'], ['^[a-z\\_]+$', 'a_b', 'a-b'], ['^\\#[\\w.-]+$', '#a-b.c', '#a b'], ['^\\p{Lu}$', 'É', 'é']]) {
    const typed = bindContract((msg) => msg.payload.code, checkSchemaOption({ request: { type: 'object', properties: { code: { type: 'string', pattern } } } }));
    assert.equal(typed({ channel_id: 'x', payload: { code: good } }), good, pattern);
    assert.throws(() => typed({ channel_id: 'x', payload: { code: bad } }), (err) => err instanceof BadRequestError && err.errors[0].type === 'string_pattern_mismatch', pattern);
  }
  assert.throws(
    () => checkSchemaOption({ response: { $defs: { Code: { type: 'string', pattern: '([a-z' } }, $ref: '#/$defs/Code' } }),
    (err) => err instanceof TypeError && err.message.includes('schema.response') && err.message.includes('"([a-z"')
  );
  assert.doesNotThrow(() => checkSchemaOption({ request: { const: { pattern: '((' }, enum: [{ pattern: '((' }] } })); // data, not a schema
});

test('contracts - a result is checked as it is sent: Dates as strings, undefined dropped or null', async () => {
  const quote = { type: 'object', properties: { valid_until: { type: 'string', format: 'date-time' }, note: { type: 'string' }, list: { type: 'array', items: { type: 'null' } } }, required: ['valid_until'] };
  const result = { valid_until: new Date(0), note: undefined, list: [undefined] };
  assert.equal(bindContract(() => result, checkSchemaOption({ response: quote }))({ payload: null }), result); // unchanged
  assert.equal(await bindContract(async () => {}, checkSchemaOption({ response: { type: 'null' } }))({ payload: null }), undefined);
  assert.deepEqual(wireForm(result), { valid_until: '1970-01-01T00:00:00.000Z', list: [null] });
  assert.deepEqual(wireForm([new Number(1), { toJSON: () => ({ a: undefined, b: 2 }) }]), [1, { b: 2 }]);
  const plain = { a: [1, { b: 'c' }] };
  assert.equal(wireForm(plain), plain); // nothing to change: no copy
  assert.throws(() => bindContract(() => ({ valid_until: 'soon' }), checkSchemaOption({ response: quote }))({ payload: null }), HandlerError);
});

test('contracts - a result is checked by index: a hole in a list is sent as null, and checked so', () => {
  assert.deepEqual(wireForm([1, , 3]), [1, null, 3]);
  assert.deepEqual(wireForm(new Array(2)), [null, null]);
  const ints = checkSchemaOption({ response: { type: 'array', items: { type: 'integer' } } });
  const refusal = (result) => {
    try {
      bindContract(() => result, ints)({ payload: null });
    } catch (err) {
      return err instanceof HandlerError && err.remoteType === 'ValidationError' ? err.details.errors.map((e) => e.loc) : err;
    }
    return null;
  };
  assert.deepEqual(refusal([1, , 3]), [[1]]);
  assert.deepEqual(refusal(new Array(2)), [[0], [1]]);
  assert.equal(refusal([1, 2, 3]), null);
  // NaN and Infinity are no JSON: refused (the encoder would refuse them), null allowed or not.
  assert.deepEqual(validate({ type: ['number', 'null'] }, wireForm(Infinity)), [{ loc: [], msg: 'Input should be number or null', type: 'type_error' }]);
  assert.deepEqual(validate({ type: 'array', items: { type: 'integer' } }, [1, , 3]), [{ loc: [1], msg: 'Input should be a valid integer', type: 'int_type' }]);
});

test('contracts - bytes pass a binary string schema (what pydantic publishes for bytes), both ways', () => {
  const image = { type: 'object', properties: { data: { type: 'string', format: 'binary', minLength: 2 } }, required: ['data'] };
  const png = Buffer.from([0x89, 0x50, 0xff, 0x00]);
  const served = bindContract((msg) => ({ data: msg.payload.data }), checkSchemaOption({ request: image, response: image }));
  assert.equal(served({ channel_id: 'x', payload: { data: png } }).data, png); // a Buffer stays a Buffer
  assert.deepEqual(validate(image, { data: new Uint8Array(1) }), [{ loc: ['data'], msg: 'Data should have at least 2 bytes', type: 'bytes_too_short' }]);
  assert.deepEqual(validate({ type: 'string' }, png), [{ loc: [], msg: 'Input should be a valid string', type: 'string_type' }]);
  assert.equal(validate({ type: 'object' }, png)[0].type, 'dict_type');
});

test('contracts - a binary string schema refuses what is not bytes, a string included, with pydantic\'s bytes_type', () => {
  const bytes = { type: 'string', format: 'binary' };
  const notBytes = [{ loc: ['data'], msg: 'Input should be a valid bytes', type: 'bytes_type' }];
  for (const value of ['AAE=', '', 5, null, [1], { $hex: '00' }]) {
    assert.deepEqual(validate({ type: 'object', properties: { data: bytes } }, { data: value }), notBytes, JSON.stringify(value));
  }
  for (const value of [Buffer.from('hi'), new ArrayBuffer(1), new Uint16Array(1), new DataView(new ArrayBuffer(2))]) {
    assert.deepEqual(validate(bytes, value), []);
  }
  assert.deepEqual(validate({ anyOf: [bytes, { type: 'null' }] }, 'AAE='), notBytes.map((e) => ({ ...e, loc: [] })));
  assert.deepEqual(validate({ type: ['string', 'null'], format: 'binary' }, 'AAE='), [{ loc: [], msg: 'Input should be bytes or null', type: 'type_error' }]);
  assert.deepEqual(validate({ type: ['string', 'null'], format: 'binary' }, null), []);
  const served = bindContract((msg) => msg.payload.length, checkSchemaOption({ request: bytes }));
  assert.throws(() => served({ channel_id: 'x', payload: 'AAE=' }), (err) => err instanceof BadRequestError && err.errors[0].type === 'bytes_type');
});

test('contracts - a bad_request names the channel as Python\'s repr() does, as a Python responder\'s does', () => {
  const typed = bindContract(() => 1, checkSchemaOption({ request: { type: 'integer' } }));
  const message = (channel) => {
    try {
      typed({ channel_id: channel, payload: 'x' });
    } catch (err) {
      return err.message;
    }
    return null;
  };
  assert.equal(message('n.typed'), "invalid request for 'n.typed': payload: Input should be a valid integer");
  assert.equal(message("it's"), 'invalid request for "it\'s": payload: Input should be a valid integer');
  assert.equal(pyRepr('both\'"'), "'both\\'\"'");
  assert.equal(pyRepr('a\\b\t\x1f\u0085\u2028\u00a0 é😀\u{E0001}'), "'a\\\\b\\t\\x1f\\x85\\u2028\\xa0 é😀\\U000e0001'");
});

test('contracts - the wrapped handler gets the ctx serve() passes; a generator it returns is not checked as an answer', async () => {
  const schema = checkSchemaOption({ request: { type: 'object' }, response: { type: 'integer' } });
  const ctx = { signal: new AbortController().signal };
  assert.equal(bindContract((msg, c) => (c === ctx ? 1 : 0), schema)({ payload: {} }, ctx), 1);
  const gen = bindContract(async function* () {
    yield 'not an integer';
  }, schema)({ payload: {} }, ctx);
  assert.equal(typeof gen[Symbol.asyncIterator], 'function');
  const later = await bindContract(async () => [1].values(), schema)({ payload: {} }).catch((err) => err);
  assert.ok(later instanceof HandlerError); // a sync iterator is an answer, checked
});
