'use strict';

// Every view of an ArrayBuffer is bytes (docs/protocol.md §16.3): a
// DataView and every typed array, not only Uint8Array, travel as the bytes
// of their own window (Buffer.from(v.buffer, v.byteOffset, v.byteLength)),
// never the whole ArrayBuffer under them, in the codec, the tagged base64,
// the frame limit, the offline queue's size, coalescing keys, typed
// contracts, and through the client (requests, answers, publish, stream
// items). Across languages: interop-tests/test_js_binary.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, decodeMessage } = require('../lib/envelope');
const { FrameTooLargeError } = require('../lib/errors');
const { encodeOutgoing, decodeBinaryFrame, extractAttachments, messageBytes, storable, revive } = require('../lib/protocol/attachments');
const { requestKey } = require('../lib/coalescing');
const { validate } = require('../lib/contracts');
const { streamingPeer, connectedClient, nextReceived } = require('./helpers');

const LIMIT = 16 * 1024 * 1024;
const GRANTED = { legacy: false, features: new Set(['cancel', 'streams', 'binary']), sendLimit: LIMIT };
const NOT_GRANTED = { legacy: false, features: new Set(['cancel', 'streams']), sendLimit: LIMIT };
const VIEWS = [DataView, Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array];

/** 16 known bytes, seeded. */
function bytes(seed = 0) {
  return Buffer.from(Array.from({ length: 16 }, (_, i) => (i * 7 + seed) & 0xff));
}

/** A `Kind` over `data` at byte offset 8 of a larger buffer whose other bytes are 0xee. */
function windowOf(Kind, data) {
  const backing = new ArrayBuffer(data.length + 24);
  new Uint8Array(backing).fill(0xee).set(data, 8);
  return Kind === DataView ? new DataView(backing, 8, data.length) : new Kind(backing, 8, data.length / Kind.BYTES_PER_ELEMENT);
}

function message(payload, type = 'request') {
  return { message_id: 'm1', app_id: 'app', channel_id: 'files.put', message_type: type, payload, timestamp: 1, reply_to: null };
}

function decoded(frame) {
  const whole = Array.isArray(frame) ? Buffer.concat(frame) : frame;
  return whole[4] === 0 ? decodeBinaryFrame(whole.subarray(4)) : decodeMessage(whole.subarray(4));
}

test('binary views - a DataView and every typed array go as the bytes of their window, nested or as the payload', () => {
  const payload = { list: VIEWS.map((Kind, i) => windowOf(Kind, bytes(i))), deep: [{ d: windowOf(DataView, bytes(99)) }], n: 1 };
  const found = extractAttachments(payload);
  assert.equal(found.buffers.length, VIEWS.length + 1);
  const msg = decoded(encodeOutgoing(message(payload), GRANTED));
  assert.deepEqual(msg.payload, { list: VIEWS.map((_, i) => bytes(i)), deep: [{ d: bytes(99) }], n: 1 });
  assert.ok(msg.payload.list.every((b) => Buffer.isBuffer(b) && b.length === 16)); // never the 40-byte ArrayBuffer
  for (const Kind of VIEWS) {
    const alone = decoded(encodeOutgoing(message(windowOf(Kind, bytes(5))), GRANTED));
    assert.deepEqual(alone.payload, bytes(5), Kind.name);
  }
  assert.ok(payload.deep[0].d instanceof DataView); // the caller's payload is untouched
  assert.deepEqual(decoded(encodeOutgoing(message(new DataView(new ArrayBuffer(0))), GRANTED)).payload, Buffer.alloc(0));
});

test('binary views - a peer without binary gets the window as tagged base64, and the offline queue keeps it', () => {
  const payload = { pcm: windowOf(Int16Array, bytes(1)), dv: windowOf(DataView, bytes(2)) };
  const msg = decoded(encodeOutgoing(message(payload), NOT_GRANTED));
  assert.deepEqual(msg.payload, { pcm: { $base64: bytes(1).toString('base64') }, dv: { $base64: bytes(2).toString('base64') } });
  const stored = storable(message(payload, 'publish'));
  assert.deepEqual(revive(JSON.parse(JSON.stringify(stored))).payload, { pcm: bytes(1), dv: bytes(2) });
});

