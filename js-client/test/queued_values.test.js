'use strict';

// A call written later than it is made sends its payload as it was at the
// call (docs/protocol.md §16.3): an object or array the caller changes once a
// queued call has settled, or while a keyed request waits for its resend or
// a request waits for a full send buffer, is sent as it was, not as it is by
// then. Python's twin: tests/test_queued_values.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient } = require('..');
const { snapshot } = require('../lib/protocol/attachments');
const { FaultProxy } = require('./fault_proxy');
const { offlineClient } = require('./proxied');
const { Peer, nextReceived, peerAndClient, until } = require('./helpers');

const BODY = 'x'.repeat(256 * 1024);

/** A peer answering requests with what they carried. */
async function echoPeer(t, onRequest = (msg, conn, reply) => reply({ got: msg.payload })) {
  const peer = new Peer({ onRequest });
  await peer.listen();
  t.after(() => peer.close());
  return peer;
}

test('queued values - a queued notify and publish send their values as they were when they settled', async (t) => {
  const peer = await echoPeer(t);
  const { proxy, client } = await offlineClient(t, peer);
  const note = { n: { a: 1 }, l: [1, 2] };
  const items = [{ i: 0 }];
  await client.notify('sink', note);
  await client.publish('news', items);
  assert.equal(client.queueStats().size, 2);
  note.n.a = 2; // both calls have settled: the caller changes its objects
  note.l.push(3);
  note.added = true;
  items[0].i = 9;
  items.push({ i: 1 });
  const published = nextReceived(peer, (m) => m.channel_id === 'news');
  proxy.refuse(false);
  await published;
  const got = peer.received.filter((m) => m.channel_id === 'sink' || m.channel_id === 'news').map((m) => m.payload);
  // Before: { n: { a: 2 }, l: [1, 2, 3], added: true } and [{ i: 9 }, { i: 1 }], as they were at the replay.
  assert.deepEqual(got, [{ n: { a: 1 }, l: [1, 2] }, [{ i: 0 }]]);
});

test('queued values - a queued request sends its values as they were at the call', async (t) => {
  const peer = await echoPeer(t);
  const { proxy, client } = await offlineClient(t, peer);
  const payload = { n: { a: 1 } };
  const answer = client.request('echo', payload);
  await until(() => client.queueStats().size === 1, 2000, 'the request queued');
  payload.n.a = 2;
  proxy.refuse(false);
  assert.deepEqual(await answer, { got: { n: { a: 1 } } });
});

test('queued values - a keyed request resent after a loss sends its values as they were at the call', async (t) => {
  let attempts = 0;
  const peer = await echoPeer(t, (msg, conn, reply) => ++attempts === 2 && reply({ got: msg.payload })); // the first is lost
  const proxy = await new FaultProxy('127.0.0.1', peer.port).start();
  t.after(() => proxy.close());
  const client = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, initialDelay: 10, maxDelay: 50, requestTimeout: 10_000 });
  t.after(() => client.disconnect());
  await client.connect();
  const payload = { job: { step: 1 }, tags: ['a'] };
  const first = nextReceived(peer, (m) => m.channel_id === 'jobs');
  const answer = client.request('jobs', payload, { idempotencyKey: 'job-1' });
  await first;
  payload.job.step = 2;
  payload.tags.push('b');
  const resent = nextReceived(peer, (m) => m.channel_id === 'jobs');
  proxy.cut();
  // Before: the resend carried { job: { step: 2 }, tags: ['a', 'b'] } (a server refuses the key for another payload).
  assert.deepEqual((await resent).payload, { job: { step: 1 }, tags: ['a'] });
  assert.deepEqual(await answer, { got: { job: { step: 1 }, tags: ['a'] } });
});

test('queued values - requests that wait for a full send buffer send their values as they were at the call', async (t) => {
  const { peer, client } = await peerAndClient(t, { onRequest: (msg, conn, reply) => reply('ok') });
  await client.connect();
  const socket = [...peer.sockets][0];
  socket.pause(); // it reads no more: the client's socket fills up
  for (let i = 0; i < 400 && !client._conn.needsDrain; i++) client.publish('bp', { i, body: BODY }).catch(() => {});
  assert.ok(client._conn.needsDrain, 'the buffer never filled up');
  const plain = { n: { a: 1 } };
  const keyed = { n: { a: 1 } };
  const calls = [client.request('bp.plain', plain, 10_000), client.request('bp.keyed', keyed, { timeout: 10_000, idempotencyKey: 'k' })];
  await until(() => client._calls.line !== null && client._calls.line.waiting.size >= 2, 2000, 'both requests waiting');
  plain.n.a = 2; // the calls were made: encoded (measured) already
  keyed.n.a = 2;
  socket.resume();
  assert.deepEqual(await Promise.all(calls), ['ok', 'ok']);
  const sent = Object.fromEntries(peer.received.filter((m) => m.channel_id.startsWith('bp.')).map((m) => [m.channel_id, m.payload]));
  // Before: each was encoded again at its turn, { n: { a: 2 } } sent.
  assert.deepEqual(sent, { 'bp.plain': { n: { a: 1 } }, 'bp.keyed': { n: { a: 1 } } });
});

test('queued values - a snapshot is the payload as the encoder writes it', () => {
  const small = Buffer.from('ab');
  const date = new Date(0);
  const payload = { a: small, l: [1, new Uint8Array([7])], d: { x: [1.5, null], when: date, gone: undefined }, it: [1, 2].values() };
  const out = snapshot(payload);
  small.fill(0x5a);
  payload.d.x.push(3);
  assert.deepEqual(out, { a: Buffer.from('ab'), l: [1, Buffer.from([7])], d: { x: [1.5, null], when: '1970-01-01T00:00:00.000Z' }, it: [1, 2] });
  assert.ok(Buffer.isBuffer(payload.a) && payload.a === small); // the caller's payload is not changed
  const large = Buffer.alloc(70 * 1024);
  assert.equal(snapshot({ large }, 64 * 1024).large.buffer, large.buffer); // at or past `below` in all: not copied
  assert.notEqual(snapshot({ large }).large.buffer, large.buffer);
  const plain = { x: [1, 's'] };
  const copy = snapshot(plain);
  assert.deepEqual(copy, plain);
  assert.ok(copy !== plain && copy.x !== plain.x);
  assert.deepEqual(snapshot(Buffer.from('z')), Buffer.from('z'));
  assert.equal(snapshot('s'), 's');
  assert.equal(snapshot(null), null);
  assert.throws(() => snapshot({ n: NaN }), { name: 'MessageError' });
});
