'use strict';

// What a Node handler throws always becomes an answer (docs/protocol.md
// §6.3), against a scripted peer: a value with no string form
// (`Object.create(null)`, a getter that throws) is handler_error, in a plain
// handler, an async one and a stream's generator, and a subscription
// handler's is one warning, never a crash of the process. Across languages:
// interop-tests/test_js_handler_errors.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
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
  assert.deepEqual((await ask(peer, 'getter')).error, { code: 'handler_error', message: '<the error has no readable message>', remote_type: 'Error' });
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
  const byCause = new Map(ours().map((w) => [w.cause === thrown ? 'null' : 'getter', w.message]));
  assert.match(byCause.get('null'), /\[object Object\] \(no 'error' listener/);
  assert.match(byCause.get('getter'), /Error: <the error has no readable message>/);
  assert.equal((await ask(peer, 'alive')).payload, 'alive');
  assert.deepEqual(crashes, []);
});
