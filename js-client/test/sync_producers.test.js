'use strict';

// A sync generator responder (`function*`, or a handler returning a
// generator object) streams as an `async function*` does (docs/protocol.md
// §15.3, §15.6), as Python's plain generators do: pulled only within
// credit, closed by a cancel (return(), its `finally` runs), closed with
// handler_error on an item that cannot be sent, its throw the stream's
// error. An array is still a value. Against a scripted peer; across
// languages: interop-tests/test_js_streams.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { streamingPeer, connectedClient, nextReceived, until, settle } = require('./helpers');

const connected = (t, peer, options = {}) => connectedClient(t, peer, { reconnect: false, ...options });

function send(peer, msg) {
  [...peer.sockets][0].write(encodeFrame(encodeMessage(msg)));
}

/** The request's answers of `type` the peer got, their payloads. */
function answers(peer, request, type = 'stream_item') {
  return peer.received.filter((m) => m.reply_to === request.message_id && m.message_type === type).map((m) => m.payload);
}

test('sync producers - a function* sends only what its credit allows, and a cancel closes it', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  let pulled = 0;
  let closed = null;
  await client.serve('ticks', function* (msg, ctx) {
    try {
      for (;;) yield ++pulled;
    } finally {
      closed = ctx.signal.reason?.code ?? 'not aborted';
    }
  });
  const request = buildMessage('request', 'app', 'ticks', null, { window: 3, timeout_ms: 5000 });
  send(peer, request);
  await until(() => answers(peer, request).length === 3);
  await client.system('ping').catch(() => {});
  await settle();
  assert.equal(answers(peer, request).length, 3); // no credit, no item
  assert.ok(pulled <= 4, `pulled ${pulled}`);
  send(peer, buildMessage('credit', 'app', 'ticks', null, { reply_to: request.message_id, window: 2 }));
  await until(() => answers(peer, request).length === 5);
  send(peer, buildMessage('cancel', 'app', 'ticks', { reason: 'cancelled' }, { reply_to: request.message_id }));
  await until(() => closed !== null, 5000, 'the generator closed');
  assert.equal(closed, 'cancelled');
  assert.deepEqual(answers(peer, request), [1, 2, 3, 4, 5]);
  assert.equal(client._producers.running.size, 0);
});

test('sync producers - a returned generator object streams to its end; a throw ends it with the error', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  function* letters(n) {
    for (let i = 0; i < n; i++) yield String.fromCharCode(97 + i);
    yield Promise.resolve('awaited'); // as `for await` takes a sync generator
  }
  await client.serve('letters', (msg) => letters(msg.payload));
  await client.serve('failing', function* () {
    yield 'ok';
    throw new RangeError('no more');
  });
  const request = buildMessage('request', 'app', 'letters', 3, { window: 8 });
  send(peer, request);
  await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'stream_end');
  assert.deepEqual(answers(peer, request), ['a', 'b', 'c', 'awaited']);
  const failing = buildMessage('request', 'app', 'failing', null, { window: 8 });
  send(peer, failing);
  const error = await nextReceived(peer, (m) => m.reply_to === failing.message_id && m.message_type === 'response');
  assert.deepEqual([error.error.code, error.error.remote_type, error.error.message], ['handler_error', 'RangeError', 'no more']);
  assert.deepEqual(answers(peer, failing), ['ok']);
});

test('sync producers - an item that cannot be sent fails the stream handler_error and closes the generator', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  let closed = false;
  await client.serve('bigint', function* () {
    try {
      yield 1;
      yield 10n;
      yield 3;
    } finally {
      closed = true;
    }
  });
  const request = buildMessage('request', 'app', 'bigint', null, { window: 8 });
  send(peer, request);
  const error = await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'response');
  assert.equal(error.error.code, 'handler_error');
  assert.match(error.error.message, /^an item of the stream cannot be sent: /);
  assert.deepEqual(answers(peer, request), [1]);
  await until(() => closed, 5000, 'the generator closed');
});

test('sync producers - a plain request to a function* is told to stream; an array is still a value', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  let started = false;
  await client.serve('gen', function* () {
    started = true;
    yield 1;
  });
  await client.serve('list', () => [1, 2, 3]);
  const plain = buildMessage('request', 'app', 'gen', null, { timeout_ms: 5000 });
  send(peer, plain);
  const refused = await nextReceived(peer, (m) => m.reply_to === plain.message_id);
  assert.equal(refused.error.code, 'bad_request');
  assert.match(refused.error.message, /streams its answer: call stream\(\)/);
  assert.equal(started, false);
  const list = buildMessage('request', 'app', 'list', null, { window: 8 });
  send(peer, list);
  const answer = await nextReceived(peer, (m) => m.reply_to === list.message_id);
  assert.equal(answer.message_type, 'response');
  assert.deepEqual(answer.payload, [1, 2, 3]);
});
