'use strict';

// Bytes where JSON.stringify would not write them as bytes (docs/protocol.md
// §16.3, README "Binary payloads"): in a sync iterator's items, in what a
// toJSON() returns, and a SharedArrayBuffer. Each travels as an attachment
// and arrives as a Buffer, never as {"type":"Buffer","data":[...]} or {};
// the Python twin is tests/test_binary_carriers.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, MessageError } = require('..');
const { buildMessage, decodeMessage } = require('../lib/envelope');
const { encodeOutgoing, decodeBinaryFrame, messageBytes, storable, revive } = require('../lib/protocol/attachments');
const { Peer } = require('./helpers');

const GRANTED = { legacy: false, features: new Set(['binary']), sendLimit: 1 << 24 };
const NOT_GRANTED = { legacy: false, features: new Set(), sendLimit: 1 << 24 };

function* gen(...items) {
  yield* items;
}

function shared(bytes) {
  const sab = new SharedArrayBuffer(bytes.length);
  new Uint8Array(sab).set(bytes);
  return sab;
}

/** What a peer decodes from `payload` sent on a connection granted `binary` (or not). */
function roundTrip(payload, proto = GRANTED) {
  const frame = encodeOutgoing(buildMessage('request', 'app', 'c', payload), proto);
  const body = (Array.isArray(frame) ? Buffer.concat(frame) : frame).subarray(4);
  return (body[0] === 0 ? decodeBinaryFrame(body) : decodeMessage(body)).payload;
}

const CASES = [
  ['an array iterator', () => ({ it: [Buffer.from('ab')].values() }), { it: [Buffer.from('ab')] }],
  ['a generator', () => ({ g: gen(Buffer.from('x'), 1, new Uint8Array([2])) }), { g: [Buffer.from('x'), 1, Buffer.from([2])] }],
  ['a generator as the payload', () => gen(Buffer.from('top')), [Buffer.from('top')]],
  ['a toJSON returning an object with a Buffer', () => ({ t: { toJSON: () => ({ b: Buffer.from('tj') }) } }), { t: { b: Buffer.from('tj') } }],
  ['a toJSON returning a Buffer', () => ({ t: { toJSON: () => Buffer.from('q') } }), { t: Buffer.from('q') }],
  ['a toJSON returning a typed array', () => [{ toJSON: () => new Uint16Array([1]) }], [Buffer.from(new Uint16Array([1]).buffer)]],
  ['a SharedArrayBuffer', () => ({ s: shared([1, 2, 3, 4]) }), { s: Buffer.from([1, 2, 3, 4]) }],
  ['a view of a SharedArrayBuffer', () => ({ s: new Uint8Array(shared([5, 6, 7]), 1, 2) }), { s: Buffer.from([6, 7]) }]
];

test('binary carriers - bytes in an iterator, a toJSON() or a SharedArrayBuffer travel as attachments', () => {
  for (const [name, make, arrives] of CASES) {
    assert.deepEqual(roundTrip(make()), arrives, name);
    // To a peer without `binary`, the tagged base64 of §16.5, never a list of numbers.
    const tagged = JSON.stringify(roundTrip(make(), NOT_GRANTED));
    assert.ok(tagged.includes('$base64') && !tagged.includes('"type":"Buffer"'), `${name}: ${tagged}`);
  }
});

test('binary carriers - without bytes, an iterator and a toJSON() are written as JSON writes them', () => {
  assert.deepEqual(roundTrip({ g: gen(1, 'two', null) }), { g: [1, 'two', null] }); // used up by the walk: its items go
  assert.deepEqual(roundTrip(gen()), []);
  let asked = [];
  const tj = { toJSON: (key) => (asked.push(key), { at: key }) };
  assert.deepEqual(roundTrip({ a: [tj], d: new Date(0) }), { a: [{ at: '0' }], d: '1970-01-01T00:00:00.000Z' }); // the key JSON passes
  assert.deepEqual(asked.slice(0, 1), ['0']);
  const self = { a: Buffer.from('s'), toJSON() { return this; } }; // JSON does not ask what toJSON returned
  assert.deepEqual(roundTrip({ self }), { self: { a: Buffer.from('s') } });
  assert.throws(() => roundTrip({ t: { toJSON() { throw new Error('boom'); } } }), (err) => err instanceof MessageError && /boom/.test(err.message));
  assert.throws(() => roundTrip({ a: (async function* () {})() }), (err) => err instanceof MessageError && /async iterator/.test(err.message));
  // The offline queue counts and stores an iterator's items too.
  assert.ok(messageBytes(buildMessage('request', 'app', 'c', { g: gen(1) })) > 0);
  assert.deepEqual(revive(storable(buildMessage('request', 'app', 'c', { g: gen(Buffer.from('k')) }))).payload, { g: [Buffer.from('k')] });
  assert.deepEqual(storable(buildMessage('request', 'app', 'c', { g: gen(2) })).payload, { g: [2] });
});

test('binary carriers - through a socket, a responder gets Buffers from each', async (t) => {
  const peer = new Peer({
    onConnect: (msg, conn) => {
      const payload = { status: 'connected', connection_id: 'c', protocol: 2, server: 'test-peer/0', heartbeat_interval_ms: 15000, max_frame_size: 1 << 24, features: ['cancel', 'streams', 'binary'] };
      conn.send(buildMessage('response', msg.app_id, 'system', payload, { reply_to: msg.message_id }));
      return true;
    },
    onRequest: (msg, conn, reply) => reply({ got: msg.payload })
  });
  await peer.listen();
  t.after(() => peer.close());
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, reconnect: false });
  t.after(() => client.disconnect());
  await client.connect();
  for (const [name, make, arrives] of CASES) assert.deepEqual(await client.request('echo', make()), { got: arrives }, name);
});
