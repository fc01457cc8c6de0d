'use strict';

// docs/resilience.md §2-6 on real loopback sockets: a scripted peer
// (test/helpers.js) behind a fault-injecting proxy (test/fault_proxy.js):
// heartbeats, the circuit breaker, listeners that throw, cut frames,
// flapping connections, metrics and held work (the offline queue:
// test/resilience_queue.test.js). Every wait is bounded and waits for an
// event or a promise, not for time.

const test = require('node:test');
const assert = require('node:assert/strict');
const { performance } = require('node:perf_hooks');
const { ErrorCode, CircuitOpenError } = require('..');
const { waitFor, nextReceived, until } = require('./helpers');
const { proxiedClient: setup, goOffline, record } = require('./proxied');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');

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
  assert.equal(error.code, ErrorCode.CONNECTION_LOST);
  assert.equal(error.cause.code, ErrorCode.TIMEOUT); // the heartbeat's
  assert.ok(silence.silent >= 200, `silent ${silence.silent}`);
  assert.ok(detectedAfter <= 100 + 200 + 60, `detected ${detectedAfter} ms after the last frame`);
  assert.equal(client.state, 'reconnecting');
  assert.equal(client.getConnectionHealth().healthy, false);
  proxy.blackhole(false);
  const [back] = await waitFor(client, 'reconnected', 3000);
  assert.ok(back.attempts >= 1 && back.elapsed > 0, JSON.stringify(back));
  assert.equal(client.getMetrics().reconnections, 1);
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
  await assert.rejects(client.sendRequest('svc', new Map([['k', 1]])), { code: ErrorCode.BAD_MESSAGE }); // JSON would write {}
  assert.throws(() => client.publish('feed', { tags: new Set(['a']) }), { code: ErrorCode.BAD_MESSAGE }); // thrown at the call
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
    'heldDropped',
    'queued',
    'queuedBytes',
    'queueDropped',
    'lateAnswers',
    'producersDetached'
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

for (const [answers, what] of [[1, 'the handshake reply'], [2, "the restored subscription's ack"]]) {
  test(`resilience - a connection lost with ${what} fails the attempt; the next one restores the subscription`, async (t) => {
    const { proxy, peer, client } = await setup(t);
    await client.connect();
    await client.subscribe('after.loss', () => {});
    proxy.closeAfterAnswers(answers);
    proxy.cut();
    // the first connection, the one lost with its answer, the one that holds
    await until(() => proxy.accepted === 3 && client.state === 'connected' && proxy.connections === 1, 3000, 'a connection that holds');
    const resubscribed = nextReceived(peer, (m) => m.message_type === 'subscribe' && m.channel_id === 'after.loss');
    proxy.cut(); // the restored connection is real: losing it starts another reconnection that subscribes again
    await resubscribed;
  });
}
