'use strict';

// docs/resilience.md §4 on real loopback sockets, through a
// fault-injecting proxy (test/proxied.js): the offline queue while the
// client is away (order, priorities, deadlines, overflow, giving up) and
// its file (persistence, one owner, corruption). Every wait is bounded and
// waits for an event or a promise, not for time.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { IPCClient, ErrorCode, QueueFullError, QueueFileInUseError } = require('..');
const { Peer, waitFor, nextReceived } = require('./helpers');
const { FAST, proxiedClient: setup, goOffline, record, appMessages } = require('./proxied');
const { buildMessage } = require('../lib/envelope');

test('resilience - queued calls go out after the peer comes back: restore, reconnected, connected, then the queue by priority', async (t) => {
  const { peer, proxy, client } = await setup(t, { onRequest: (msg, conn, reply) => reply({ timeout_ms: msg.timeout_ms }) });
  await client.connect();
  await client.subscribe('news', () => {});
  await client.serve('svc', () => 1);
  await goOffline(client, proxy);

  const queuedAt = performance.now();
  const request = client.sendRequest('ask', 1, 3000);
  assert.equal(await client.publish('pub', 'low'), undefined); // accepted into the queue: resolved at once
  await client.publish('pub', 'high', { priority: 5 });
  await client.notify('note', 'mid', { priority: 1 });
  assert.deepEqual(client.queueStats(), { size: 4, bytes: client.queueStats().bytes, maxSize: 1000, maxBytes: 8388608, dropped: 0, byPriority: { 0: 2, 1: 1, 5: 1 } });
  await waitFor(client, 'reconnecting', 2000); // a refused attempt: time passes in the queue

  const log = record(client, ['reconnected', 'connected']);
  let atConnected = null;
  client.once('connected', () => {
    atConnected = { sent: client.getMetrics().messagesSent, queued: client.queueStats().size };
    client.publish('pub', 'made in connected'); // queues behind the replay
  });
  const from = peer.received.length;
  const lastOne = nextReceived(peer, (m) => m.payload === 'made in connected');
  // The request leaves the queue after this point, so its budget is at most
  // what was left here (5 ms: sendRequest set its deadline just after queuedAt).
  const waited = performance.now() - queuedAt;
  proxy.refuse(false);
  const reply = await request;
  assert.ok(reply.payload.timeout_ms <= Math.ceil(3000 - waited + 5), `timeout_ms ${reply.payload.timeout_ms} after ${waited} ms in the queue`);
  await lastOne;

  assert.deepEqual(log.map(([name]) => name), ['reconnected', 'connected']);
  assert.equal(atConnected.queued, 4); // nothing replayed before 'connected'
  const after = peer.received.slice(from);
  assert.equal(after[0].payload.action, 'connect');
  assert.deepEqual(after.slice(1, 3).map((m) => m.message_type), ['subscribe', 'subscribe']);
  assert.deepEqual(appMessages(peer, from), [
    ['publish', 'pub', 'high'],
    ['notification', 'note', 'mid'],
    ['request', 'ask', 1],
    ['publish', 'pub', 'low'],
    ['publish', 'pub', 'made in connected']
  ]);
  const m = client.getMetrics();
  assert.equal(m.queued, 0);
  assert.ok(m.messagesSent >= atConnected.sent + 5);
});

test('resilience - a queued request rejects with timeout at its own deadline; a one-way message expires with queue_dropped', async (t) => {
  const { proxy, client } = await setup(t);
  await client.connect();
  await goOffline(client, proxy);
  const drops = record(client, ['queue_dropped']);
  await client.notify('note', 1, { timeout: 100, priority: 3 });
  const started = performance.now();
  await assert.rejects(client.sendRequest('slow', 1, 250), (err) => err.code === ErrorCode.TIMEOUT && err.remote === false);
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 245 && elapsed < 2000, `rejected after ${elapsed} ms`);
  assert.deepEqual(drops, [['queue_dropped', { reason: 'expired', channel: 'note', messageType: 'notification', priority: 3 }]]);
  assert.equal(client.queueStats().size, 0);
  assert.equal(client.queueStats().dropped, 2);
  const m = client.getMetrics();
  assert.equal(m.messagesFailed, 2);
  assert.equal(m.queueDropped, 2);
});

