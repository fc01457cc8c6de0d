'use strict';

// The binary frame's codec and the payload walk (docs/protocol.md §16,
// lib/protocol/attachments.js) on bytes, and the client protocol fed them:
// every binary type in, Buffers out; each check of §16.2 a typed error; the
// frame limit; the tagged base64 of §16.5 for a peer without `binary`. The
// shared vectors are in binary_vectors.test.js, the fuzz in binary_fuzz.test.js.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage, decodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { FrameError, FrameTooLargeError, MessageError } = require('../lib/errors');
const {
  MAX_ATTACHMENTS,
  extractAttachments,
  encodeOutgoing,
  encodeBinaryFrame,
  decodeBinaryFrame,
  frameBytes
} = require('../lib/protocol/attachments');
const { ClientProtocol, InvalidMessage } = require('../lib/protocol/client_protocol');
const { ProtocolViolation } = require('../lib/protocol/protocol');

const LIMIT = 16 * 1024 * 1024;
const GRANTED = { legacy: false, features: new Set(['cancel', 'streams', 'binary']), sendLimit: LIMIT };
const NOT_GRANTED = { legacy: false, features: new Set(['cancel', 'streams']), sendLimit: LIMIT };

/** A frame's bytes, whatever encodeOutgoing() returned. */
function bytesOf(frame) {
  return Array.isArray(frame) ? Buffer.concat(frame) : frame;
}

/** A message with `payload`, fixed id and time so its bytes are known. */
function message(payload, type = 'request') {
  return { message_id: 'm1', app_id: 'app', channel_id: 'files.put', message_type: type, payload, timestamp: 1, reply_to: null };
}

/**
 * A binary frame body built by hand from its parts (§16.2), so the decoder
 * is tested against the layout, not against the encoder.
 * @param {object|string} envelope the JSON object (or its text).
 * @param {Buffer[]} attachments
 * @param {{n?: number, lengths?: number[], extra?: Buffer}} [lie] what the header claims instead.
 */
function rawBody(envelope, attachments, lie = {}) {
  const json = Buffer.from(typeof envelope === 'string' ? envelope : JSON.stringify(envelope));
  const n = lie.n ?? attachments.length;
  const lengths = lie.lengths ?? attachments.map((a) => a.length);
  const head = Buffer.alloc(9 + 4 * lengths.length);
  head[0] = 0;
  head.writeUInt32BE(json.length, 1);
  head.writeUInt32BE(n, 5);
  lengths.forEach((len, i) => head.writeUInt32BE(len, 9 + 4 * i));
  return Buffer.concat([head, json, ...attachments, lie.extra ?? Buffer.alloc(0)]);
}

/** The envelope of a binary frame with attachments at `paths`. */
function env(payload, paths, type = 'request') {
  return { ...message(payload, type), attachments: paths };
}

/** Asserts that decoding `body` raises a typed error with `code`. */
function refuses(body, code) {
  assert.throws(
    () => decodeBinaryFrame(body),
    (err) => (code === 'bad_frame' ? err instanceof FrameError : err instanceof MessageError) && err.code === code
  );
}

test('binary - every binary type, nested anywhere, arrives as a Buffer with its bytes', () => {
  const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
  const payload = {
    buf: Buffer.from('hello'),
    u8: new Uint8Array([0, 255]),
    view: backing.subarray(2, 5), // a view with an offset: only its bytes go
    ab: new Uint8Array([7, 8]).buffer,
    empty: Buffer.alloc(0),
    list: [1, [Buffer.from('deep')], { x: null, y: Buffer.from('y') }],
    text: 'kept',
    n: 3
  };
  const frame = bytesOf(encodeOutgoing(message(payload), GRANTED));
  assert.equal(frame.readUInt32BE(0), frame.length - 4);
  assert.equal(frame[4], 0x00);
  const msg = decodeBinaryFrame(frame.subarray(4));
  const p = msg.payload;
  for (const [key, bytes] of [['buf', 'hello'], ['u8', [0, 255]], ['view', [1, 2, 3]], ['ab', [7, 8]], ['empty', []]]) {
    assert.ok(Buffer.isBuffer(p[key]), key);
    assert.deepEqual(p[key], Buffer.from(bytes), key);
  }
  assert.deepEqual(p.list, [1, [Buffer.from('deep')], { x: null, y: Buffer.from('y') }]);
  assert.equal(p.text, 'kept');
  assert.equal(p.n, 3);
  // The caller's payload is left as it was: the walk copies the containers it changes.
  assert.ok(payload.buf instanceof Buffer && payload.list[1][0] instanceof Buffer && payload.list[2].y instanceof Buffer);
});

