'use strict';

// A bounded, seeded fuzz of the binary frame's decoder (docs/protocol.md
// §16.2), as fuzz.test.js does for the JSON decoders: valid binary frames,
// then mutated (bad counts, lengths past the frame or short of it, paths
// without their attachment or leading nowhere, flipped and cut bytes), go to
// decodeBinaryFrame and, whole, byte by byte and in random chunks, to a
// client protocol granted `binary`. Invariant: each decodes or raises an
// IpcError of bad_frame or bad_message, never anything else, and the split
// never changes the outcome. A failure names its seed: rerun with FUZZ_SEED=...

const test = require('node:test');
const assert = require('node:assert/strict');
const { Rng, randomValue, splits, prefix } = require('../../bench/node/fuzz_frames');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { IpcError } = require('../lib/errors');
const { encodeOutgoing, decodeBinaryFrame } = require('../lib/protocol/attachments');
const { ClientProtocol, InvalidMessage } = require('../lib/protocol/client_protocol');
const { Event, ProtocolViolation } = require('../lib/protocol/protocol');

const SEED = Number(process.env.FUZZ_SEED ?? 0xb1a7);
const FRAMES = 2500;
const LIMIT = 1 << 20;
const GRANTED = { legacy: false, features: new Set(['binary']), sendLimit: LIMIT };
const TYPES = ['request', 'response', 'notification', 'publish', 'stream_item', 'subscribe', 'cancel'];

