'use strict';

// The shared binary frame vectors (interop-tests/vectors/binary_frames.json,
// docs/protocol.md §16.2), made by hand from their parts: the Node decoder
// must read every valid one, whole and byte by byte, to its message and
// attachments, and refuse every invalid one with its code; the Node encoder
// must write the canonical ones byte for byte. The Python core passes the same file.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { FrameDecoder } = require('../lib/framing');
const { decodeMessage } = require('../lib/envelope');
const { IpcError } = require('../lib/errors');
const { decodeBinaryFrame, encodeOutgoing } = require('../lib/protocol/attachments');
const { ROOT } = require('./helpers');

const { max_frame_size: MAX_FRAME_SIZE, vectors } = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'vectors', 'binary_frames.json'), 'utf8'));
const GRANTED = { legacy: false, features: new Set(['binary']), sendLimit: MAX_FRAME_SIZE };

/** A frame's one body, split off by the decoder fed `chunks`. */
function bodyOf(chunks) {
  const decoder = new FrameDecoder({ maxFrameSize: MAX_FRAME_SIZE });
  const bodies = chunks.flatMap((chunk) => decoder.feed(chunk));
  assert.equal(bodies.length, 1);
  return bodies[0];
}

/** What a body decodes to: the message, or the typed error's code. */
function outcome(body) {
  try {
    return body[0] === 0 ? decodeBinaryFrame(body) : decodeMessage(body);
  } catch (err) {
    if (!(err instanceof IpcError)) throw err;
    return err.code;
  }
}

/** The vector's message with each attachment, a Buffer, at its path. */
function expected(vector) {
  const msg = structuredClone(vector.message);
  for (const { path: at, hex } of vector.attachments) {
    const bytes = Buffer.from(hex, 'hex');
    if (at.length === 0) {
      msg.payload = bytes;
      continue;
    }
    let node = msg.payload;
    for (const step of at.slice(0, -1)) node = node[step];
    node[at[at.length - 1]] = bytes;
  }
  return msg;
}

test('binary vectors - the file has valid, invalid and canonical vectors', () => {
  assert.ok(vectors.filter((v) => v.message).length >= 5);
  assert.ok(vectors.filter((v) => v.error === 'bad_frame').length >= 5);
  assert.ok(vectors.filter((v) => v.error === 'bad_message').length >= 5);
  assert.ok(vectors.some((v) => v.canonical));
});

for (const vector of vectors) {
  test(`binary vectors - decode: ${vector.name}`, () => {
    const frame = Buffer.from(vector.hex, 'hex');
    const want = vector.error ?? expected(vector);
    const whole = outcome(bodyOf([frame]));
    assert.deepEqual(whole, want);
    assert.deepEqual(outcome(bodyOf([...frame].map((byte) => Buffer.from([byte])))), whole); // byte by byte: the same
    if (typeof whole === 'object') {
      const buffers = vector.attachments.map(({ path: at }) => at.reduce((node, step) => node[step], whole.payload));
      assert.ok(buffers.every((b) => Buffer.isBuffer(b)), 'attachments arrive as Buffers');
    }
  });

  if (vector.canonical) {
    test(`binary vectors - encode: ${vector.name}`, () => {
      const frame = encodeOutgoing(expected(vector), GRANTED);
      assert.equal(Buffer.concat([frame].flat()).toString('hex'), vector.hex);
    });
  }
}
