'use strict';

// A Node streaming responder's edges (docs/protocol.md §15.3, §15.4) against a
// scripted peer: an item that cannot be sent, a cancel while the generator
// awaits. The common paths are in streams.test.js.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { streamingPeer, connectedClient, nextReceived, until } = require('./helpers');

const connected = (t, peer, options = {}) => connectedClient(t, peer, { reconnect: false, ...options });


function send(peer, msg) {
  [...peer.sockets][0].write(encodeFrame(encodeMessage(msg)));
}

test('stream producers - an item that cannot be sent fails the stream handler_error and closes the generator', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxFrameSize: 2000 });
  const closed = [];
  for (const [channel, bad] of [['bigint', 10n], ['large', 'x'.repeat(5000)]]) {
    await client.serve(channel, async function* () {
      try {
        yield 1;
        yield bad;
        yield 3;
      } finally {
        closed.push(channel);
      }
    });
    const request = buildMessage('request', 'app', channel, null, { window: 8 });
    send(peer, request);
    const error = await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'response');
    assert.equal(error.error.code, 'handler_error');
    assert.match(error.error.message, /^an item of the stream cannot be sent: /);
    const items = peer.received.filter((m) => m.reply_to === request.message_id && m.message_type === 'stream_item');
    assert.deepEqual(items.map((m) => m.payload), [1]);
    await until(() => closed.includes(channel), 5000, `the ${channel} generator closed`);
  }
  assert.equal(client._producers.running.size, 0);
});

test('stream producers - a cancel while the generator awaits frees its handler slot at once, and closes it later', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxConcurrentHandlers: 1 });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  let closed = false;
  await client.serve('hang', async function* () {
    try {
      yield 'first';
      await gate; // ignores ctx.signal
      yield 'second';
    } finally {
      closed = true;
    }
  });
  await client.serve('echo', (msg) => msg.payload);
  const request = buildMessage('request', 'app', 'hang', null, { window: 4 });
  send(peer, request);
  await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'stream_item');
  send(peer, buildMessage('cancel', 'app', 'hang', { reason: 'cancelled' }, { reply_to: request.message_id }));
  const echo = buildMessage('request', 'app', 'echo', 'hi', { timeout_ms: 5000 });
  send(peer, echo);
  const answer = await nextReceived(peer, (m) => m.reply_to === echo.message_id); // the slot is free again
  assert.equal(answer.payload, 'hi');
  assert.equal(client._producers.detached, 1);
  assert.equal(client.getMetrics().producersDetached, 1); // Node only: Python's producer task is cancelled instead
  assert.equal(closed, false);
  release();
  await until(() => closed, 5000, 'the generator closed once its next() settled');
  const items = peer.received.filter((m) => m.reply_to === request.message_id);
  assert.deepEqual(items.map((m) => m.payload), ['first']);
});