test('resilience - onDisconnect "fail" and queueMaxSize 0 fail at once with not_connected', async (t) => {
  const { proxy, client } = await setup(t, {}, { queueMaxSize: 0 });
  await client.connect();
  await goOffline(client, proxy);
  await assert.rejects(client.sendRequest('a', 1, 1000), { code: ErrorCode.NOT_CONNECTED });
  await assert.rejects(client.publish('a', 1), { code: ErrorCode.NOT_CONNECTED });

  const other = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, ...FAST, onDisconnect: 'fail' });
  t.after(() => other.disconnect());
  proxy.refuse(false);
  await other.connect();
  await goOffline(other, proxy);
  await assert.rejects(other.notify('a', 1), { code: ErrorCode.NOT_CONNECTED });
  await assert.rejects(other.sendRequest('a', 1, { onDisconnect: 'fail' }), { code: ErrorCode.NOT_CONNECTED });
  // A per-call 'queue' overrides the client's 'fail'.
  const queued = other.sendRequest('a', 1, { onDisconnect: 'queue', timeout: 2000 });
  assert.equal(other.queueStats().size, 1);
  await other.disconnect();
  await assert.rejects(queued, { code: ErrorCode.NOT_CONNECTED });
});

test('resilience - the queue counts a call in UTF-8 bytes, as it is sent: one over the frame limit in bytes is refused at the call', async (t) => {
  const { proxy, client } = await setup(t, { maxFrameSize: 1024 });
  await client.connect();
  await goOffline(client, proxy);
  // 400 characters: under the limit in characters, 1,200 bytes in UTF-8
  await assert.rejects(client.notify('jobs', '\u20ac'.repeat(400)), { code: ErrorCode.TOO_LARGE });
  assert.equal(client.queueStats().size, 0);
  await client.notify('jobs', 'e'.repeat(100));
  const ascii = client.queueStats().bytes;
  await client.notify('jobs', '\u20ac'.repeat(100));
  assert.equal(client.queueStats().bytes - ascii, ascii + 200); // the same frame, with 2 more bytes per character
});

test('resilience - overflow "reject": the new call fails with queue_full', async (t) => {
  const { proxy, client } = await setup(t, {}, { queueMaxSize: 2 });
  await client.connect();
  await goOffline(client, proxy);
  const waiting = [client.sendRequest('a', 1, 5000), client.publish('b', 2)];
  await assert.rejects(client.sendRequest('c', 3, 5000), QueueFullError);
  await assert.rejects(client.publish('d', 4, { priority: 9 }), { code: ErrorCode.QUEUE_FULL });
  await client.disconnect();
  const [request, publish] = await Promise.allSettled(waiting);
  assert.equal(request.reason.code, ErrorCode.NOT_CONNECTED);
  assert.equal(publish.status, 'fulfilled');
});

test('resilience - overflow "drop_oldest" and "drop_lowest_priority": the evicted call fails with queue_full', async (t) => {
  const { proxy, client } = await setup(t, {}, { queueMaxSize: 2, queueOverflow: 'drop_oldest' });
  await client.connect();
  await goOffline(client, proxy);
  const drops = record(client, ['queue_dropped']);
  const oldest = client.sendRequest('a', 1, 5000);
  await client.publish('b', 2);
  await client.publish('c', 3); // evicts the request
  await assert.rejects(oldest, { code: ErrorCode.QUEUE_FULL });
  await client.publish('d', 4); // evicts 'b'
  assert.deepEqual(drops.map(([, d]) => [d.reason, d.channel, d.messageType]), [['evicted', 'b', 'publish']]);

  const lowest = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, ...FAST, queueMaxSize: 2, queueOverflow: 'drop_lowest_priority' });
  t.after(() => lowest.disconnect());
  proxy.refuse(false);
  await lowest.connect();
  await goOffline(lowest, proxy);
  const lowDrops = record(lowest, ['queue_dropped']);
  await lowest.publish('low', 0);
  const high = lowest.sendRequest('high', 0, { priority: 5, timeout: 5000 });
  const mid = lowest.sendRequest('mid', 0, { priority: 1, timeout: 5000 }); // evicts 'low'
  assert.deepEqual(lowDrops.map(([, d]) => [d.reason, d.channel, d.priority]), [['evicted', 'low', 0]]);
  await assert.rejects(lowest.publish('lower', 0), { code: ErrorCode.QUEUE_FULL }); // below everything queued
  assert.deepEqual(lowest.queueStats().byPriority, { 1: 1, 5: 1 });
  await lowest.disconnect();
  for (const r of await Promise.allSettled([high, mid])) assert.equal(r.reason.code, ErrorCode.NOT_CONNECTED);
});

