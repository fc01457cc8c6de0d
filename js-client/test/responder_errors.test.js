'use strict';

// What a Node handler throws always becomes an answer (docs/protocol.md
// §6.3), against a scripted peer: a value with no string form
// (`Object.create(null)`, a getter that throws) is handler_error, in a plain
// handler, an async one and a stream's generator, and a subscription
// handler's is one warning (a HandlerError, the value its cause), never a
// crash of the process; an error that cannot be sent as it is (a lone
// surrogate, details JSON cannot carry, over the frame limit) is sent made
// sendable, as the Python side sends it (tests/test_errors_unsendable.py).
// Across languages: interop-tests/test_js_handler_errors.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { sendableError } = require('../lib/replies');
const { ForbiddenError, RemoteError } = require('..');
const { streamingPeer, connectedClient, nextReceived, until, captureWarnings } = require('./helpers');

const connected = (t, peer, options = {}) => connectedClient(t, peer, { reconnect: false, ...options });

function send(peer, msg) {
  [...peer.sockets][0].write(encodeFrame(encodeMessage(msg)));
}

/**
 * Fails the test on an uncaught exception or an unhandled rejection (the
 * process would have died, or warned) while it runs.
 * @param {import('node:test').TestContext} t
 * @returns {unknown[]}
 */
function watchCrashes(t) {
  const seen = [];
  const listener = (reason) => seen.push(reason);
  process.on('unhandledRejection', listener);
  process.on('uncaughtException', listener);
  t.after(() => {
    process.off('unhandledRejection', listener);
    process.off('uncaughtException', listener);
  });
  return seen;
}

/** Sends a request for `channel` and resolves its answer (the first response to it). */
async function ask(peer, channel, extra = { timeout_ms: 5000 }) {
  const request = buildMessage('request', 'app', channel, null, extra);
  send(peer, request);
  return nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'response');
}

/** An Error whose `message` getter throws. */
function unreadableError() {
  const err = new Error('x');
  Object.defineProperty(err, 'message', {
    get() {
      throw new Error('boom');
    }
  });
  return err;
}

test('responder errors - a thrown value with no string form is handler_error, sync, async or mid-stream', async (t) => {
  const crashes = watchCrashes(t);
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  await client.serve('sync', () => {
    throw Object.create(null);
  });
  await client.serve('async', async () => {
    throw Object.create(null);
  });
  await client.serve('getter', () => {
    throw unreadableError();
  });
  await client.serve('gen', async function* () {
    yield 1;
    throw Object.create(null);
  });
  for (const channel of ['sync', 'async']) {
    const answer = await ask(peer, channel);
    assert.deepEqual(answer.error, { code: 'handler_error', message: '[object Object]', remote_type: 'object' }, channel);
  }
  assert.deepEqual((await ask(peer, 'getter')).error, { code: 'handler_error', message: '<unprintable Error object>', remote_type: 'Error' });
  const streamed = await ask(peer, 'gen', { window: 8 });
  assert.deepEqual(streamed.error, { code: 'handler_error', message: '[object Object]', remote_type: 'object' });
  assert.equal(client.state, 'connected');
  assert.deepEqual(crashes, []);
});