test('binary views - the frame limit and the queue size count the window, not the buffer under it', () => {
  const huge = new ArrayBuffer(1 << 20);
  const limit = 4096;
  const proto = { ...GRANTED, sendLimit: limit };
  const small = { a: new Float64Array(huge, 1024, 2), b: new DataView(huge, 4096, 10) };
  const frame = encodeOutgoing(message(small), proto); // 26 bytes of a 1 MiB buffer fit in 4 KiB
  assert.equal(messageBytes(message(small)), (Array.isArray(frame) ? Buffer.concat(frame) : frame).length - 4);
  const head = messageBytes(message({ a: new DataView(huge, 8, 1) })) - 1; // the body besides its one attachment
  const at = decoded(encodeOutgoing(message({ a: new DataView(huge, 8, limit - head) }), proto));
  assert.equal(at.payload.a.length, limit - head);
  assert.throws(
    () => encodeOutgoing(message({ a: new DataView(huge, 8, limit - head + 1) }), proto),
    (err) => err instanceof FrameTooLargeError && err.size === limit + 1 && err.limit === limit
  );
  assert.equal(messageBytes(message({ a: new Int32Array(huge, 0, 4) })) - messageBytes(message({ a: new Uint8Array(0) })), 16);
});

test('binary views - coalescing keys by the bytes of the window, whatever the view', () => {
  const key = (payload) => requestKey('c', payload);
  assert.equal(key({ x: windowOf(Int16Array, bytes(1)) }), key({ x: Buffer.from(bytes(1)) }));
  assert.equal(key({ x: windowOf(DataView, bytes(1)) }), key({ x: windowOf(Float32Array, bytes(1)) }));
  assert.notEqual(key({ x: windowOf(DataView, bytes(1)) }), key({ x: windowOf(DataView, bytes(2)) }));
  assert.notEqual(key(windowOf(BigInt64Array, bytes(3))), null); // its BigInts are bytes, not JSON
});

test('binary views - a typed contract takes any view as bytes, counting its bytes', () => {
  const image = { type: 'string', format: 'binary', minLength: 4, maxLength: 16 };
  for (const Kind of VIEWS) assert.deepEqual(validate(image, windowOf(Kind, bytes())), [], Kind.name);
  assert.deepEqual(validate(image, new Int32Array(new ArrayBuffer(64), 0, 1)), []); // 4 bytes, one element
  assert.deepEqual(validate(image, new DataView(new ArrayBuffer(64), 8, 2)), [{ loc: [], msg: 'Data should have at least 4 bytes', type: 'bytes_too_short' }]);
  assert.equal(validate(image, new Float64Array(3))[0].type, 'bytes_too_long');
  assert.equal(validate({ type: 'object' }, new DataView(new ArrayBuffer(1)))[0].type, 'dict_type');
  assert.equal(validate({ type: 'array' }, new Int16Array(2))[0].type, 'list_type');
});

test('binary views - through the client: requests, answers, publish and stream items carry the window', async (t) => {
  const peer = await streamingPeer(t, {
    features: ['cancel', 'streams', 'binary'],
    onRequest: (msg, conn, reply) => msg.channel_id === 'echo' && reply({ got: msg.payload })
  });
  const client = await connectedClient(t, peer, { reconnect: false });
  assert.deepEqual(await client.request('echo', { dv: windowOf(DataView, bytes(1)), pcm: windowOf(Int16Array, bytes(2)) }), { got: { dv: bytes(1), pcm: bytes(2) } });
  const published = nextReceived(peer, (m) => m.message_type === 'publish');
  await client.publish('samples', windowOf(Float32Array, bytes(3)));
  assert.deepEqual((await published).payload, bytes(3));

  await client.serve('answer', () => ({ dv: windowOf(DataView, bytes(4)) }));
  await client.serve('items', async function* () {
    yield windowOf(Uint16Array, bytes(5));
    yield { d: windowOf(DataView, bytes(6)) };
  });
  const asked = buildMessage('request', 'app', 'answer', null, { timeout_ms: 5000 });
  const answered = nextReceived(peer, (m) => m.reply_to === asked.message_id);
  [...peer.sockets][0].write(encodeOutgoing(asked, GRANTED));
  assert.deepEqual((await answered).payload, { dv: bytes(4) });
  const open = buildMessage('request', 'app', 'items', null, { window: 8 });
  const end = nextReceived(peer, (m) => m.reply_to === open.message_id && m.message_type === 'stream_end');
  [...peer.sockets][0].write(encodeOutgoing(open, GRANTED));
  await end;
  const items = peer.received.filter((m) => m.reply_to === open.message_id && m.message_type === 'stream_item').map((m) => m.payload);
  assert.deepEqual(items, [bytes(5), { d: bytes(6) }]);
});
