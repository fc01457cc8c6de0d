'use strict';

// Binary payloads through the client API against a scripted peer on a real
// socket (docs/protocol.md §16): requests and their answers, served
// handlers' results, publish and notify, subscriptions, streams both ways,
// the pool, load-balanced and service clients, the offline queue and its
// file, a server without `binary`, and the frame limit. Across languages,
// against the real Python server: interop-tests/test_js_binary.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { IPCClient, LoadBalancedClient, ServiceClient, ErrorCode, ConnectionLostError, MessageError } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { encodeOutgoing } = require('../lib/protocol/attachments');
const { FaultProxy } = require('./fault_proxy');
const { offlineClient } = require('./proxied');
const { Peer, nextReceived, until, waitFor } = require('./helpers');

const ALL = ['cancel', 'streams', 'binary'];

/**
 * A peer that grants `features` and echoes requests on `echo` (the payload
 * back, bytes as bytes); `onRequest` takes the others.
 */
async function binaryPeer(t, { features = ALL, maxFrameSize = 1 << 24, onRequest } = {}) {
  const peer = new Peer({
    maxFrameSize,
    onRequest: (msg, conn, reply) => (msg.channel_id === 'echo' ? reply({ got: msg.payload }) : onRequest?.(msg, conn, reply)),
    onConnect: (msg, conn) => {
      const payload = { status: 'connected', connection_id: msg.payload.connection_id, protocol: 2, server: 'test-peer/0', heartbeat_interval_ms: 15000, max_frame_size: maxFrameSize };
      if (features !== null) payload.features = features;
      conn.send(buildMessage('response', msg.app_id, 'system', payload, { reply_to: msg.message_id }));
      return true;
    }
  });
  await peer.listen();
  t.after(() => peer.close());
  return peer;
}

async function connected(t, peer, options = {}) {
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, reconnect: false, ...options });
  await client.connect();
  t.after(() => client.disconnect());
  return client;
}

/** Sends `msg` to the client from the peer's only connection (bytes as a binary frame). */
function sendFromPeer(peer, msg) {
  const frame = encodeOutgoing(msg, { legacy: false, features: new Set(['binary']), sendLimit: 2 ** 32 - 1 });
  [...peer.sockets][0].write(Buffer.concat([frame].flat()));
}

const PAYLOAD = () => ({ img: Buffer.from([0x89, 0x50, 0x4e, 0x47]), parts: [new Uint8Array([1, 2]), { raw: new Uint8Array([3]).buffer }], empty: Buffer.alloc(0), name: 'x.png' });
const RECEIVED = { img: Buffer.from([0x89, 0x50, 0x4e, 0x47]), parts: [Buffer.from([1, 2]), { raw: Buffer.from([3]) }], empty: Buffer.alloc(0), name: 'x.png' };

test('binary client - request and sendRequest carry bytes both ways, and the connect asked for binary', async (t) => {
  const peer = await binaryPeer(t);
  const client = await connected(t, peer);
  assert.ok(client._conn.features.has('binary'));
  assert.deepEqual(await client.request('echo', PAYLOAD()), { got: RECEIVED });
  const reply = await client.sendRequest('echo', Buffer.from('whole'));
  assert.ok(Buffer.isBuffer(reply.payload.got));
  assert.deepEqual(reply.payload.got, Buffer.from('whole'));
  const seen = peer.received.filter((m) => m.channel_id === 'echo');
  assert.deepEqual(seen[0].payload, RECEIVED); // it travelled as bytes, not as JSON
});

test('binary client - a served handler answers with bytes, and gets the request\'s as Buffers', async (t) => {
  const peer = await binaryPeer(t);
  const client = await connected(t, peer);
  let got = null;
  await client.serve('thumb', (msg) => {
    got = msg.payload;
    return { size: msg.payload.data.length, thumb: new Uint8Array([9, 9]) };
  });
  const req = buildMessage('request', 'app', 'thumb', { data: Buffer.alloc(100_000, 1) });
  const answer = nextReceived(peer, (m) => m.reply_to === req.message_id);
  sendFromPeer(peer, req);
  assert.deepEqual((await answer).payload, { size: 100_000, thumb: Buffer.from([9, 9]) });
  assert.ok(Buffer.isBuffer(got.data));
  assert.equal(got.data.length, 100_000);
});

