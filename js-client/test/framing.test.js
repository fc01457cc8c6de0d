'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { FrameDecoder, encodeFrame } = require('../lib/framing');
const { ErrorCode } = require('../lib/errors');

/**
 * A 4-byte big-endian length prefix.
 * @param {number} n
 * @returns {Buffer}
 */
function prefix(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

test('framing - encodeFrame writes prefix and body in one buffer', () => {
  const frame = encodeFrame('{"a":"é"}');
  assert.equal(frame.readUInt32BE(0), 10);
  assert.equal(frame.subarray(4).toString('utf8'), '{"a":"é"}');
  assert.deepEqual(encodeFrame(Buffer.from('{}')), Buffer.from('000000027b7d', 'hex'));
});

test('framing - encodeFrame refuses empty and oversized bodies', () => {
  assert.throws(() => encodeFrame(''), { code: ErrorCode.BAD_FRAME });
  assert.throws(() => encodeFrame('{"a":1}', 6), (err) => err.code === ErrorCode.TOO_LARGE && err.size === 7 && err.limit === 6);
});

test('framing - the limit is checked on the prefix, before the body is buffered', () => {
  const decoder = new FrameDecoder({ maxFrameSize: 100 });
  assert.deepEqual(decoder.feed(prefix(101).subarray(0, 3)), []);
  assert.throws(() => decoder.feed(prefix(101).subarray(3)), (err) => err.code === ErrorCode.TOO_LARGE && err.size === 101);
  assert.equal(decoder.bufferedBytes, 0);
});

test('framing - a length at the limit is accepted', () => {
  const decoder = new FrameDecoder({ maxFrameSize: 2 });
  assert.deepEqual(decoder.feed(Buffer.from('000000027b7d', 'hex')), [Buffer.from('{}')]);
});

test('framing - zero length is bad_frame', () => {
  assert.throws(() => new FrameDecoder().feed(prefix(0)), { code: ErrorCode.BAD_FRAME });
});

test('framing - errors are sticky: later feeds raise the same error', () => {
  const decoder = new FrameDecoder({ maxFrameSize: 10 });
  let first;
  assert.throws(() => decoder.feed(prefix(11)), (err) => (first = err).code === ErrorCode.TOO_LARGE);
  assert.throws(() => decoder.feed(Buffer.from('000000027b7d', 'hex')), (err) => err === first);
  assert.equal(decoder.error, first);
});

test('framing - null maxFrameSize means the protocol maximum', () => {
  const decoder = new FrameDecoder({ maxFrameSize: null });
  assert.deepEqual(decoder.feed(prefix(0xffffffff)), []);
  assert.equal(decoder.bufferedBytes, 0);
});

test('framing - a prefix split across chunks', () => {
  const decoder = new FrameDecoder();
  const frame = encodeFrame('{"k":1}');
  assert.deepEqual(decoder.feed(frame.subarray(0, 1)), []);
  assert.deepEqual(decoder.feed(frame.subarray(1, 3)), []);
  assert.deepEqual(decoder.feed(frame.subarray(3, 5)), []);
  assert.deepEqual(decoder.feed(frame.subarray(5)), [Buffer.from('{"k":1}')]);
  assert.equal(decoder.bufferedBytes, 0);
});

test('framing - a frame inside one chunk is a view, not a copy', () => {
  const chunk = Buffer.concat([encodeFrame('{"a":1}'), encodeFrame('{"b":2}')]);
  const [a, b] = new FrameDecoder().feed(chunk);
  assert.equal(a.buffer, chunk.buffer);
  assert.equal(b.buffer, chunk.buffer);
  assert.equal(b.toString(), '{"b":2}');
});

test('framing - 1,000 frames in one chunk, and trailing partial data kept', () => {
  const frames = [];
  for (let i = 0; i < 1000; i++) frames.push(encodeFrame(JSON.stringify({ i })));
  const next = encodeFrame('{"last":true}');
  const decoder = new FrameDecoder();
  const out = decoder.feed(Buffer.concat([...frames, next.subarray(0, 6)]));
  assert.equal(out.length, 1000);
  assert.deepEqual(JSON.parse(out[999]), { i: 999 });
  assert.equal(decoder.bufferedBytes, 2);
  assert.deepEqual(decoder.feed(next.subarray(6)), [Buffer.from('{"last":true}')]);
});

test('framing - an 8 MiB frame across many chunks', () => {
  const body = Buffer.alloc(8 * 1024 * 1024, 0x61);
  body[0] = 0x22;
  body[body.length - 1] = 0x22;
  const frame = encodeFrame(body);
  const decoder = new FrameDecoder();
  const out = [];
  const step = 65536 + 7; // chunks that never line up with the prefix
  for (let i = 0; i < frame.length; i += step) out.push(...decoder.feed(frame.subarray(i, i + step)));
  assert.equal(out.length, 1);
  assert.ok(out[0].equals(body));
  assert.equal(decoder.bufferedBytes, 0);
});

test('framing - a large frame fed one byte at a time', () => {
  const body = Buffer.from(JSON.stringify({ s: 'x'.repeat(200_000) }));
  const frame = encodeFrame(body);
  const decoder = new FrameDecoder();
  const out = [];
  for (let i = 0; i < frame.length; i++) out.push(...decoder.feed(frame.subarray(i, i + 1)));
  assert.equal(out.length, 1);
  assert.ok(out[0].equals(body));
});

test('framing - empty chunks are harmless', () => {
  const decoder = new FrameDecoder();
  assert.deepEqual(decoder.feed(Buffer.alloc(0)), []);
  assert.deepEqual(decoder.feed(encodeFrame('{}')), [Buffer.from('{}')]);
});

test('framing - any split of a stream of frames, then a bad prefix, gives the same frames and error', () => {
  // Whole frames in a chunk are read by offset, the rest by the general path:
  // every split must give the frames in order, then the sticky error.
  let seed = 7;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const bodies = [];
    for (let i = 0, k = 1 + rand(40); i < k; i++) bodies.push(Buffer.from(`{"i":${i},"pad":"${'x'.repeat(rand(300))}"}`));
    const bad = [prefix(0), prefix(5000)][rand(2)];
    const stream = Buffer.concat([...bodies.map((b) => encodeFrame(b)), bad, Buffer.from('{}')]);
    const decoder = new FrameDecoder({ maxFrameSize: 4096 });
    const got = [];
    let error = null;
    for (let pos = 0; pos < stream.length && error === null;) {
      const end = Math.min(stream.length, pos + 1 + rand(rand(2) ? 16 : 2000));
      try {
        for (const item of decoder.feed(stream.subarray(pos, end))) {
          if (item instanceof Buffer) got.push(Buffer.from(item));
          else error = item.error;
        }
      } catch (err) {
        error = err;
      }
      pos = end;
    }
    assert.deepEqual(got, bodies);
    assert.equal(error?.code, bad.readUInt32BE(0) === 0 ? ErrorCode.BAD_FRAME : ErrorCode.TOO_LARGE);
  }
});