test('binary - the payload itself may be the attachment, and attachments go in JSON order', () => {
  const frame = bytesOf(encodeOutgoing(message(new Uint8Array([1, 2, 3])), GRANTED));
  const msg = decodeBinaryFrame(frame.subarray(4));
  assert.deepEqual(msg.payload, Buffer.from([1, 2, 3]));
  const found = extractAttachments({ b: [Buffer.from('1'), Buffer.from('2')], a: { c: Buffer.from('3') } });
  assert.deepEqual(found.paths, [['b', 0], ['b', 1], ['a', 'c']]);
  assert.deepEqual(found.payload, { b: [null, null], a: { c: null } });
  assert.equal(extractAttachments({ a: [1, 'x', { b: null }] }), null);
  assert.equal(extractAttachments('text'), null);
});

test('binary - the envelope is canonical with attachments last (§16.2 item 3)', () => {
  const msg = { ...message({ a: Buffer.from('x') }), timeout_ms: 5000 };
  const frame = bytesOf(encodeOutgoing(msg, GRANTED));
  const j = frame.readUInt32BE(5);
  assert.equal(frame.readUInt32BE(9), 1);
  assert.equal(frame.readUInt32BE(13), 1);
  const json = frame.subarray(17, 17 + j).toString();
  assert.equal(
    json,
    '{"message_id":"m1","app_id":"app","channel_id":"files.put","message_type":"request","payload":{"a":null},"timestamp":1,"reply_to":null,"timeout_ms":5000,"attachments":[["a"]]}'
  );
  assert.equal(frame.subarray(17 + j).toString(), 'x');
});

test('binary - a payload without bytes is the JSON frame it always was (§16.1 item 3)', () => {
  for (const payload of [null, 'x', 1, { a: [1, { b: 'c' }] }, [new Date(0)]]) {
    const msg = message(payload);
    assert.deepEqual(encodeOutgoing(msg, GRANTED), encodeFrame(encodeMessage(msg)));
  }
  // Frames of other types carry no attachments (§16.2 item 5).
  const sub = message({ serve: true }, 'subscribe');
  assert.deepEqual(encodeOutgoing(sub, GRANTED), encodeFrame(encodeMessage(sub)));
  assert.throws(() => encodeOutgoing(message({ a: Buffer.from('x') }, 'subscribe'), GRANTED), (err) => err instanceof MessageError);
});

test('binary - large attachments are written as they are, not copied into the frame', () => {
  const big = Buffer.alloc(1 << 20, 7);
  const frame = encodeOutgoing(message({ a: big, b: Buffer.alloc(0), c: Buffer.from('x') }), GRANTED);
  assert.ok(Array.isArray(frame));
  assert.equal(frame[1], big); // the caller's Buffer itself
  assert.equal(frame.length, 3); // the empty attachment writes nothing
  assert.equal(frameBytes(frame), bytesOf(frame).length);
  const msg = decodeBinaryFrame(bytesOf(frame).subarray(4));
  assert.deepEqual(msg.payload, { a: big, b: Buffer.alloc(0), c: Buffer.from('x') });
});

test('binary - the frame limit covers the whole frame: at the limit it goes, one byte over is too_large before anything is sent', () => {
  const head = bytesOf(encodeOutgoing(message(Buffer.alloc(1)), GRANTED)).length - 4 - 1; // body bytes besides the attachment
  const limit = 100_000;
  const proto = { ...GRANTED, sendLimit: limit };
  const atLimit = bytesOf(encodeOutgoing(message(Buffer.alloc(limit - head)), proto));
  assert.equal(atLimit.length - 4, limit);
  assert.equal(decodeBinaryFrame(atLimit.subarray(4)).payload.length, limit - head);
  assert.throws(
    () => encodeOutgoing(message(Buffer.alloc(limit - head + 1)), proto),
    (err) => err instanceof FrameTooLargeError && err.code === 'too_large' && err.size === limit + 1 && err.limit === limit
  );
});

test('binary - a peer without binary gets the tagged base64 of §16.5 in a JSON frame', () => {
  const payload = { a: Buffer.from([0xff, 0x00]), list: [new Uint8Array([1]).buffer], e: Buffer.alloc(0) };
  for (const proto of [NOT_GRANTED, { ...NOT_GRANTED, legacy: true }]) {
    const frame = encodeOutgoing(message(payload), proto);
    assert.ok(Buffer.isBuffer(frame));
    const msg = decodeMessage(frame.subarray(4));
    assert.deepEqual(msg.payload, { a: { $base64: '/wA=' }, list: [{ $base64: 'AQ==' }], e: { $base64: '' } });
  }
  assert.deepEqual(decodeMessage(encodeOutgoing(message(Buffer.from('hi')), NOT_GRANTED).subarray(4)).payload, { $base64: 'aGk=' });
  assert.ok(Buffer.isBuffer(payload.a)); // untouched
});

