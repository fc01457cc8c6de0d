'use strict';

// An iterator payload (a generator) is read once, where the call takes it
// (docs/protocol.md §16.3): the offline queue measured it, then its replay
// encoded it again and sent what was left of it, [].

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, LoadBalancedClient } = require('..');
const { readOnce } = require('../lib/json_profile');
const { Peer, streamingPeer, until } = require('./helpers');

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

test('iterator payloads - a load-balanced failover sends the next server the same items', async (t) => {
  // a answers no_responders (a failover error, docs/resilience.md §8), b echoes: the retry on b
  // must carry the items read at the call, not the [] a second read of the generator gives.
  const a = new Peer({ onRequest: (msg, conn, reply) => reply(null, { error: { code: 'no_responders', message: `no handler or responder for '${msg.channel_id}'` } }) });
  const b = new Peer({ onRequest: (msg, conn, reply) => reply(msg.payload) });
  for (const peer of [a, b]) {
    await peer.listen();
    t.after(() => peer.close());
  }
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`], { healthCheckInterval: 60_000 });
  t.after(() => lb.close());
  await lb.start();
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(await lb.request('svc.items', items(0, 1, 2), 5000), [0, 1, 2]);
    assert.deepEqual(await lb.request('svc.items', [4, 5].values(), 5000), [4, 5]);
  }
  const tried = a.received.filter((m) => m.channel_id === 'svc.items');
  assert.ok(tried.length >= 1, 'a was tried first');
  assert.deepEqual(tried[0].payload, [0, 1, 2]);
});
