'use strict';

// docs/resilience.md §2-6 on real loopback sockets: a scripted peer
// (test/helpers.js) behind a fault-injecting proxy (test/fault_proxy.js).
// Every wait is bounded and waits for an event or a promise, not for time.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { IPCClient, ErrorCode, CircuitOpenError, QueueFullError } = require('..');
const { Peer, waitFor, nextReceived, until } = require('./helpers');
const { FaultProxy } = require('./fault_proxy');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');

const FAST = { initialDelay: 10, maxDelay: 40, jitter: 0 };

/**
 * A peer, a proxy in front of it and a client connected through the proxy.
 * @param {import('node:test').TestContext} t
 * @param {object} [peerOptions]
 * @param {object} [clientOptions]
 */
async function setup(t, peerOptions = {}, clientOptions = {}) {
  const peer = new Peer(peerOptions);
  await peer.listen();
  const proxy = await new FaultProxy('127.0.0.1', peer.port).start();
  const client = new IPCClient('app', { host: '127.0.0.1', port: proxy.port, connectTimeout: 500, ...FAST, ...clientOptions });
  t.after(async () => {
    await client.disconnect();
    await proxy.close();
    await peer.close();
  });
  return { peer, proxy, client };
}

/**
 * Takes the client offline and keeps it there: new connections are refused.
 * @returns {Promise<void>} once the client is reconnecting.
 */
async function goOffline(client, proxy) {
  proxy.refuse(true);
  const reconnecting = waitFor(client, 'reconnecting', 2000);
  proxy.cut();
  await reconnecting;
}

/** Collects the events a client emits, by name. */
function record(client, names) {
  const log = [];
  for (const name of names) client.on(name, (arg) => log.push([name, arg]));
  return log;
}

/** Application messages the peer received since `from`: [type, channel, payload]. */
function appMessages(peer, from = 0) {
  return peer.received
    .slice(from)
    .filter((m) => m.channel_id !== 'system' && m.message_type !== 'subscribe' && m.message_type !== 'response')
    .map((m) => [m.message_type, m.channel_id, m.payload]);
}

test('resilience - a black hole is detected within interval + timeout, then the client reconnects', async (t) => {
  const { proxy, client } = await setup(t, { heartbeatIntervalMs: 100 });
  await client.connect();
  const [beat] = await waitFor(client, 'heartbeat', 2000);
  assert.ok(beat.latency >= 0 && beat.latency < 2000, String(beat.latency));
  const health = client.getConnectionHealth();
  assert.equal(health.healthy, true);
  assert.equal(health.heartbeatIntervalMs, 100);
  assert.equal(health.heartbeatTimeoutMs, 200);
  assert.ok(health.lastHeartbeat > Date.now() - 1000 && health.latencyMs >= 0);

  const lastFrame = client.getConnectionHealth().lastReceived;
  const disconnected = waitFor(client, 'disconnected', 2000);
  proxy.blackhole(true);
  const [silence] = await waitFor(client, 'heartbeat_timeout', 2000);
  const detectedAfter = Date.now() - lastFrame;
  const [error] = await disconnected;
  assert.equal(error.code, ErrorCode.TIMEOUT);
  assert.ok(silence.silent >= 200, `silent ${silence.silent}`);
  assert.ok(detectedAfter <= 100 + 200 + 60, `detected ${detectedAfter} ms after the last frame`);
  assert.equal(client.state, 'reconnecting');
  assert.equal(client.getConnectionHealth().healthy, false);
  proxy.blackhole(false);
  const [back] = await waitFor(client, 'reconnected', 3000);
  assert.ok(back.attempts >= 1 && back.elapsed > 0, JSON.stringify(back));
  assert.equal(client.getMetrics().reconnections, 1);
});

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