/** A client with a queue file of its own, connected, then cut off (its messages queue and persist). */
async function offlineWithQueueFile(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-resilience-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const queuePath = path.join(dir, 'outbox.bin');
  const { peer, proxy, client } = await setup(t, {}, { queuePath });
  await client.connect();
  await goOffline(client, proxy);
  return { queuePath, peer, proxy, client };
}

test('resilience - persisted one-way messages survive into a second client on the same queuePath', async (t) => {
  const { queuePath, peer, client } = await offlineWithQueueFile(t);
  for (let i = 0; i < 4; i++) await client.publish('persist', i, { priority: i % 2, timeout: 10_000 });
  await client.notify('persist.note', 'n', { priority: 2, timeout: 10_000 });
  const request = client.sendRequest('never.persisted', 1, 5000);
  await client.disconnect();
  await assert.rejects(request, { code: ErrorCode.NOT_CONNECTED });
  assert.equal(client.queueStats().size, 5); // kept for a later connect()
  assert.ok(fs.statSync(queuePath).size > 0);

  const second = new IPCClient('app', { host: '127.0.0.1', port: peer.port, ...FAST, queuePath });
  t.after(() => second.disconnect());
  assert.equal(second.queueStats().size, 5);
  const from = peer.received.length;
  const last = nextReceived(peer, (m) => m.channel_id === 'persist' && m.payload === 2);
  await second.connect();
  await last;
  assert.deepEqual(appMessages(peer, from), [
    ['notification', 'persist.note', 'n'],
    ['publish', 'persist', 1],
    ['publish', 'persist', 3],
    ['publish', 'persist', 0],
    ['publish', 'persist', 2]
  ]);
  assert.equal(second.queueStats().size, 0);
  assert.equal(fs.statSync(queuePath).size, 0); // all removed: compacted to nothing
  await second.disconnect(); // gives the file back
  const third = new IPCClient('app', { queuePath });
  assert.equal(third.queueStats().size, 0);
  await third.disconnect();
});

test('resilience - connect() after disconnect() reloads the persisted messages without counting them as dropped', async (t) => {
  const { peer, proxy, client } = await offlineWithQueueFile(t);
  for (let i = 0; i < 3; i++) await client.publish('kept', i, { timeout: 10_000 });
  await client.disconnect();
  assert.deepEqual([client.queueStats().size, client.queueStats().dropped], [3, 0]);
  proxy.refuse(false);
  const from = peer.received.length;
  const last = nextReceived(peer, (m) => m.channel_id === 'kept' && m.payload === 2);
  await client.connect(); // takes the file back: what it holds is loaded again, then sent
  await last;
  assert.deepEqual(appMessages(peer, from), [0, 1, 2].map((i) => ['publish', 'kept', i]));
  assert.deepEqual([client.queueStats().size, client.queueStats().dropped, client.getMetrics().queueDropped], [0, 0, 0]);
});

test('resilience - persisted messages that do not fit a smaller queue are reported to listeners added after the constructor', async (t) => {
  const { queuePath, peer, client } = await offlineWithQueueFile(t);
  for (let i = 0; i < 3; i++) await client.publish('audit', i, { priority: i, timeout: 10_000 });
  await client.disconnect();

  const second = new IPCClient('app', { host: '127.0.0.1', port: peer.port, ...FAST, queuePath, queueMaxSize: 1 });
  t.after(() => second.disconnect());
  const log = record(second, ['queue_dropped']); // the constructor loaded the file: the events come after it
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(log.map(([, e]) => [e.reason, e.priority]), [['evicted', 1], ['evicted', 2]]);
  assert.equal(second.queueStats().dropped, 2);
  assert.equal(second.getMetrics().messagesFailed, 2);
});

