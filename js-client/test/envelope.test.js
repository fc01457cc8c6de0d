'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, decodeMessage, encodeMessage, newMessageId } = require('../lib/envelope');
const { ErrorCode } = require('../lib/errors');

const BASE = { message_id: 'm', app_id: 'a', channel_id: 'c', message_type: 'publish', payload: null, timestamp: 1, reply_to: null };

test('envelope - optional fields follow the seven v1 fields, in table order (§1.2)', () => {
  const msg = {
    ack: true,
    timeout_ms: 5,
    error: { remote_type: 'T', message: 'm', code: 'x', details: { d: 1 }, remote_stack: 's' },
    headers: { h: 'v' },
    ...BASE
  };
  assert.equal(
    encodeMessage(msg),
    '{"message_id":"m","app_id":"a","channel_id":"c","message_type":"publish","payload":null,"timestamp":1,"reply_to":null,' +
      '"headers":{"h":"v"},"error":{"code":"x","message":"m","details":{"d":1},"remote_type":"T","remote_stack":"s"},"timeout_ms":5,"ack":true}'
  );
});

test('envelope - legacy encoding keeps only the seven v1 fields (§10)', () => {
  const text = encodeMessage({ ...BASE, headers: { h: 'v' }, ack: true, timeout_ms: 1 }, { legacy: true });
  assert.deepEqual(Object.keys(JSON.parse(text)), ['message_id', 'app_id', 'channel_id', 'message_type', 'payload', 'timestamp', 'reply_to']);
});

test('envelope - NaN and Infinity are refused with bad_message before sending (§1.1)', () => {
  for (const payload of [NaN, { a: [1, Infinity] }, { deep: { x: -Infinity } }]) {
    assert.throws(() => encodeMessage({ ...BASE, payload }), { code: ErrorCode.BAD_MESSAGE });
  }
  assert.throws(() => encodeMessage({ ...BASE, timestamp: NaN }), { code: ErrorCode.BAD_MESSAGE });
  assert.throws(() => encodeMessage({ ...BASE, message_type: 'request', timeout_ms: Infinity }), { code: ErrorCode.BAD_MESSAGE });
});

test('envelope - a null inside the payload is fine', () => {
  assert.match(encodeMessage({ ...BASE, payload: { a: null, b: [null] } }), /"payload":\{"a":null,"b":\[null\]\}/);
});

test('envelope - NaN and Infinity beside a null are still refused, however they are written', () => {
  // A null in the payload makes the encoder look for where NaN may hide:
  // in plain objects and arrays, and in whatever JSON.stringify converts itself.
  class Point {
    constructor() {
      this.x = NaN;
    }
  }
  const bare = Object.create(null);
  bare.n = -Infinity;
  const hidden = [
    { a: null, b: [1, NaN] },
    [null, { deep: [{ x: Infinity }] }],
    { a: null, boxed: new Number(NaN) },
    { a: null, own: { toJSON: () => Infinity } },
    { a: null, p: new Point() },
    { a: null, bare },
    { a: null, floats: new Float64Array([1, NaN]) }
  ];
  for (const payload of hidden) {
    assert.throws(() => encodeMessage({ ...BASE, payload }), { code: ErrorCode.BAD_MESSAGE }, JSON.stringify(payload));
  }
  const fine = { a: null, rows: [{ n: 1, at: new Date(0), note: null }], boxed: new Number(2), own: { toJSON: () => 'x' } };
  assert.deepEqual(JSON.parse(encodeMessage({ ...BASE, payload: fine })).payload, JSON.parse(JSON.stringify(fine)));
});

test('envelope - lone surrogates are refused, escaped backslashes are not', () => {
  assert.throws(() => encodeMessage({ ...BASE, payload: 'a\ud800b' }), { code: ErrorCode.BAD_MESSAGE });
  assert.throws(() => encodeMessage({ ...BASE, payload: { ['\udc00']: 1 } }), { code: ErrorCode.BAD_MESSAGE });
  const text = encodeMessage({ ...BASE, payload: '\\ud800 and 😀' });
  assert.equal(JSON.parse(text).payload, '\\ud800 and 😀');
});

test('envelope - BigInt, cycles and functions are bad_message', () => {
  const cyclic = {};
  cyclic.self = cyclic;
  for (const payload of [10n, cyclic, () => 1]) {
    assert.throws(() => encodeMessage({ ...BASE, payload }), { code: ErrorCode.BAD_MESSAGE });
  }
});

