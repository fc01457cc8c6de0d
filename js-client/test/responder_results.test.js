'use strict';

// A plain (non-stream) Node responder whose result cannot be sent (docs/protocol.md
// §6.3) against a scripted peer: the handler's failure, handler_error, as
// the Python client answers, not bad_message nor the responder's own too_large.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { streamingPeer, connectedClient, nextReceived } = require('./helpers');

test('responder results - a result that cannot be encoded or is over maxFrameSize is handler_error', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connectedClient(t, peer, { reconnect: false, maxFrameSize: 2000 });
  const cases = [
    ['bigint', () => ({ n: 10n }), 'MessageError'],
    ['large', async () => 'x'.repeat(5000), 'FrameTooLargeError'],
    ['map', () => new Map([['a', 1]]), 'MessageError'], // JSON would write {}: its data lost (as Python refuses a set)
    ['set', async () => ({ tags: new Set(['a']) }), 'MessageError']
  ];
  for (const [channel, handler, remoteType] of cases) {
    await client.serve(channel, handler);
    const request = buildMessage('request', 'app', channel, null, { timeout_ms: 5000 });
    [...peer.sockets][0].write(encodeFrame(encodeMessage(request)));
    const answer = await nextReceived(peer, (m) => m.reply_to === request.message_id);
    assert.equal(answer.error.code, 'handler_error', channel);
    assert.equal(answer.error.remote_type, remoteType);
    assert.ok(answer.error.message.length > 0);
    assert.equal(answer.payload, null);
  }
});
