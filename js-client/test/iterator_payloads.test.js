'use strict';

// An iterator payload (a generator) is read once, where the call takes it
// (docs/protocol.md §16.3): the offline queue measured it, then its replay
// encoded it again and sent what was left of it, [].

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient } = require('..');
const { readOnce } = require('../lib/json_profile');
const { streamingPeer, until } = require('./helpers');

function* items(...xs) {
  yield* xs;
}

test('readOnce - an iterator becomes its items; anything else stays as it is', () => {
  const obj = { a: 1 };
  assert.equal(readOnce(obj), obj);
  assert.equal(readOnce(null), null);
  const arr = [1];
  assert.equal(readOnce(arr), arr);
  assert.deepEqual(readOnce(items(1, 2)), [1, 2]);
  assert.deepEqual(readOnce([3, 4].values()), [3, 4]);
  const withNext = { next: () => 1, [Symbol.iterator]: () => null, x: 1 }; // more than an iterator: written as an object
  assert.equal(readOnce(withNext), withNext);
});

test('iterator payloads - queued while connecting, the request and the publish send their items', async (t) => {
  let accept;
  const hold = new Promise((resolve) => (accept = resolve));
  const peer = await streamingPeer(t, { hold, onRequest: (msg, conn, reply) => reply(msg.payload) });
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port });
  t.after(() => client.disconnect());
  const connecting = client.connect();
  await until(() => peer.received.some((m) => m.channel_id === 'system'), 5000, 'the handshake');
  const answer = client.request('echo', items(1, 2, 3), 5000);
  const published = client.publish('pub', items(4, 5));
  await until(() => client._outbox.queue.size === 2, 5000, 'both queued');
  accept();
  await connecting;
  assert.deepEqual(await answer, [1, 2, 3]);
  await published;
  const isPub = (m) => m.message_type === 'publish';
  await until(() => peer.received.some(isPub), 5000, 'the publish');
  const pub = peer.received.find(isPub);
  assert.deepEqual(pub.payload, [4, 5]);
});

test('iterator payloads - a coalesced and a cached request send their items', async (t) => {
  const peer = await streamingPeer(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, reconnect: false });
  t.after(() => client.disconnect());
  await client.connect();
  assert.deepEqual(await client.request('echo', items(1, 2), 5000, { coalesce: true }), [1, 2]);
  assert.deepEqual(await client.request('echo', items(3), 5000, { cacheTtl: 10_000 }), [3]);
  assert.deepEqual(await client.request('echo', [], 5000, { cacheTtl: 10_000 }), []);
});