test('resilience - persisted one-way messages survive into a second client on the same queuePath', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-resilience-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const queuePath = path.join(dir, 'outbox.bin');
  const { peer, proxy, client } = await setup(t, {}, { queuePath });
  await client.connect();
  await goOffline(client, proxy);
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

test('resilience - the circuit breaker opens, rejects fast with retryAfter, half-opens and closes', async (t) => {
  let failing = true;
  const onRequest = (msg, conn, reply) => {
    if (msg.channel_id === 'flaky' && failing) reply(null, { error: { code: 'no_responders', message: 'nobody' } });
    else if (msg.channel_id === 'wrong') reply(null, { error: { code: 'handler_error', message: 'bad input' } });
    else reply('ok');
  };
  const { peer, client } = await setup(t, { onRequest }, { circuitBreaker: { failureThreshold: 2, resetTimeout: 150, successThreshold: 1 } });
  await client.connect();
  const log = record(client, ['circuit_open', 'circuit_half_open', 'circuit_closed']);
  for (let i = 0; i < 3; i++) await assert.rejects(client.sendRequest('wrong', i), { code: ErrorCode.HANDLER_ERROR }); // not counted
  await assert.rejects(client.sendRequest('flaky', 1), { code: ErrorCode.NO_RESPONDERS });
  await assert.rejects(client.sendRequest('flaky', 2), { code: ErrorCode.NO_RESPONDERS });
  assert.deepEqual(log.map(([name, snap]) => [name, snap.key, snap.state]), [['circuit_open', 'flaky', 'open']]);
  const before = peer.received.length;
  let rejected;
  await assert.rejects(client.sendRequest('flaky', 3), (err) => (rejected = err) instanceof CircuitOpenError);
  assert.equal(rejected.code, ErrorCode.CIRCUIT_OPEN);
  assert.ok(rejected.retryAfter > 0 && rejected.retryAfter <= 150, String(rejected.retryAfter));
  assert.equal(peer.received.length, before); // never sent
  assert.equal((await client.sendRequest('other', 1)).payload, 'ok'); // one breaker per channel
  const snap = client.circuitBreakers();
  assert.equal(snap.flaky.state, 'open');
  assert.equal(snap.flaky.rejected, 1);
  assert.equal(snap.wrong.state, 'closed');

  failing = false;
  await new Promise((resolve) => setTimeout(resolve, rejected.retryAfter + 5)); // the breaker's own clock
  assert.equal((await client.sendRequest('flaky', 4)).payload, 'ok');
  assert.deepEqual(log.map(([name]) => name), ['circuit_open', 'circuit_half_open', 'circuit_closed']);
  assert.equal(client.circuitBreakers().flaky.state, 'closed');
});

test('resilience - an open circuit returns the fallback result; scope "client" shares one breaker', async (t) => {
  const onRequest = (msg, conn, reply) => reply(null, { error: { code: 'shutting_down', message: 'bye' } });
  const fallback = (channel, payload, err) => ({ cached: channel, code: err.code });
  const { client } = await setup(t, { onRequest }, { circuitBreaker: { failureThreshold: 1, scope: 'client', fallback } });
  await client.connect();
  await assert.rejects(client.sendRequest('a', 1), { code: ErrorCode.SHUTTING_DOWN });
  const reply = await client.sendRequest('b', 1);
  assert.deepEqual(reply.payload, { cached: 'b', code: 'circuit_open' });
  assert.deepEqual(Object.keys(client.circuitBreakers()), ['*']);
  assert.equal(client.circuitBreakers()['*'].key, '*');
});

test('resilience - the fallback result is wrapped in a response message, like a real answer (as in Python)', async (t) => {
  const onRequest = (msg, conn, reply) => reply(null, { error: { code: 'no_responders', message: 'nobody' } });
  let mode = 'value';
  const own = { message_id: 'm1', app_id: 'app', channel_id: 'svc', message_type: 'response', payload: 'own', reply_to: 'x', timestamp: 1 };
  const fallback = (channel, payload, err) => (mode === 'value' ? 'cached' : mode === 'async' ? Promise.resolve(7) : own);
  const { peer, client } = await setup(t, { onRequest }, { circuitBreaker: { failureThreshold: 1, fallback } });
  await client.connect();
  await assert.rejects(client.sendRequest('svc', 1), { code: ErrorCode.NO_RESPONDERS });
  const before = peer.received.length;
  const reply = await client.sendRequest('svc', 1);
  assert.equal(reply.message_type, 'response');
  assert.equal(reply.payload, 'cached');
  assert.equal(reply.channel_id, 'svc');
  assert.equal(reply.app_id, 'app');
  assert.equal(typeof reply.reply_to, 'string');
  assert.ok(reply.reply_to.length > 0 && reply.reply_to !== reply.message_id);
  assert.equal(peer.received.length, before); // never sent
  mode = 'async';
  assert.equal((await client.sendRequest('svc', 1)).payload, 7);
  mode = 'message';
  assert.equal(await client.sendRequest('svc', 1), own); // already a message: returned as it is
});

test('resilience - a throwing circuit listener: the answered call resolves, the permit is released once, the error goes to "error"', async (t) => {
  let answer = false;
  const onRequest = (msg, conn, reply) => (answer ? reply('ok') : reply(null, { error: { code: 'no_responders', message: 'nobody' } }));
  const { client } = await setup(t, { onRequest }, { circuitBreaker: { failureThreshold: 1, resetTimeout: 0, successThreshold: 1 } });
  await client.connect();
  const bug = new Error('listener bug');
  client.on('circuit_closed', () => {
    throw bug;
  });
  const errors = [];
  client.on('error', (err) => errors.push(err));
  await assert.rejects(client.sendRequest('svc', 1), { code: ErrorCode.NO_RESPONDERS });
  answer = true;
  assert.equal((await client.sendRequest('svc', 2)).payload, 'ok');
  const snap = client.circuitBreakers().svc;
  assert.equal(snap.key, 'svc');
  assert.equal(snap.state, 'closed');
  assert.equal(snap.failures, 1);
  assert.equal(snap.successes, 1); // once, not once more for the listener's error
  assert.deepEqual(errors, [bug]);
  const m = client.getMetrics();
  assert.equal(m.messagesDelivered, 2);
  assert.equal(m.messagesFailed, 0);
});

test('resilience - calls refused locally (too_large, bad_message) are not breaker successes and free their trial slot', async (t) => {
  let answer = false;
  const onRequest = (msg, conn, reply) => (answer ? reply('ok') : reply(null, { error: { code: 'no_responders', message: 'nobody' } }));
  const { client } = await setup(t, { onRequest, maxFrameSize: 1024 }, { circuitBreaker: { failureThreshold: 1, resetTimeout: 0, successThreshold: 1 } });
  await client.connect();
  const big = 'x'.repeat(4096);
  await assert.rejects(client.sendRequest('svc', big), { code: ErrorCode.TOO_LARGE });
  await assert.rejects(client.sendRequest('svc', 10n), { code: ErrorCode.BAD_MESSAGE }); // not JSON
  assert.equal(client.circuitBreakers().svc.successes, 0);
  await assert.rejects(client.sendRequest('svc', 1), { code: ErrorCode.NO_RESPONDERS }); // opens; resetTimeout 0: HALF_OPEN next
  await assert.rejects(client.sendRequest('svc', big), { code: ErrorCode.TOO_LARGE }); // takes the one trial slot, then gives it back
  let snap = client.circuitBreakers().svc;
  assert.equal(snap.state, 'half_open');
  assert.equal(snap.successes, 0);
  answer = true;
  assert.equal((await client.sendRequest('svc', 1)).payload, 'ok'); // the slot is free
  snap = client.circuitBreakers().svc;
  assert.equal(snap.state, 'closed');
  assert.equal(snap.successes, 1);
});

test('resilience - a throwing "reconnecting" listener never makes an unhandled rejection; the client still reconnects', async (t) => {
  const { proxy, client } = await setup(t);
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));
  await client.connect();
  const bug = new Error('listener bug');
  client.once('reconnecting', () => {
    throw bug;
  });
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const connected = waitFor(client, 'connected', 3000);
  proxy.cut();
  await connected;
  await new Promise((r) => setImmediate(r)); // let a rejection surface, if any
  assert.deepEqual(unhandled, []);
  assert.ok(errors.includes(bug));
  assert.equal(client.state, 'connected');
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

test('resilience - a frame cut in the middle fails the call in flight with connection_lost; the client reconnects', async (t) => {
  const { proxy, client } = await setup(t, { onRequest: (msg, conn, reply) => reply('x'.repeat(1000)) });
  await client.connect();
  proxy.closeMidFrame();
  await assert.rejects(client.sendRequest('a', 1, 2000), { code: ErrorCode.CONNECTION_LOST });
  await waitFor(client, 'reconnected', 2000);
  assert.equal((await client.sendRequest('a', 1, 2000)).payload.length, 1000);
});

test('resilience - under a flapping connection every call settles once, never past its deadline', async (t) => {
  const onRequest = (msg, conn, reply) => setTimeout(() => reply(msg.payload), (msg.payload % 7) * 3);
  const { proxy, client } = await setup(t, { onRequest });
  await client.connect();
  const outcomes = new Map();
  const calls = [];
  for (let i = 0; i < 150; i++) {
    const timeout = 100 + (i % 5) * 100;
    const started = performance.now();
    const settle = (kind) => () => {
      outcomes.set(i, (outcomes.get(i) ?? 0) + 1);
      return { kind, late: performance.now() - started - timeout };
    };
    const promise = i % 3 === 0 ? client.publish('fire', i).then(settle('ok'), settle('err')) : client.sendRequest('echo', i, timeout).then(settle('ok'), settle('err'));
    calls.push(promise);
    if (i % 30 === 10) proxy.cut();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const results = await Promise.all(calls);
  assert.equal(outcomes.size, 150);
  assert.ok([...outcomes.values()].every((n) => n === 1));
  for (const r of results) assert.ok(r.late < 60, `settled ${r.late} ms past its deadline`);
  assert.ok(results.some((r) => r.kind === 'ok'));
  const m = client.getMetrics();
  assert.equal(m.messagesDelivered + m.messagesFailed, 150);
});

test('resilience - metrics and health keys', async (t) => {
  const { proxy, client } = await setup(t);
  assert.deepEqual(Object.keys(client.getMetrics()), [
    'connectionAttempts',
    'connectionSuccesses',
    'connectionSuccessRate',
    'reconnections',
    'averageReconnectionTimeMs',
    'messagesSent',
    'messagesDelivered',
    'messagesFailed',
    'messageDeliveryRate',
    'activeConnections',
    'averageConnectionDurationMs',
    'cacheHits',
    'cacheMisses',
    'cacheSize',
    'requestsCoalesced',
    'iteratorDropped',
    'queued',
    'queuedBytes',
    'queueDropped',
    'lateAnswers'
  ]);
  assert.deepEqual(client.getConnectionHealth(), {
    healthy: false,
    state: 'disconnected',
    lastHeartbeat: null,
    lastReceived: null,
    latencyMs: null,
    heartbeatIntervalMs: null,
    heartbeatTimeoutMs: null
  });
  const events = record(client, ['connecting', 'connected']);
  await client.connect();
  assert.deepEqual(events.map(([name]) => name), ['connecting', 'connected']);
  assert.equal(client.getMetrics().activeConnections, 1);
  const reconnected = waitFor(client, 'reconnected', 2000);
  proxy.cut();
  await reconnected;
  const m = client.getMetrics();
  assert.equal(m.connectionAttempts, m.connectionSuccesses);
  assert.equal(m.reconnections, 1);
  assert.ok(m.averageReconnectionTimeMs > 0);
  assert.ok(m.averageConnectionDurationMs > 0);
  await client.disconnect();
  assert.equal(client.getMetrics().activeConnections, 0);
  assert.equal(client.state, 'disconnected');
});

/** A promise and the function that resolves it. */
function gate() {
  let open;
  const promise = new Promise((resolve) => (open = resolve));
  return { promise, open };
}

test('resilience - held inbound work never stops reading: pings are answered, a held request past its deadline is dropped unrun', async (t) => {
  const { peer, client } = await setup(t, {}, { maxConcurrentHandlers: 1 });
  await client.connect();
  const [socket] = peer.sockets; // this peer speaks first on it, as a server forwarding requests does
  const send = (msg) => socket.write(encodeFrame(encodeMessage(msg)));
  const busy = gate();
  const ran = [];
  await client.serve('work', async (msg) => {
    ran.push(msg.payload);
    if (msg.payload === 0) await busy.promise;
    return msg.payload;
  });
  // One request runs (and blocks), far more than 4 x maxConcurrentHandlers wait; the short ones expire while held.
  send(buildMessage('request', 'app', 'work', 0, { timeout_ms: 10_000 }));
  for (let i = 1; i <= 10; i++) send(buildMessage('request', 'app', 'work', i, { timeout_ms: i <= 8 ? 50 : 10_000 }));
  await until(() => client.getConnectionInfo().heldMessages === 10, 2000, 'ten held requests');

  // The server pings this client: the pong must come back although work is held.
  const ping = buildMessage('request', 'app', 'system', { action: 'ping' });
  const pong = nextReceived(peer, (m) => m.reply_to === ping.message_id, 1000);
  send(ping);
  assert.deepEqual((await pong).payload, { status: 'pong' });

  await new Promise((r) => setTimeout(r, 80)); // requests 1-8 are now past their timeout_ms
  const answers = [0, 9, 10].map((i) => nextReceived(peer, (m) => m.message_type === 'response' && m.payload === i, 2000));
  busy.open();
  await Promise.all(answers);
  assert.deepEqual(ran, [0, 9, 10]); // the expired ones never ran: the server had answered them already
  assert.equal(client.getConnectionInfo().heldMessages, 0);
});

test('resilience - a call blocked on a full socket buffer still ends at its deadline', async (t) => {
  const { proxy, client } = await setup(t, { heartbeatIntervalMs: 30_000 });
  await client.connect();
  proxy.blackhole(true); // bytes stop flowing: the socket buffers fill up
  const payload = 'y'.repeat(8_000_000);
  for (const call of [() => client.sendRequest('sink', payload, 500), () => client.publish('sink', payload, { timeout: 500 })]) {
    const started = performance.now();
    await assert.rejects(call(), (err) => err.code === ErrorCode.TIMEOUT && err.remote === false);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 500 + 2000, `rejected after ${elapsed} ms`);
  }
  const m = client.getMetrics();
  assert.equal(m.messagesFailed, 2);
  assert.equal(m.messagesDelivered, 0);
});

test('resilience - disconnect() then connect() while the first connect is opening leaves one live connection', async (t) => {
  const { proxy, client } = await setup(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  proxy.setLatency(100); // the handshake takes a while
  const first = client.connect();
  first.catch(() => {});
  await until(() => proxy.accepted === 1, 2000, 'the first TCP connection');
  await client.disconnect();
  proxy.setLatency(0);
  assert.equal(await client.connect(), true);
  await assert.rejects(first, { code: ErrorCode.NOT_CONNECTED });
  assert.equal(client.state, 'connected');
  assert.equal((await client.sendRequest('echo', 'live', 2000)).payload, 'live');
  await until(() => proxy.connections === 1, 2000, 'the stale attempt to close its socket');
  assert.equal(client.getMetrics().activeConnections, 1);

  // The other order: the stale attempt fails only after the second one has started.
  await client.disconnect();
  proxy.setLatency(100);
  const stale = client.connect();
  stale.catch(() => {});
  await until(() => proxy.accepted === 3, 2000, 'the third TCP connection');
  await client.disconnect();
  const second = client.connect(); // starts before the stale attempt's socket has closed
  proxy.setLatency(0);
  await assert.rejects(stale, { code: ErrorCode.NOT_CONNECTED });
  assert.equal(await second, true);
  assert.equal((await client.sendRequest('echo', 'again', 2000)).payload, 'again');
  await until(() => proxy.connections === 1, 2000, 'one connection');
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

test('resilience - a throwing connected listener neither rejects connect() nor stops the queue replay; its error goes to "error"', async (t) => {
  const { proxy, client } = await setup(t, { onRequest: (msg, conn, reply) => reply(typeof msg.payload === 'number' ? msg.payload : msg.payload.length) });
  proxy.setLatency(50); // calls made while the handshake runs are queued
  let thrown = false;
  client.on('connected', () => {
    if (thrown) return;
    thrown = true;
    throw new Error('a broken listener');
  });
  const errors = record(client, ['error']);
  const connecting = client.connect();
  const big = 'x'.repeat(1_000_000);
  const queued = Array.from({ length: 8 }, () => client.sendRequest('echo', big, 5000));
  proxy.setLatency(0);
  assert.equal(await connecting, true);
  assert.deepEqual(errors.map(([, err]) => err.message), ['a broken listener']);
  assert.equal(client.state, 'connected');
  assert.equal((await client.sendRequest('echo', 7, 2000)).payload, 7);
  assert.deepEqual((await Promise.all(queued)).map((r) => r.payload), Array(8).fill(1_000_000));
  assert.equal(client.queueStats().size, 0);

  // After a reconnection, too: the listener's error goes to 'error', the queue is sent.
  thrown = false;
  errors.length = 0;
  await goOffline(client, proxy);
  const later = client.sendRequest('echo', 3, 5000);
  proxy.refuse(false);
  assert.equal((await later).payload, 3);
  assert.ok(errors.some(([, err]) => /a broken listener/.test(err.message)));
});

test('resilience - queueStats().dropped counts every entry that left the queue unsent, refused ones included', async (t) => {
  const { proxy, client } = await setup(t);
  await client.connect();
  const small = new Peer({ maxFrameSize: 1000 }); // the next server takes smaller frames
  await small.listen();
  t.after(() => small.close());
  await goOffline(client, proxy);
  proxy.retarget('127.0.0.1', small.port);
  const drops = record(client, ['queue_dropped']);
  const request = client.sendRequest('big', 'r'.repeat(5000), 3000);
  await client.publish('big', 'p'.repeat(5000));
  await client.publish('ok', 1);
  const delivered = nextReceived(small, (m) => m.channel_id === 'ok');
  proxy.refuse(false);
  await assert.rejects(request, { code: ErrorCode.TOO_LARGE });
  await delivered;
  assert.deepEqual(drops.map(([, arg]) => [arg.reason, arg.channel]), [['refused', 'big']]);
  assert.equal(client.queueStats().dropped, 2);
  assert.equal(client.getMetrics().queueDropped, 2);
});

test('resilience - a queue file has one owner: a second client fails clearly; disconnect() gives it back, connect() takes it again', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-resilience-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const queuePath = path.join(dir, 'outbox.bin');
  const { peer, proxy, client } = await setup(t, {}, { queuePath });
  await client.connect();
  assert.throws(() => new IPCClient('app', { port: peer.port, queuePath }), (err) => err.code === 'EQUEUELOCKED' && err.message.includes(queuePath));
  await goOffline(client, proxy);
  await client.notify('jobs', 1, { timeout: 10_000 });
  await client.disconnect();
  const second = new IPCClient('app', { host: '127.0.0.1', port: peer.port, ...FAST, queuePath });
  t.after(() => second.disconnect());
  assert.equal(second.queueStats().size, 1);
  proxy.refuse(false);
  await assert.rejects(client.connect(), (err) => err.code === 'EQUEUELOCKED' && err.message.includes(queuePath));
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