test('binary - what JSON cannot carry is still bad_message, cycles included', () => {
  const cyclic = { a: Buffer.from('x') };
  cyclic.self = cyclic;
  assert.throws(() => encodeOutgoing(message(cyclic), GRANTED), (err) => err instanceof MessageError && err.code === 'bad_message');
  let deep = Buffer.from('x');
  for (let i = 0; i < 300; i++) deep = [deep];
  assert.throws(() => encodeOutgoing(message(deep), GRANTED), (err) => err instanceof MessageError);
  assert.throws(() => encodeOutgoing(message({ a: Buffer.from('x'), n: NaN }), GRANTED), (err) => err instanceof MessageError);
  assert.throws(() => encodeBinaryFrame(message(null), [], [], LIMIT), (err) => err instanceof MessageError);
});

test('binary - the layout must add up: bad_frame (§16.2 item 2)', () => {
  const good = env({ a: null }, [['a']]);
  const x = Buffer.from('xyz');
  assert.deepEqual(decodeBinaryFrame(rawBody(good, [x])).payload, { a: x });
  refuses(Buffer.from([0, 0, 0]), 'bad_frame'); // shorter than the header
  refuses(rawBody(good, [], { n: 0, lengths: [] }), 'bad_frame'); // N = 0
  refuses(rawBody(good, [x], { n: MAX_ATTACHMENTS + 1 }), 'bad_frame'); // N > 65,535
  refuses(rawBody(good, [x], { n: 0xffffffff }), 'bad_frame');
  refuses(rawBody(good, [x], { lengths: [4] }), 'bad_frame'); // an attachment past the frame
  refuses(rawBody(good, [x], { lengths: [0xffffffff] }), 'bad_frame');
  refuses(rawBody(good, [x], { lengths: [2] }), 'bad_frame'); // bytes left over
  refuses(rawBody(good, [x], { extra: Buffer.from('!') }), 'bad_frame');
  const body = rawBody(good, [x]);
  body.writeUInt32BE(body.readUInt32BE(1) + 1, 1); // J too long
  refuses(body, 'bad_frame');
  refuses(rawBody('{"message_id":', [x]), 'bad_frame'); // JSON that is not
  refuses(rawBody('[1]', [x]), 'bad_frame');
});

test('binary - the paths must match the payload: bad_message (§16.2 items 4-5)', () => {
  const x = Buffer.from('x');
  refuses(rawBody(message({ a: null }), [x]), 'bad_message'); // no attachments field
  refuses(rawBody(env({ a: null }, ['a']), [x]), 'bad_message'); // a path that is no list
  refuses(rawBody(env({ a: null }, [['a'], ['b']]), [x]), 'bad_message'); // more paths than attachments
  refuses(rawBody(env({ a: null, b: null }, [['a']]), [x, x], { n: 2 }), 'bad_message'); // fewer
  refuses(rawBody(env({ a: 1 }, [['a']]), [x]), 'bad_message'); // not a null
  refuses(rawBody(env({ a: null }, [['b']]), [x]), 'bad_message'); // nothing there
  refuses(rawBody(env([null], [['0']]), [x]), 'bad_message'); // a key on a list
  refuses(rawBody(env({ 0: null }, [[0]]), [x]), 'bad_message'); // an index on an object
  refuses(rawBody(env([null], [[1]]), [x]), 'bad_message'); // past the list
  refuses(rawBody(env([null], [[-1]]), [x]), 'bad_message');
  refuses(rawBody(env([null], [[true]]), [x]), 'bad_message');
  refuses(rawBody(env({ a: null }, [['a'], ['a']]), [x, x]), 'bad_message'); // the same path twice
  refuses(rawBody(env({ a: { b: null } }, [['a'], ['a', 'b']]), [x, x]), 'bad_message');
  refuses(rawBody(env({ a: null }, [[]]), [x]), 'bad_message'); // [] needs a null payload
  refuses(rawBody(env({ toString: null }, [['valueOf']]), [x]), 'bad_message'); // inherited keys are no place
  refuses(rawBody(env(null, [[]], 'subscribe'), [x]), 'bad_message'); // a type without attachments
  refuses(rawBody({ ...env(null, [[]]), message_type: 'nope' }, [x]), 'bad_message');
  assert.throws(() => decodeBinaryFrame(rawBody(env(null, [[]]), [x]), false), (err) => err.code === 'bad_message'); // not granted
  // An attachments field in a JSON frame.
  assert.throws(() => decodeMessage(Buffer.from(JSON.stringify(env(null, [[]])))), (err) => err instanceof MessageError);
  // What may carry them does.
  for (const type of ['request', 'response', 'notification', 'publish', 'stream_item']) {
    assert.deepEqual(decodeBinaryFrame(rawBody(env(null, [[]], type), [x])).payload, x);
  }
  const twoKeys = decodeBinaryFrame(rawBody(env({ 0: null, a: [null, 1] }, [['0'], ['a', 0]]), [x, Buffer.from('y')]));
  assert.deepEqual(twoKeys.payload, { 0: x, a: [Buffer.from('y'), 1] });
});