/** A payload with Buffers hidden in it, as a client would send. */
function payloadWithBytes(rng, depth = 3) {
  if (depth === 0 || rng.chance(0.3)) return rng.chance(0.6) ? rng.bytes(rng.pick([0, 1, 7, 300])) : randomValue(rng, 1);
  if (rng.chance(0.5)) return Array.from({ length: rng.range(0, 4) }, () => payloadWithBytes(rng, depth - 1));
  const out = {};
  for (let i = rng.range(0, 4); i > 0; i--) {
    const value = payloadWithBytes(rng, depth - 1); // an own key, even __proto__, as JSON.parse makes it
    Object.defineProperty(out, rng.pick(['a', 'b', '0', '__proto__', 'x.y', 'é']), { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** A valid binary frame's body (at least one attachment). */
function validBody(rng) {
  for (;;) {
    try {
      return encodedBody(rng);
    } catch (err) {
      if (err.code !== 'bad_message') throw err; // randomValue's lone surrogates: the encoder refuses them
    }
  }
}

/** One try at a binary frame's body: randomValue may hold what JSON cannot carry. */
function encodedBody(rng) {
  let payload = payloadWithBytes(rng);
  if (rng.chance(0.2)) payload = rng.bytes(rng.range(0, 50));
  const msg = buildMessage(rng.pick(TYPES.slice(0, 5)), 'fuzz', 'c', { wrap: payload, last: Buffer.from('z') }, { reply_to: rng.chance(0.5) ? 'r' : null });
  const frame = encodeOutgoing(msg, GRANTED);
  return (Array.isArray(frame) ? Buffer.concat(frame) : frame).subarray(4);
}

/** Rewrites the envelope's JSON of `body` (keeping the layout in step with it). */
function withEnvelope(body, edit) {
  const j = body.readUInt32BE(1);
  const n = body.readUInt32BE(5);
  const start = 9 + 4 * n;
  const obj = JSON.parse(body.subarray(start, start + j).toString());
  const json = Buffer.from(edit(obj) ?? JSON.stringify(obj));
  const head = Buffer.from(body.subarray(0, start));
  head.writeUInt32BE(json.length, 1);
  return Buffer.concat([head, json, body.subarray(start + j)]);
}

/** The ways a binary frame goes wrong; each takes a valid body, returns a bad one. */
const MUTATORS = {
  count_zero: (rng, b) => setU32(b, 5, 0),
  count_huge: (rng, b) => setU32(b, 5, rng.pick([65536, 0xffffffff, b.readUInt32BE(5) + 1])),
  count_less: (rng, b) => setU32(b, 5, Math.max(0, b.readUInt32BE(5) - 1)),
  json_length: (rng, b) => setU32(b, 1, rng.pick([0, b.readUInt32BE(1) + 1, b.readUInt32BE(1) - 1, 0xffffffff])),
  attachment_length: (rng, b) => setU32(b, 9 + 4 * rng.int(b.readUInt32BE(5)), rng.pick([0, 1, 0xffffffff, b.length])),
  truncated: (rng, b) => b.subarray(0, rng.int(b.length)),
  trailing: (rng, b) => Buffer.concat([b, rng.bytes(rng.range(1, 5))]),
  flipped: (rng, b) => {
    const out = Buffer.from(b);
    for (let i = rng.range(1, 4); i > 0; i--) out[1 + rng.int(out.length - 1)] ^= 1 << rng.int(8);
    return out;
  },
  no_paths: (rng, b) => withEnvelope(b, (o) => void delete o.attachments),
  path_missing: (rng, b) => withEnvelope(b, (o) => void o.attachments.pop()),
  path_extra: (rng, b) => withEnvelope(b, (o) => void o.attachments.push(['nowhere'])),
  path_twice: (rng, b) => withEnvelope(b, (o) => void (o.attachments[0] = o.attachments[o.attachments.length - 1])),
  path_nowhere: (rng, b) => withEnvelope(b, (o) => void (o.attachments[rng.int(o.attachments.length)] = rng.pick([['zz'], [0], [99], ['last', 0], [true], 'last', null]))),
  placeholder_filled: (rng, b) => withEnvelope(b, (o) => void (o.payload.last = rng.pick([1, 'x', {}, []]))),
  wrong_type: (rng, b) => withEnvelope(b, (o) => void (o.message_type = rng.pick(['subscribe', 'cancel', 'credit', 'bogus']))),
  bad_json: (rng, b) => withEnvelope(b, () => rng.pick(['{', '[]', 'null', '{"a":NaN}', '\u0000'])),
  garbage: (rng) => Buffer.concat([Buffer.from([0]), rng.bytes(rng.range(0, 40))])
};
const MUTATOR_NAMES = Object.keys(MUTATORS);

/** A copy of `b` with a u32 at `at` (when it fits). */
function setU32(b, at, value) {
  const out = Buffer.from(b);
  if (at + 4 <= out.length) out.writeUInt32BE(value, at);
  return out;
}

/** What decoding one body gives: 'ok', or the typed error's code. */
function decodeOutcome(body) {
  try {
    decodeBinaryFrame(body);
    return 'ok';
  } catch (err) {
    if (!(err instanceof IpcError) || !['bad_frame', 'bad_message'].includes(err.code)) throw err;
    return err.code;
  }
}

/** A client protocol open with `binary` granted. */
function openClient() {
  const proto = new ClientProtocol({ appId: 'fuzz', connectionId: 'c', features: ['cancel', 'streams', 'binary'] });
  const id = proto.connect();
  proto.dataToSend();
  const reply = buildMessage('response', 'fuzz', 'system', { status: 'connected', connection_id: 'c', protocol: 2, max_frame_size: LIMIT, features: ['binary'] }, { reply_to: id });
  for (const body of proto.receiveData(encodeFrame(encodeMessage(reply)), 0)) proto.receiveFrame(body);
  assert.equal(proto.state, 'open');
  return proto;
}

/** What a client makes of a stream of frames fed in `chunks`: one word per item. */
function clientOutcome(chunks) {
  const proto = openClient();
  const words = [];
  for (const chunk of chunks) {
    for (const body of proto.receiveData(chunk, 0)) {
      if (!proto.live) break;
      const item = proto.receiveFrame(body);
      if (item instanceof ProtocolViolation) words.push(`violation:${item.code}`);
      else if (item instanceof InvalidMessage) words.push(`invalid:${item.error.code}`);
      else if (item instanceof Event) words.push(item.constructor.name);
      else words.push('msg');
    }
    if (!proto.live) break;
  }
  if (proto.violation !== null && !words.includes(`violation:${proto.violation.code}`)) words.push(`violation:${proto.violation.code}`);
  return words.join(' ');
}

test('binary fuzz - every binary frame decodes or raises bad_frame or bad_message, whatever the split', { timeout: 60_000 }, () => {
  const rng = new Rng(SEED);
  const seen = new Set();
  const kinds = new Set();
  for (let i = 0; i < FRAMES; i++) {
    const bodies = [];
    for (let k = rng.range(1, 3); k > 0; k--) {
      const valid = validBody(rng);
      const kind = rng.chance(0.2) ? 'valid' : rng.pick(MUTATOR_NAMES);
      kinds.add(kind);
      bodies.push(kind === 'valid' ? valid : MUTATORS[kind](rng, valid));
    }
    const stream = Buffer.concat(bodies.flatMap((b) => (b.length === 0 ? [] : [prefix(b.length), b])));
    try {
      for (const body of bodies) if (body.length > 0) seen.add(decodeOutcome(body));
      const [whole, ...others] = splits(rng, stream).map((way) => clientOutcome(way.chunks)); // whole, byte by byte, random
      for (const other of others) assert.equal(other, whole);
    } catch (err) {
      err.message = `seed ${SEED}, frame ${i}: ${err.message}`;
      throw err;
    }
  }
  // The run reached every outcome and every mutation, so it tested something.
  assert.deepEqual([...seen].sort(), ['bad_frame', 'bad_message', 'ok']);
  assert.deepEqual([...kinds].sort(), [...MUTATOR_NAMES, 'valid'].sort());
});

test('binary fuzz - a frame claiming 65,535 attachments of 4 GiB is refused before anything is sliced', () => {
  const body = Buffer.alloc(9 + 4 * 65535);
  body.writeUInt32BE(0, 1);
  body.writeUInt32BE(65535, 5);
  for (let i = 0; i < 65535; i++) body.writeUInt32BE(0xffffffff, 9 + 4 * i);
  assert.equal(decodeOutcome(body), 'bad_frame');
});
