'use strict';

/**
 * Large frames read in place (lib/reads.js, FrameDecoder.readBuffer): a
 * frame of at least 64 KiB goes on in a buffer of its own, filled from the
 * chunks it comes in or read straight into; small reads share a slab that
 * is never written twice.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { randomBytes } = require('node:crypto');
const { FrameDecoder, encodeFrame } = require('../lib/framing');
const { ErrorCode } = require('../lib/errors');
const { readsInto, SLAB_BYTES, MIN_READ_BYTES } = require('../lib/reads');

const KiB = 1024;

/**
 * `data` cut into chunks of `size` bytes.
 * @param {Buffer} data
 * @param {number} size
 * @returns {Buffer[]}
 */
function chunks(data, size) {
  const out = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

test('reads - a large frame fed in chunks is assembled in its own buffer, the frames around it as views', () => {
  const small = Buffer.from('{"a":1}');
  const large = randomBytes(200 * KiB);
  const stream = Buffer.concat([encodeFrame(small), encodeFrame(large), encodeFrame(small)]);
  for (const size of [1, 999, 64 * KiB, stream.length]) {
    const decoder = new FrameDecoder({ maxFrameSize: null });
    const got = [];
    for (const chunk of chunks(stream, size)) got.push(...decoder.feed(chunk));
    assert.deepEqual(got, [small, large, small], `chunks of ${size}`);
    assert.equal(decoder.bufferedBytes, 0);
    assert.equal(decoder.readBuffer(null), null);
  }
});

test('reads - bytes read into readBuffer() are counted, not copied', () => {
  const large = randomBytes(300 * KiB);
  const stream = encodeFrame(large);
  const decoder = new FrameDecoder({ maxFrameSize: null });
  assert.deepEqual(decoder.feed(stream.subarray(0, 10 * KiB)), []);
  const target = decoder.readBuffer(null);
  assert.equal(target.length, large.length - (10 * KiB - 4));
  assert.equal(decoder.bufferedBytes, 10 * KiB - 4);
  let at = 10 * KiB;
  let frames = [];
  while (frames.length === 0) {
    const into = decoder.readBuffer(null);
    const n = Math.min(into.length, 48 * KiB);
    stream.copy(into, 0, at, at + n); // as the kernel does
    at += n;
    frames = decoder.feed(into.subarray(0, n));
  }
  assert.equal(frames.length, 1);
  assert.equal(frames[0].buffer, target.buffer); // the buffer read into is the frame
  assert.deepEqual(frames[0], large);
});

test('reads - a limit lowered while a large frame is assembled holds all the same', () => {
  const decoder = new FrameDecoder({ maxFrameSize: null });
  const stream = encodeFrame(randomBytes(100 * KiB));
  decoder.feed(stream.subarray(0, 70 * KiB));
  decoder.maxFrameSize = 80 * KiB;
  assert.throws(() => decoder.feed(stream.subarray(70 * KiB)), { code: ErrorCode.TOO_LARGE });
  assert.equal(decoder.readBuffer(null), null);
  assert.throws(() => decoder.feed(Buffer.from('x')), { code: ErrorCode.TOO_LARGE });
});

test('reads - a slab is filled by successive reads, then replaced; what was read is never overwritten', () => {
  const decoder = new FrameDecoder({ maxFrameSize: null });
  const got = [];
  const reads = readsInto(decoder, (chunk) => got.push(...decoder.feed(chunk)));
  const bodies = [];
  let slabs = new Set();
  for (let i = 0; i < 400; i++) {
    const body = Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(i % 7 === 0 ? 3000 : 40) }));
    bodies.push(body);
    const frame = encodeFrame(body);
    const into = reads.buffer();
    assert.ok(into.length >= MIN_READ_BYTES && into.length <= SLAB_BYTES);
    slabs.add(into.buffer);
    frame.copy(into);
    reads.callback(frame.length, into);
  }
  assert.ok(slabs.size > 1, 'the slab was replaced');
  assert.deepEqual(got, bodies);
});

test('reads - over a real socket, a large frame between small ones is read in place', async (t) => {
  const small = Buffer.from('{"small":true}');
  const large = randomBytes(2 * 1024 * KiB);
  const stream = Buffer.concat([encodeFrame(small), encodeFrame(large), encodeFrame(small)]);
  const server = net.createServer((socket) => {
    // Odd-sized writes, so that reads end anywhere.
    const parts = chunks(stream, 77 * KiB + 13);
    const next = () => {
      if (parts.length === 0) return void socket.end();
      if (socket.write(parts.shift())) setImmediate(next);
      else socket.once('drain', next);
    };
    next();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const decoder = new FrameDecoder({ maxFrameSize: null });
  const got = [];
  let inPlace = 0;
  const onread = readsInto(decoder, (chunk) => {
    const frame = decoder.readBuffer(null);
    if (frame !== null && chunk.buffer === frame.buffer) inPlace += chunk.length;
    got.push(...decoder.feed(chunk));
  });
  const socket = net.connect({ host: '127.0.0.1', port: server.address().port, onread });
  await new Promise((resolve, reject) => socket.on('end', resolve).on('error', reject));
  socket.destroy();
  assert.deepEqual(got, [small, large, small]);
  assert.ok(inPlace > large.length / 2, `${inPlace} of ${large.length} bytes read in place`);
});