test('resilience - giving up fails queued requests with not_connected and drops one-way messages with gave_up', async (t) => {
  const { proxy, client } = await setup(t, {}, { maxRetries: 2 });
  await client.connect();
  const log = record(client, ['reconnect_failed', 'queue_dropped', 'close']);
  const failed = waitFor(client, 'reconnect_failed', 3000);
  await goOffline(client, proxy);
  const request = client.sendRequest('a', 1, 5000);
  await client.publish('b', 1);
  const [attempts] = await failed;
  assert.equal(attempts, 2);
  await assert.rejects(request, { code: ErrorCode.NOT_CONNECTED });
  assert.deepEqual(log.map(([name, arg]) => (name === 'queue_dropped' ? [name, arg.reason] : [name])), [
    ['queue_dropped', 'gave_up'],
    ['reconnect_failed'],
    ['close']
  ]);
  assert.equal(client.state, 'disconnected');
  await assert.rejects(client.sendRequest('a', 1), { code: ErrorCode.NOT_CONNECTED });
});

test('resilience - calls queued while the first connect is in progress fail with it, not at their deadline', async (t) => {
  const { proxy, client } = await setup(t, {}, { connectTimeout: 300 });
  proxy.blackhole(true); // TCP connects, the handshake never completes
  const connecting = client.connect();
  assert.equal(client.state, 'connecting');
  const started = performance.now();
  const queued = client.sendRequest('x', null, 5000);
  const drops = record(client, ['queue_dropped']);
  await client.publish('y', 1);
  await assert.rejects(connecting, (err) => err.code === ErrorCode.NOT_CONNECTED && err.cause.code === ErrorCode.TIMEOUT);
  await assert.rejects(queued, { code: ErrorCode.NOT_CONNECTED });
  assert.ok(performance.now() - started < 2500, 'failed with the connect, not at its own deadline');
  assert.deepEqual(drops.map(([, arg]) => arg.reason), ['gave_up']);
  assert.equal(client.queueStats().size, 0);
  assert.equal(client.queueStats().dropped, 2);
  assert.equal(client.state, 'disconnected');
});

test('resilience - queueStats().dropped counts every entry that left the queue unsent, refused ones included, reported once', async (t) => {
  const { proxy, client } = await setup(t);
  await client.connect();
  const small = new Peer({ maxFrameSize: 1000 }); // the next server takes smaller frames
  await small.listen();
  t.after(() => small.close());
  await goOffline(client, proxy);
  proxy.retarget('127.0.0.1', small.port);
  const drops = record(client, ['queue_dropped', 'error']);
  const request = client.sendRequest('big', 'r'.repeat(5000), 3000);
  await client.publish('big', 'p'.repeat(5000));
  await client.publish('ok', 1);
  const delivered = nextReceived(small, (m) => m.channel_id === 'ok');
  proxy.refuse(false);
  await assert.rejects(request, { code: ErrorCode.TOO_LARGE });
  await delivered;
  // the request's caller gets its error, the message is reported on queue_dropped: nothing on 'error' (as Python)
  assert.deepEqual(drops.map(([name, arg]) => [name, arg.reason, arg.channel]), [['queue_dropped', 'refused', 'big']]);
  assert.equal(client.queueStats().dropped, 2);
  assert.equal(client.getMetrics().queueDropped, 2);
});

test('resilience - a queue file has one owner: a second client fails clearly; disconnect() gives it back, connect() takes it again', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-resilience-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const queuePath = path.join(dir, 'outbox.bin');
  const { peer, proxy, client } = await setup(t, {}, { queuePath });
  await client.connect();
  assert.throws(() => new IPCClient('app', { port: peer.port, queuePath }), (err) => err instanceof QueueFileInUseError && err.reason === 'EQUEUELOCKED' && err.message.includes(queuePath));
  await goOffline(client, proxy);
  await client.notify('jobs', 1, { timeout: 10_000 });
  await client.disconnect();
  const second = new IPCClient('app', { host: '127.0.0.1', port: peer.port, ...FAST, queuePath });
  t.after(() => second.disconnect());
  assert.equal(second.queueStats().size, 1);
  proxy.refuse(false);
  await assert.rejects(client.connect(), (err) => err instanceof QueueFileInUseError && err.reason === 'EQUEUELOCKED' && err.message.includes(queuePath));
  const from = peer.received.length;
  const sent = nextReceived(peer, (m) => m.channel_id === 'jobs');
  await second.connect();
  await sent;
  await second.disconnect();
  await client.connect(); // the file is free again, and empty: nothing is sent twice
  assert.equal(client.queueStats().size, 0);
  assert.deepEqual(appMessages(peer, from), [['notification', 'jobs', 1]]);
});