test('binary - the client protocol: Buffers once granted; a frame not granted, a bad path and a bad layout are fatal', () => {
  const reply = (features, id) =>
    encodeFrame(
      encodeMessage(buildMessage('response', 'app', 'system', { status: 'connected', connection_id: 'c', protocol: 2, max_frame_size: LIMIT, features }, { reply_to: id }))
    );
  const open = (features) => {
    const proto = new ClientProtocol({ appId: 'app', connectionId: 'c', features: ['cancel', 'streams', 'binary'] });
    const id = proto.connect();
    proto.dataToSend();
    for (const body of proto.receiveData(reply(features, id), 0)) proto.receiveFrame(body);
    assert.equal(proto.state, 'open');
    return proto;
  };
  const frame = bytesOf(encodeOutgoing(message({ img: Buffer.from('png'), n: 1 }, 'publish'), GRANTED));
  // Granted: byte by byte or whole, the same message.
  const granted = open(['cancel', 'streams', 'binary']);
  assert.ok(granted.features.has('binary'));
  const items = [];
  for (const byte of frame) for (const body of granted.receiveData(Buffer.from([byte]), 0)) items.push(granted.receiveFrame(body));
  assert.equal(items.length, 1);
  assert.deepEqual(items[0].payload, { img: Buffer.from('png'), n: 1 });
  // What the client sends is a binary frame too.
  granted.send(message({ a: Buffer.from('z') }));
  assert.equal(bytesOf(granted.dataToSend()[0])[4], 0);
  // Not granted: the server broke the protocol (§16.1 item 2), as Python's client takes it.
  const plain = open(['cancel', 'streams']);
  plain.send(message({ a: Buffer.from('z') }));
  assert.deepEqual(decodeMessage(bytesOf(plain.dataToSend()[0]).subarray(4)).payload, { a: { $base64: 'eg==' } });
  const [body] = plain.receiveData(frame, 0);
  const event = plain.receiveFrame(body);
  assert.ok(event instanceof ProtocolViolation && event.code === 'bad_message', String(event));
  assert.match(event.text, /binary frames were not negotiated/);
  assert.ok(event.error instanceof MessageError && event.error.name === 'MessageError');
  assert.equal(plain.state, 'error');
  // Granted, attachments that do not fit the envelope: a violation too; a bad layout: the stream cannot be trusted (§1.4).
  const misfits = [
    rawBody(env({ a: 1 }, [['a']], 'publish'), [Buffer.from('x')]), // the path leads to no null
    rawBody(env({ a: null }, [['a'], ['a']], 'publish'), [Buffer.from('x'), Buffer.from('y')]), // the same path twice
    rawBody(env({ a: null }, [], 'publish'), [Buffer.from('x')]), // fewer paths than attachments
    rawBody(env({ a: null }, [['a']], 'subscribe'), [Buffer.from('x')]), // a type that carries none
    encodeMessage(message({ a: null }, 'publish')).toString().replace(/}$/, ',"attachments":[["a"]]}') // in a JSON frame
  ];
  for (const misfit of misfits) {
    const proto = open(['cancel', 'streams', 'binary']);
    const item = proto.receiveFrame(proto.receiveData(encodeFrame(Buffer.from(misfit)), 0)[0]);
    assert.ok(item instanceof ProtocolViolation && item.code === 'bad_message', String(misfit));
    assert.equal(proto.state, 'error');
  }
  const badLayout = rawBody(env({ a: null }, [['a']], 'publish'), [Buffer.from('x')], { lengths: [9] });
  const event3 = granted.receiveFrame(granted.receiveData(encodeFrame(badLayout), 0)[0]);
  assert.ok(event3 instanceof ProtocolViolation && event3.code === 'bad_frame');
  assert.equal(granted.state, 'error');
  // A bad envelope in a binary frame is still only skipped, as in a JSON frame.
  const skipped = open(['cancel', 'streams', 'binary']);
  const badEnvelope = rawBody({ ...env({ a: null }, [['a']], 'publish'), message_type: 'nonsense' }, [Buffer.from('x')]);
  assert.ok(skipped.receiveFrame(skipped.receiveData(encodeFrame(badEnvelope), 0)[0]) instanceof InvalidMessage);
  assert.equal(skipped.state, 'open');
});