test('responder errors - a subscription handler throwing a value with no string form, no error listener: one warning', async (t) => {
  const crashes = watchCrashes(t);
  const warnings = captureWarnings(t);
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const thrown = Object.create(null);
  await client.subscribe('feed', () => {
    throw thrown;
  });
  await client.subscribe('feed2', async () => {
    throw unreadableError();
  });
  await client.serve('alive', () => 'alive');
  send(peer, buildMessage('publish', 'app', 'feed', 1));
  send(peer, buildMessage('publish', 'app', 'feed2', 2));
  const ours = () => warnings.filter((w) => w.code === 'IPC_UNHANDLED_ERROR');
  await until(() => ours().length === 2, 5000, 'two warnings');
  // a value that is not an Error is warned as the HandlerError 'error' would get, the value its cause
  const byCause = new Map(ours().map((w) => [w.cause.cause === thrown ? 'null' : 'getter', w.message]));
  assert.match(byCause.get('null'), /HandlerError \(handler_error\): \[object Object\] \(no 'error' listener/);
  assert.match(byCause.get('getter'), /Error: <unprintable Error object>/);
  assert.equal((await ask(peer, 'alive')).payload, 'alive');
  assert.deepEqual(crashes, []);
});

test('responder errors - an error that cannot be sent as it is is still answered, made sendable as Python makes it', async (t) => {
  const crashes = watchCrashes(t);
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxFrameSize: 2000 });
  const cyclic = {};
  cyclic.self = cyclic;
  const handlers = {
    surrogate: () => {
      throw new Error('bad \ud800 text');
    },
    surrogateAsync: async () => {
      throw new TypeError('bad \udc00 text \u{1F600}'); // a pair is fine
    },
    bigintDetails: () => {
      throw new ForbiddenError('m', { details: { n: 10n } });
    },
    cyclicDetails: async () => {
      throw new ForbiddenError('m', { details: cyclic });
    },
    huge: () => {
      throw new RangeError('x'.repeat(5000));
    },
    surrogateCode: () => {
      throw new RemoteError('my\ud800code', 'odd code');
    }
  };
  for (const [channel, handler] of Object.entries(handlers)) await client.serve(channel, handler);
  await client.serve('stream', async function* () {
    yield 1;
    throw new Error('bad \ud800');
  });
  const error = async (channel, extra) => (await ask(peer, channel, extra)).error;
  // a lone surrogate escaped as text, as Python's backslashreplace writes it; the code and type kept
  assert.deepEqual(await error('surrogate'), { code: 'handler_error', message: 'bad \\ud800 text', remote_type: 'Error' });
  assert.deepEqual(await error('surrogateAsync'), { code: 'handler_error', message: 'bad \\udc00 text \u{1F600}', remote_type: 'TypeError' });
  assert.deepEqual(await error('surrogateCode'), { code: 'my\\ud800code', message: 'odd code', remote_type: 'RemoteError' });
  assert.deepEqual(await error('bigintDetails'), {
    code: 'forbidden',
    message: 'm (its details were not sent: error.details is not JSON serialisable: Do not know how to serialize a BigInt)',
    remote_type: 'ForbiddenError'
  });
  const cycle = await error('cyclicDetails');
  assert.equal(cycle.code, 'forbidden');
  assert.equal(cycle.details, undefined);
  assert.match(cycle.message, /^m \(its details were not sent: error\.details is not JSON serialisable: Converting circular structure to JSON\)$/);
  const huge = await error('huge');
  assert.equal(huge.code, 'handler_error');
  assert.equal(huge.remote_type, 'RangeError');
  assert.match(huge.message, /^x{1000,} \[cut to fit the frame limit\]$/);
  assert.ok(huge.message.length < 2000);
  assert.deepEqual(await error('stream', { window: 4 }), { code: 'handler_error', message: 'bad \\ud800', remote_type: 'Error' });
  assert.deepEqual(crashes, []);
});

test('responder errors - with exposeStacks, an error over the frame limit has its stack cut first, then its message', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxFrameSize: 3000, exposeStacks: true });
  await client.serve('small', () => {
    throw new RangeError('y'.repeat(500)); // the stack repeats the message: 1000+ bytes with it
  });
  await client.serve('large', () => {
    throw new RangeError('y'.repeat(5000));
  });
  const small = (await ask(peer, 'small')).error;
  assert.equal(small.message, 'y'.repeat(500));
  assert.ok(small.remote_stack.startsWith(`RangeError: ${'y'.repeat(500)}`));
  const large = (await ask(peer, 'large')).error;
  assert.equal(large.code, 'handler_error');
  assert.equal(large.remote_stack, ''); // nothing of it fits
  assert.match(large.message, /^y+ \[cut to fit the frame limit\]$/);
});

test('responder errors - sendableError: text the wire carries, details JSON can carry, what fits', () => {
  const error = { code: 'forbidden', message: 'a\ud800', remote_type: 'X\udfff', details: { ok: [1, 2] }, remote_stack: 'S\ud800' };
  assert.deepEqual(sendableError(error, 0), { code: 'forbidden', message: 'a\\ud800', remote_type: 'X\\udfff', details: { ok: [1, 2] }, remote_stack: 'S\\ud800' });
  assert.deepEqual(sendableError({ code: 'c', message: 'm', details: NaN }, 0), { code: 'c', message: 'm (its details were not sent: NaN is not valid JSON)' });
  assert.equal(sendableError({ code: 5, message: 'm' }, 0).code, 'handler_error'); // a code that is no string
  // over the limit: the stack goes first, then the details, then the message is cut
  const big = { code: 'c', message: 'm'.repeat(1000), details: { d: 'd'.repeat(1000) }, remote_stack: 's'.repeat(1000) };
  const stackOnly = sendableError(big, 500);
  assert.equal(stackOnly.message, big.message);
  assert.deepEqual(stackOnly.details, big.details);
  assert.ok(stackOnly.remote_stack.length < 500 && stackOnly.remote_stack.endsWith('[cut to fit the frame limit]'));
  const all = sendableError(big, 2500);
  assert.equal(all.remote_stack, '');
  assert.equal(all.details, undefined);
  assert.ok(all.message.length < 1000 && all.message.endsWith('[cut to fit the frame limit]'), all.message);
  // a cut never splits a surrogate pair
  const pairs = sendableError({ code: 'c', message: '\u{1F600}'.repeat(500) }, 1000).message;
  assert.doesNotMatch(pairs, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
});
