'use strict';

// A bounded, seeded fuzz of the three Node decoders, the twin of the
// Python core's hypothesis tests (tests/test_core_framing.py,
// test_core_envelope.py, test_protocol_server.py). Random and mutated
// streams (bench/node/fuzz_frames.js) go whole, byte by byte and in random
// chunks to lib/framing.js, lib/envelope.js and the client protocol; the
// invariant (bench/node/fuzz_targets.js): each input decodes or raises an
// IpcError with a documented code, never anything else, and the split never
// changes the outcome. A failure names its seed: rerun with FUZZ_SEED=...
// The long run is bench/fuzz.py (bench/README.md, "Fuzzing").

const test = require('node:test');
const assert = require('node:assert/strict');
const { Rng, MUTATOR_NAMES, randomStream, splits, withRawPayload, connectReply, prefix } = require('../../bench/node/fuzz_frames');
const { checkStream, envelopeOutcome, clientOutcome, framingOutcome } = require('../../bench/node/fuzz_targets');
const { decodeMessage } = require('../lib/envelope');
const { FrameError } = require('../lib/errors');
const { ClientProtocol } = require('../lib/protocol/client_protocol');
const { ProtocolViolation } = require('../lib/protocol/protocol');

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed16);
const STREAMS = 1500;
const LIMITS = [1024, 65536, 16 * 1024 * 1024];

/** A body as its frame. */
function frame(body) {
  const bytes = Buffer.from(body);
  return Buffer.concat([prefix(bytes.length), bytes]);
}

test('fuzz - every decoder decodes or raises a documented error, whatever the split', { timeout: 60_000 }, () => {
  const rng = new Rng(SEED);
  const seen = { framing: new Set(), envelope: new Set(), client: new Set(), kinds: new Set() };
  for (let i = 0; i < STREAMS; i++) {
    const maxFrameSize = rng.pick(LIMITS);
    const stream = randomStream(rng, { maxFrameSize, handshake: rng.chance(0.8) });
    let outcome;
    try {
      outcome = checkStream(stream, splits(rng, stream.bytes), maxFrameSize);
    } catch (err) {
      err.message = `seed ${SEED}, stream ${i} (${stream.kinds.join(',')}): ${err.message}`;
      throw err;
    }
    seen.framing.add(outcome.framing);
    for (const verdict of outcome.envelope) seen.envelope.add(verdict);
    for (const word of outcome.client.split(' ')) seen.client.add(word.split(':')[0]);
    for (const kind of stream.kinds) seen.kinds.add(kind.split(':')[0]);
  }
  // The run reached every outcome, so it tested something.
  assert.deepEqual([...seen.framing].sort(), ['bad_frame', 'ok', 'too_large']);
  for (const verdict of ['bad_frame', 'bad_message', 'ok']) assert.ok(seen.envelope.has(verdict), verdict);
  for (const word of ['connected', 'msg', 'invalid', 'violation', 'refused', 'state']) assert.ok(seen.client.has(word), word);
  for (const kind of [...MUTATOR_NAMES, 'valid', 'prefix', 'garbage', 'unfinished']) assert.ok(seen.kinds.has(kind), kind);
});

test('fuzz - JSON nested past the stack is bad_frame, not a RangeError', () => {
  // JSON.parse nests as deep as the text; the checks after it recurse (§1.1).
  const rng = new Rng(SEED);
  for (const depth of [20_000, 200_000]) {
    for (const [open, close] of [['[', ']'], ['{"k":', '}']]) {
      const body = Buffer.from(withRawPayload(rng, `${open.repeat(depth)}1${close.repeat(depth)}`));
      assert.throws(() => decodeMessage(body), (err) => err instanceof FrameError && err.code === 'bad_frame');
      assert.equal(envelopeOutcome(body), 'bad_frame');
    }
  }
});

test('fuzz - a client fed deep JSON after its handshake reports bad_frame instead of throwing', () => {
  const rng = new Rng(SEED);
  const proto = new ClientProtocol({ appId: 'fuzz', connectionId: 'c1' });
  proto.connect();
  const deep = withRawPayload(rng, `${'['.repeat(100_000)}${']'.repeat(100_000)}`);
  const items = [];
  const reply = { ...connectReply(rng), payload: { status: 'connected', connection_id: 'c1', protocol: 2, max_frame_size: 16 * 1024 * 1024 } };
  for (const body of proto.receiveData(Buffer.concat([frame(JSON.stringify(reply)), frame(deep)]), 0)) {
    items.push(proto.receiveFrame(body));
  }
  assert.ok(items[1] instanceof ProtocolViolation);
  assert.equal(items[1].code, 'bad_frame');
  assert.equal(proto.state, 'error');
});

test('fuzz - the frame limit the handshake lowered holds for frames read with its reply', () => {
  // §1 item 2: any split of the stream gives the same outcome. The reply
  // lowers the limit to 1024; a larger frame in the same read as the reply
  // was split off under the old limit, and is too_large all the same.
  const reply = { ...connectReply(new Rng(1)), payload: { status: 'connected', connection_id: 'c1', protocol: 2, max_frame_size: 1024 } };
  const big = { message_id: 'm1', app_id: 'fuzz', channel_id: 'x', message_type: 'publish', payload: 'x'.repeat(2000) };
  const stream = Buffer.concat([frame(JSON.stringify(reply)), frame(JSON.stringify(big))]);
  const together = clientOutcome([stream], 65536);
  const apart = clientOutcome([stream.subarray(0, 4 + JSON.stringify(reply).length), stream.subarray(4 + JSON.stringify(reply).length)], 65536);
  assert.equal(apart, 'connected violation:too_large state:error');
  assert.equal(together, apart);
  // The same for a frame still coming: its prefix was read under the old
  // limit, the next read meets the new one.
  const coming = stream.subarray(0, stream.length - 10);
  assert.equal(clientOutcome([coming], 65536), 'connected violation:too_large state:error');
});

test('fuzz - framing: a zero or huge prefix after frames in the same read still yields the frames first', () => {
  const body = '{"message_id":"a","app_id":"a","channel_id":"c","message_type":"publish"}';
  for (const bad of [prefix(0), prefix(2 ** 32 - 1)]) {
    const stream = Buffer.concat([frame(body), frame(body), bad]);
    const whole = framingOutcome([stream], 1024);
    assert.equal(whole.bodies.length, 2);
    assert.ok(['bad_frame', 'too_large'].includes(whole.error));
  }
});