test('binary client - publish, notify and subscriptions', async (t) => {
  const peer = await binaryPeer(t);
  const client = await connected(t, peer);
  const published = nextReceived(peer, (m) => m.channel_id === 'frames' && m.message_type === 'publish');
  await client.publish('frames', { frame: Buffer.from('f1') });
  assert.deepEqual((await published).payload, { frame: Buffer.from('f1') });
  const notified = nextReceived(peer, (m) => m.channel_id === 'audio');
  await client.notify('audio', [Buffer.from('a'), Buffer.from('b')]);
  assert.deepEqual((await notified).payload, [Buffer.from('a'), Buffer.from('b')]);
  const delivered = new Promise((resolve) => client.subscribe('cams.*', (msg) => resolve(msg.payload)));
  await until(() => peer.received.some((m) => m.message_type === 'subscribe'));
  await new Promise((resolve) => setImmediate(resolve));
  sendFromPeer(peer, buildMessage('publish', 'app', 'cams.front', { jpeg: Buffer.from('jpg') }));
  assert.deepEqual(await delivered, { jpeg: Buffer.from('jpg') });
});

test('binary client - streams: a consumer gets Buffer items, a streaming responder yields them', async (t) => {
  const peer = await binaryPeer(t);
  const client = await connected(t, peer);
  const stream = client.stream('file.chunks', { name: 'f' }, { window: 4 });
  const first = stream.next();
  const request = await nextReceived(peer, (m) => m.channel_id === 'file.chunks');
  for (const chunk of ['ab', 'cd', '']) sendFromPeer(peer, buildMessage('stream_item', 'app', 'file.chunks', Buffer.from(chunk), { reply_to: request.message_id }));
  sendFromPeer(peer, buildMessage('stream_end', 'app', 'file.chunks', null, { reply_to: request.message_id }));
  const items = [(await first).value];
  for await (const item of stream) items.push(item);
  assert.deepEqual(items, [Buffer.from('ab'), Buffer.from('cd'), Buffer.alloc(0)]);
  assert.ok(items.every((item) => Buffer.isBuffer(item)));

  await client.serve('chunks', async function* () {
    for (let i = 0; i < 3; i++) yield { i, data: Buffer.alloc(70_000, i) };
  });
  const open = buildMessage('request', 'app', 'chunks', null, { window: 8 });
  const end = nextReceived(peer, (m) => m.reply_to === open.message_id && m.message_type === 'stream_end');
  sendFromPeer(peer, open);
  await end;
  const got = peer.received.filter((m) => m.reply_to === open.message_id && m.message_type === 'stream_item').map((m) => m.payload);
  assert.deepEqual(got, [0, 1, 2].map((i) => ({ i, data: Buffer.alloc(70_000, i) })));
});

test('binary client - a server without binary gets the tagged base64 form (§16.5)', async (t) => {
  const peer = await binaryPeer(t, { features: ['cancel', 'streams'] });
  const client = await connected(t, peer);
  assert.ok(!client._conn.features.has('binary'));
  const published = nextReceived(peer, (m) => m.channel_id === 'frames');
  await client.publish('frames', { frame: Buffer.from([0xff]) });
  assert.deepEqual((await published).payload, { frame: { $base64: '/w==' } });
});

test('binary client - the frame limit covers the attachments: one byte over is too_large, and nothing is sent', async (t) => {
  const peer = await binaryPeer(t, { maxFrameSize: 4096 });
  const client = await connected(t, peer);
  const before = peer.received.length;
  await assert.rejects(client.request('echo', Buffer.alloc(5000)), (err) => err.code === ErrorCode.TOO_LARGE && err.limit === 4096);
  await assert.rejects(client.publish('big', { a: Buffer.alloc(4096) }), (err) => err.code === ErrorCode.TOO_LARGE);
  assert.deepEqual(await client.request('echo', Buffer.alloc(3000)), { got: Buffer.alloc(3000) });
  assert.equal(peer.received.length, before + 1); // only the request that fitted
});