test('envelope - a Map, a Set, a WeakMap, a WeakSet or a Promise, anywhere, is bad_message: JSON would write {}', () => {
  const lossy = [new Map([[1, 2]]), new Set([1]), new WeakMap(), new WeakSet(), Promise.resolve(1)];
  for (const value of lossy) {
    const name = Object.prototype.toString.call(value).slice(8, -1);
    for (const payload of [value, { deep: { value } }, [1, value], { n: null, value }]) {
      assert.throws(() => encodeMessage({ ...BASE, payload }), { code: ErrorCode.BAD_MESSAGE, message: new RegExp(`^a ${name} is not JSON: it would arrive as \\{\\}`) });
    }
  }
  // what JSON writes as {} without losing anything stays {}; a toJSON says how it is written
  class Empty {}
  class Pairs extends Map {
    toJSON() {
      return [...this];
    }
  }
  assert.equal(JSON.parse(encodeMessage({ ...BASE, payload: { a: {}, b: new Empty(), c: [{}] } })).payload.c.length, 1);
  assert.deepEqual(JSON.parse(encodeMessage({ ...BASE, payload: { p: new Pairs([[1, 2]]) } })).payload, { p: [[1, 2]] });
  // the error of a result, too
  assert.throws(() => encodeMessage({ ...BASE, message_type: 'response', payload: null, error: { code: 'x', message: 'm', details: { s: new Set([1]) } } }), { code: ErrorCode.BAD_MESSAGE });
});

test('envelope - an iterator is written as the array of its items, as Python writes one; an async one is bad_message', () => {
  function* gen() {
    yield 1;
    yield 2;
  }
  async function* agen() {
    yield 1;
  }
  const arrays = () => [[[1, 2].values(), [1, 2]], [new Map([[1, 2]]).entries(), [[1, 2]]], [new Set([1]).values(), [1]], [gen(), [1, 2]], ['ab'[Symbol.iterator](), ['a', 'b']]];
  for (const wrap of [(v) => v, (v) => ({ deep: { v } }), (v) => [0, v]]) {
    for (const [value, items] of arrays()) {
      assert.deepEqual(JSON.parse(encodeMessage({ ...BASE, payload: wrap(value) })).payload, wrap(items));
    }
    assert.throws(() => encodeMessage({ ...BASE, payload: wrap(agen()) }), { code: ErrorCode.BAD_MESSAGE, message: /^an async iterator \(AsyncGenerator\) is not JSON: it would arrive as \{\}/ });
  }
  // an object that can also be iterated but holds data of its own is written as its data
  const cursor = { items: [1], next() {}, [Symbol.iterator]() { return this; } };
  assert.deepEqual(JSON.parse(encodeMessage({ ...BASE, payload: cursor })).payload, { items: [1] });
});

test('envelope - control characters escaped, non-ASCII raw', () => {
  const text = encodeMessage({ ...BASE, payload: '\u0000\n\t\u2028é😀' });
  assert.ok(text.includes('"payload":"\\u0000\\n\\t\u2028é😀"'));
});

test('envelope - invalid fields are refused on encode', () => {
  assert.throws(() => encodeMessage({ ...BASE, message_type: 'shout' }), { code: ErrorCode.BAD_MESSAGE });
  assert.throws(() => encodeMessage({ ...BASE, headers: { k: 1 } }), { code: ErrorCode.BAD_MESSAGE });
  assert.throws(() => encodeMessage({ ...BASE, app_id: 5 }), { code: ErrorCode.BAD_MESSAGE });
});

test('envelope - a UTF-8 BOM is bad_frame, as in Python', () => {
  const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(encodeMessage(BASE))]);
  assert.throws(() => decodeMessage(body), { code: ErrorCode.BAD_FRAME });
});

test('envelope - surrogate pairs written as escapes are fine, lone ones in keys are not', () => {
  const ok = Buffer.from('{"message_id":"\\ud83d\\ude00","app_id":"a","channel_id":"c","message_type":"publish"}');
  assert.equal(decodeMessage(ok).message_id, '😀');
  const bad = Buffer.from('{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","payload":{"\\udfff":1}}');
  assert.throws(() => decodeMessage(bad), { code: ErrorCode.BAD_FRAME });
});

test('envelope - null optional fields decode as absent', () => {
  const body = Buffer.from('{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","headers":null,"error":null,"ack":null,"timeout_ms":null}');
  assert.deepEqual(decodeMessage(body), { ...BASE, message_id: 'x', timestamp: 0 });
});

test('envelope - error.message defaults to an empty string', () => {
  const body = Buffer.from('{"message_id":"x","app_id":"a","channel_id":"c","message_type":"response","error":{"code":"timeout"}}');
  assert.deepEqual(decodeMessage(body).error, { code: 'timeout', message: '' });
});

test('envelope - invalid envelopes are bad_message', () => {
  const cases = [
    '{"app_id":"a","channel_id":"c","message_type":"publish"}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","timestamp":-1}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","reply_to":3}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","headers":[]}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"response","error":"boom"}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"request","timeout_ms":"5"}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish","timestamp":true}',
    '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"response","error":{"code":"x","message":null}}'
  ];
  for (const text of cases) assert.throws(() => decodeMessage(Buffer.from(text)), { code: ErrorCode.BAD_MESSAGE }, text);
});

test('envelope - buildMessage and newMessageId', () => {
  const a = buildMessage('request', 'app', 'c.d', { x: 1 }, { timeout_ms: 10 });
  assert.equal(a.message_type, 'request');
  assert.equal(a.reply_to, null);
  assert.equal(a.timeout_ms, 10);
  assert.ok(a.timestamp > 1.6e9);
  const ids = new Set(Array.from({ length: 10000 }, newMessageId));
  assert.equal(ids.size, 10000);
});

