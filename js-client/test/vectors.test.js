'use strict';

// The shared golden vectors (interop-tests/vectors/frames.json), checked both
// ways: every vector decodes whole, one byte at a time and all concatenated;
// canonical ones encode back to the exact bytes; bad ones raise their code.

const test = require('node:test');
const assert = require('node:assert/strict');
const { FrameDecoder, FramingFailure, encodeFrame } = require('../lib/framing');
const { decodeMessage, encodeMessage } = require('../lib/envelope');
const { loadVectors } = require('./helpers');

const { vectors, max_frame_size: maxFrameSize } = loadVectors();
const good = vectors.filter((v) => v.message !== undefined);
const bad = vectors.filter((v) => v.error !== undefined);

/**
 * Feeds `chunks` to a fresh decoder and decodes every frame.
 * @param {Buffer[]} chunks
 * @returns {object[]}
 */
function decodeAll(chunks) {
  const decoder = new FrameDecoder({ maxFrameSize });
  const out = [];
  for (const chunk of chunks) for (const body of decoder.feed(chunk)) out.push(decodeMessage(body));
  return out;
}

/**
 * Splits a buffer into 1-byte chunks.
 * @param {Buffer} buf
 * @returns {Buffer[]}
 */
function bytewise(buf) {
  const out = [];
  for (let i = 0; i < buf.length; i++) out.push(buf.subarray(i, i + 1));
  return out;
}

test('vectors - the file has both good and bad vectors', () => {
  assert.ok(good.length >= 10);
  assert.ok(bad.length >= 10);
  assert.equal(maxFrameSize, 16 * 1024 * 1024);
});

for (const v of good) {
  const bytes = Buffer.from(v.hex, 'hex');

  test(`vectors - decode whole: ${v.name}`, () => {
    assert.deepStrictEqual(decodeAll([bytes]), [v.message]);
  });

  test(`vectors - decode byte by byte: ${v.name}`, () => {
    assert.deepStrictEqual(decodeAll(bytewise(bytes)), [v.message]);
  });

  if (v.canonical) {
    test(`vectors - encode canonical: ${v.name}`, () => {
      assert.equal(encodeFrame(encodeMessage(v.message)).toString('hex'), v.hex);
    });
  } else {
    test(`vectors - re-encoding decodes to the same message: ${v.name}`, () => {
      const again = decodeAll([encodeFrame(encodeMessage(v.message))]);
      assert.deepStrictEqual(again, [v.message]);
    });
  }
}

test('vectors - all good vectors concatenated in one chunk', () => {
  const all = Buffer.concat(good.map((v) => Buffer.from(v.hex, 'hex')));
  assert.deepStrictEqual(decodeAll([all]), good.map((v) => v.message));
});

test('vectors - all good vectors concatenated, fed one byte at a time', () => {
  const all = Buffer.concat(good.map((v) => Buffer.from(v.hex, 'hex')));
  assert.deepStrictEqual(decodeAll(bytewise(all)), good.map((v) => v.message));
});

for (const v of bad) {
  const bytes = Buffer.from(v.hex, 'hex');

  test(`vectors - error ${v.error}: ${v.name}`, () => {
    assert.throws(() => decodeAll([bytes]), (err) => err.code === v.error);
  });

  test(`vectors - error ${v.error} byte by byte: ${v.name}`, () => {
    assert.throws(() => decodeAll(bytewise(bytes)), (err) => err.code === v.error);
  });

  test(`vectors - error ${v.error} after a good frame: ${v.name}`, () => {
    // The good frame is delivered first, then the error (a bad length
    // prefix as a FramingFailure, a bad body when it is decoded).
    const decoder = new FrameDecoder({ maxFrameSize });
    const first = Buffer.from(good[0].hex, 'hex');
    const frames = decoder.feed(Buffer.concat([first, bytes]));
    assert.ok(frames.length >= 1 && !(frames[0] instanceof FramingFailure));
    decodeMessage(frames[0]);
    const codes = [];
    for (const body of frames.slice(1)) {
      if (body instanceof FramingFailure) codes.push(body.error.code);
      else {
        try {
          decodeMessage(body);
        } catch (err) {
          codes.push(err.code);
        }
      }
    }
    assert.deepEqual(codes, [v.error]);
  });
}