test('binary client - coalescing tells byte payloads apart', async (t) => {
  const peer = await binaryPeer(t);
  const client = await connected(t, peer);
  const [a, b, c] = await Promise.all([
    client.request('echo', new Uint8Array([1]).buffer, undefined, { coalesce: true }),
    client.request('echo', new Uint8Array([2]).buffer, undefined, { coalesce: true }),
    client.request('echo', Buffer.from([2]), undefined, { coalesce: true })
  ]);
  assert.deepEqual([a.got, b.got, c.got], [Buffer.from([1]), Buffer.from([2]), Buffer.from([2])]);
  assert.equal(peer.received.filter((m) => m.channel_id === 'echo').length, 2); // the same bytes shared one call
});

test('binary client - the load-balanced and service clients pass bytes through their pools', async (t) => {
  const peer = await binaryPeer(t);
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${peer.port}`], { healthCheckInterval: 60_000 });
  t.after(() => lb.close());
  await lb.start();
  assert.deepEqual(await lb.request('echo', PAYLOAD()), { got: RECEIVED });
  const published = nextReceived(peer, (m) => m.channel_id === 'lb.pub');
  await lb.publish('lb.pub', Buffer.from('p'));
  assert.deepEqual((await published).payload, Buffer.from('p'));
  const sc = new ServiceClient({ media: { host: '127.0.0.1', port: peer.port, healthCheckInterval: 60_000 } });
  t.after(() => sc.shutdown());
  assert.deepEqual(await sc.request('media', 'echo', { pdf: Buffer.from('%PDF') }), { got: { pdf: Buffer.from('%PDF') } });
});

test('binary client - the offline queue holds bytes, and its file keeps them across clients', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-binary-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const queuePath = path.join(dir, 'outbox.bin');
  const peer = await binaryPeer(t);
  const proxy = await new FaultProxy('127.0.0.1', peer.port).start();
  t.after(() => proxy.close());
  const fast = { connectTimeout: 500, initialDelay: 20, maxDelay: 50 };
  const client = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, queuePath, ...fast });
  t.after(() => client.disconnect());
  await client.connect();
  proxy.refuse(true);
  const reconnecting = waitFor(client, 'reconnecting', 2000);
  proxy.cut();
  await reconnecting;
  await client.publish('kept', { blob: Buffer.from('on disk'), list: [new Uint8Array([7])] }, { timeout: 10_000 });
  await client.notify('kept', Buffer.alloc(0), { timeout: 10_000 });
  await client.disconnect();

  const second = new IPCClient('app', { host: '127.0.0.1', port: peer.port, queuePath, ...fast });
  t.after(() => second.disconnect());
  assert.equal(second.queueStats().size, 2);
  const last = nextReceived(peer, (m) => m.channel_id === 'kept' && m.message_type === 'notification');
  await second.connect();
  await last;
  const kept = peer.received.filter((m) => m.channel_id === 'kept').map((m) => m.payload);
  assert.deepEqual(kept, [{ blob: Buffer.from('on disk'), list: [Buffer.from([7])] }, Buffer.alloc(0)]);
});

/** A binary frame's body as a server may misbehave with it: `payload`, its `paths`, one attachment. */
function binaryAnswer(request, payload, paths) {
  const envelope = { ...buildMessage('response', request.app_id, request.channel_id, payload, { reply_to: request.message_id }), attachments: paths };
  const json = Buffer.from(JSON.stringify(envelope));
  const head = Buffer.alloc(13);
  head.writeUInt32BE(json.length, 1);
  head.writeUInt32BE(1, 5);
  head.writeUInt32BE(3, 9);
  return encodeFrame(Buffer.concat([head, json, Buffer.from('xyz')]));
}

test('binary client - a binary frame the server did not grant, or whose paths do not fit, ends the connection at once, as in Python', async (t) => {
  const cases = [
    ['not granted', ['cancel', 'streams'], (req) => binaryAnswer(req, { a: null }, [['a']]), /binary frames were not negotiated/],
    ['a path to no null', ALL, (req) => binaryAnswer(req, { a: 1 }, [['a']]), /does not lead to a null/],
    ['attachments in a JSON frame', ALL, (req) => encodeFrame(Buffer.from(encodeMessage(buildMessage('response', req.app_id, 'x', { a: null }, { reply_to: req.message_id })).toString().replace(/}$/, ',"attachments":[["a"]]}'))), /only a binary frame/]
  ];
  for (const [name, features, answer, text] of cases) {
    const peer = await binaryPeer(t, { features, onRequest: (msg, conn) => msg.channel_id === 'x' && conn.socket.write(answer(msg)) });
    let connections = 0;
    peer.events.on('connection', () => connections++);
    const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, requestTimeout: 30_000, initialDelay: 10, maxDelay: 50 });
    t.after(() => client.disconnect());
    const errors = [];
    client.on('error', (err) => errors.push(err));
    await client.connect();
    const reconnected = waitFor(client, 'connected', 5000);
    const started = Date.now();
    // Before: the frame was reported and dropped, the call rejected only at its deadline (30 s here).
    await assert.rejects(client.request('x', { q: 1 }), (err) => err instanceof ConnectionLostError && text.test(err.message), name);
    assert.ok(Date.now() - started < 15_000, name);
    assert.ok(errors.some((err) => err instanceof MessageError && err.code === 'bad_message' && text.test(err.message)), name);
    await reconnected; // the client reconnects, as after any violation
    assert.equal(connections, 2, name);
    await client.disconnect();
  }
});

// -- queued and resent calls: the bytes of the call, not of the caller's buffer at the replay (§16.3) --

test('binary client - queued and resent calls: a one-way call settled in the queue sends its bytes as they were, small or large', async (t) => {
  const peer = await binaryPeer(t);
  const { proxy, client } = await offlineClient(t, peer);
  const small = Buffer.from('AAAA');
  const typed = new Uint8Array([1, 2, 3]);
  const large = Buffer.alloc(100 * 1024, 0x41); // past the 64 KiB a frame copies
  await client.notify('sink', { small, typed, nested: [small.subarray(1, 3)], items: [1, 2].values() });
  await client.publish('sink', { large });
  assert.equal(client.queueStats().size, 2);
  small.fill(0x5a); // both calls have settled: the caller reuses its buffers
  typed.fill(9);
  large.fill(0x5a);
  const published = nextReceived(peer, (m) => m.channel_id === 'sink' && m.message_type === 'publish');
  proxy.refuse(false);
  await published;
  const got = peer.received.filter((m) => m.channel_id === 'sink').map((m) => m.payload);
  // Before: the replay wrote the buffers as they were then ('ZZZZ', [9, 9, 9], 100 KiB
  // of 'Z') and items [] (measuring the call when it was queued used the iterator up).
  assert.deepEqual(got, [{ small: Buffer.from('AAAA'), typed: Buffer.from([1, 2, 3]), nested: [Buffer.from('AA')], items: [1, 2] }, { large: Buffer.alloc(100 * 1024, 0x41) }]);
});

test('binary client - queued and resent calls: a small queued request sends the bytes of the call, as a frame sent at once', async (t) => {
  const peer = await binaryPeer(t);
  const { proxy, client } = await offlineClient(t, peer);
  const small = Buffer.from('AAAA');
  const answer = client.request('echo', { small });
  await until(() => client.queueStats().size === 1, 2000, 'the request queued');
  small.fill(0x5a);
  proxy.refuse(false);
  assert.deepEqual(await answer, { got: { small: Buffer.from('AAAA') } });
});

test('binary client - queued and resent calls: a keyed request resent after a loss sends the bytes of the call', async (t) => {
  let attempts = 0;
  const peer = await binaryPeer(t, { onRequest: (msg, conn, reply) => msg.channel_id === 'jobs' && ++attempts === 2 && reply({ got: msg.payload }) }); // the first is lost
  const proxy = await new FaultProxy('127.0.0.1', peer.port).start();
  t.after(() => proxy.close());
  const client = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, initialDelay: 10, maxDelay: 50, requestTimeout: 10_000 });
  t.after(() => client.disconnect());
  await client.connect();
  const small = Buffer.from('AAAA');
  const first = nextReceived(peer, (m) => m.channel_id === 'jobs');
  const answer = client.request('jobs', { small, items: [1, 2].values() }, { idempotencyKey: 'job-1' });
  await first;
  small.fill(0x5a); // written in a frame of its own: the caller may reuse it
  const resent = nextReceived(peer, (m) => m.channel_id === 'jobs');
  proxy.cut();
  // Before: the resend carried 'ZZZZ' (a server refuses the key for another payload) and items [].
  assert.deepEqual((await resent).payload, { small: Buffer.from('AAAA'), items: [1, 2] });
  assert.deepEqual(await answer, { got: { small: Buffer.from('AAAA'), items: [1, 2] } });
});