test('envelope - a number that overflows a double is bad_frame (§1.1)', () => {
  const H = '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish"';
  const bad = ['1e400', '-1e400', '1E+400', '[1, {"a": 2e308}]', '{"deep": [[9e999]]}', '9'.repeat(400)];
  for (const v of bad) {
    assert.throws(() => decodeMessage(Buffer.from(`${H},"payload":${v}}`)), { code: 'bad_frame' }, v);
  }
  // Large but finite, tiny exponents, and strings that merely look like numbers are fine.
  const ok = ['1e308', '1e-400', '"1e400"', '1' + '0'.repeat(299), '{"k1e400": 1}'];
  for (const v of ok) assert.doesNotThrow(() => decodeMessage(Buffer.from(`${H},"payload":${v}}`)), v);
  assert.equal(decodeMessage(Buffer.from(`${H},"payload":1e-400}`)).payload, 0);
});

test('envelope - a short frame from a version-2 server is not walked for overflow; a long one still is, for its depth (§1.1)', () => {
  const H = '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish"';
  assert.equal(decodeMessage(Buffer.from(`${H},"payload":1e400}`), true).payload, Infinity); // the server refused those
  assert.throws(() => decodeMessage(Buffer.from(`${H},"payload":1e400}`)), { code: 'bad_frame' });
  const deep = `${H},"payload":${'['.repeat(5000)}1${']'.repeat(5000)}}`;
  for (const screened of [false, true]) {
    assert.throws(() => decodeMessage(Buffer.from(deep), screened), (err) => err.code === ErrorCode.BAD_FRAME && /nested deeper than 201/.test(err.message));
  }
  const long = `${H},"payload":{"big":1e400,"pad":"${'x'.repeat(400)}"}}`; // walked: refused whoever sent it
  assert.throws(() => decodeMessage(Buffer.from(long), true), { code: 'bad_frame' });
});

test('envelope - a sender refuses a value nested deeper than any decoder reads (§1.1)', () => {
  const nested = (levels, kind) => {
    let value = 1;
    for (let i = 0; i < levels - 1; i++) value = kind === 'list' ? [value] : { k: value };
    return value;
  };
  for (const kind of ['list', 'object']) {
    const deepest = { ...BASE, payload: nested(200, kind) }; // the payload is level 2: 201 in all
    assert.deepEqual(decodeMessage(Buffer.from(encodeMessage(deepest))).payload, deepest.payload);
    const tooDeep = { ...BASE, payload: nested(201, kind) };
    assert.throws(() => encodeMessage(tooDeep), (err) => err.code === ErrorCode.BAD_MESSAGE && /nested deeper than 201/.test(err.message));
    assert.throws(() => decodeMessage(Buffer.from(JSON.stringify(tooDeep))), (err) => err.code === ErrorCode.BAD_FRAME);
  }
});

test('envelope - ids, names, headers and timestamps are written as JSON.stringify writes them, or refused alike', () => {
  // Every kind of character the quick path must send to JSON.stringify:
  // quotes, backslashes, control characters, surrogates paired and lone;
  // and those it may write as they are (DEL, U+2028, non-ASCII).
  const pieces = ['a', '"', '\\', '\u0000', '\u001f', '\u007f', '\u2028', 'é', '😀', '\ud800', '\udc00', ' ', '0'];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
  const strings = [''];
  for (let i = 0; i < 400; i++) {
    let s = '';
    for (let n = next() % 6; n > 0; n--) s += pieces[next() % pieces.length];
    strings.push(s);
  }
  const encodes = (msg) => {
    try {
      return JSON.parse(encodeMessage(msg));
    } catch (err) {
      assert.equal(err.code, ErrorCode.BAD_MESSAGE);
      return 'refused';
    }
  };
  for (let i = 0; i < strings.length; i++) {
    const s = strings[i];
    const t = strings[(i * 7 + 3) % strings.length];
    const msg = { ...BASE, message_id: s, app_id: t, channel_id: s + t, reply_to: t, headers: { [s]: t, traceparent: s }, timestamp: i / 7 };
    const expected = [s, t, s + t].every((x) => x.isWellFormed()) ? JSON.parse(JSON.stringify(msg)) : 'refused';
    assert.deepEqual(encodes(msg), expected, JSON.stringify(s + '|' + t));
    if (expected !== 'refused') {
      assert.ok(encodeMessage(msg).includes(`"headers":${JSON.stringify(msg.headers)}`));
      assert.ok(encodeMessage(msg).includes(`"timestamp":${JSON.stringify(i / 7)},`));
    }
  }
  // Two messages in the same millisecond share the timestamp's text; the next one does not.
  assert.ok(encodeMessage({ ...BASE, timestamp: 12.5 }).includes('"timestamp":12.5,'));
  assert.ok(encodeMessage({ ...BASE, timestamp: 12.5 }).includes('"timestamp":12.5,'));
  assert.ok(encodeMessage({ ...BASE, timestamp: 0 }).includes('"timestamp":0,'));
  assert.equal(encodeMessage({ ...BASE, headers: {} }).includes('"headers":{}'), true);
});