test('resilience - corruption in the middle of the queue file is counted as dropped and reported on "error"', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-resilience-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const queuePath = path.join(dir, 'outbox.bin');
  const { encodeRecord } = require('../lib/queue_store');
  const far = Date.now() + 60_000;
  const rec = (id) => encodeRecord({ op: 'add', id, priority: 0, expires_at: far, message: buildMessage('notification', 'app', 'jobs', id) });
  fs.writeFileSync(queuePath, Buffer.concat([rec('a'), Buffer.from([0xff, 0xff, 0xff, 0xff, 9, 9]), rec('b')]));
  const client = new IPCClient('app', { port: 1, queuePath });
  t.after(() => client.disconnect());
  const [err] = await waitFor(client, 'error', 2000);
  assert.equal(err.code, 'EQUEUECORRUPT');
  assert.ok(err.message.includes(queuePath));
  const stats = client.queueStats();
  assert.equal(stats.size, 2);
  assert.equal(stats.dropped, 1);
  assert.equal(client.getMetrics().messagesFailed, 1);
});

test('resilience - a persisted message leaves the queue file only once the socket has taken its bytes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-resilience-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const queuePath = path.join(dir, 'outbox.bin');
  const { proxy, client } = await setup(t, {}, { queuePath, queueMaxBytes: 64 * 1024 * 1024 });
  await client.connect();
  await goOffline(client, proxy);
  const SIZE = 256 * 1024;
  const N = 48;
  for (let i = 0; i < N; i++) await client.notify('bulk', 'x'.repeat(SIZE), { timeout: 60_000 });
  /** Ids the file still holds (adds without a remove). */
  const onDisk = () => {
    const data = fs.readFileSync(queuePath);
    const live = new Set();
    for (let at = 0; at + 4 <= data.length; ) {
      const end = at + 4 + data.readUInt32BE(at);
      if (end > data.length) break;
      const rec = JSON.parse(data.toString('utf8', at + 4, end));
      if (rec.op === 'add') live.add(rec.id);
      else live.delete(rec.id);
      at = end;
    }
    return live.size;
  };
  assert.equal(onDisk(), N);
  client.once('connected', () => proxy.blackhole(true)); // the peer takes nothing: the socket buffers fill
  proxy.refuse(false);
  await waitFor(client, 'connected', 3000);
  const socket = client._conn._socket;
  const deadline = Date.now() + 5000;
  while (socket.writableLength === 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  assert.ok(socket.writableLength > 0, 'the socket buffer filled up');
  // Still in the process: every message not yet handed to the OS is still on disk.
  const inProcess = Math.ceil(socket.writableLength / (SIZE + 1024)); // a frame is SIZE plus < 1 KiB of envelope
  assert.ok(onDisk() >= client.queueStats().size + inProcess, `${onDisk()} on disk, ${client.queueStats().size} queued, ${inProcess} in the socket buffer`);
  proxy.blackhole(false);
});

test('queue - a call the offline queue did not send says why, in the words of the Python client', async (t) => {
  const { freePort } = require('./helpers');
  const port = await freePort(); // nothing listens: the client keeps reconnecting
  for (const [options, calls] of [
    [{}, [
      [(c) => c.request('r', 1, { timeout: 300 }), "no response on 'r' within 300 ms (it waited in the offline queue)"],
      [(c) => c.publish('q', 1, { ack: true, timeout: 300 }), "no response on 'q' within 300 ms (it waited in the offline queue)"],
      [(c) => c.request('r', 1, { timeout: 300, onDisconnect: 'fail' }), "the client is reconnecting and the call asked to fail fast (onDisconnect 'fail')"]
    ]],
    [{ queueMaxSize: 0 }, [[(c) => c.request('r', 1, { timeout: 300 }), 'the client is reconnecting and its offline queue holds nothing (queueMaxSize 0)']]]
  ]) {
    const client = new IPCClient('app', { host: '127.0.0.1', port, waitOnFirstConnect: true, initialDelay: 5000, ...options });
    client.on('error', () => {});
    const connecting = client.connect().catch(() => {});
    t.after(() => client.disconnect()); // a failed assertion too: no client left reconnecting
    await waitFor(client, 'reconnecting');
    for (const [call, message] of calls) await assert.rejects(call(client), { message });
    await client.disconnect();
    await connecting;
  }
});
