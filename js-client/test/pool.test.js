'use strict';

// ConnectionPool (docs/resilience.md §7) on real sockets against the scripted
// peer of test/helpers.js. Every wait is bounded by an event or a deadline.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionPool, sumMetrics } = require('../lib/pool');
const { DEFAULTS } = require('../lib/constants');
const { ErrorCode } = require('../lib/errors');
const { IPCClient } = require('../lib/client');
const { Peer, waitFor, freePort } = require('./helpers');

/** Fast backoff, whichever name the client options give it. */
const FAST = 'initialDelay' in DEFAULTS ? { initialDelay: 20, maxDelay: 50 } : { reconnectDelay: 20, reconnectDelayMax: 50 };

/**
 * A peer answering `echo` requests (after `delayMs`) and a pool on it.
 */
async function setup(t, poolOptions = {}, { delayMs = 0 } = {}) {
  const peer = new Peer({
    onRequest: (msg, conn, reply) => {
      if (delayMs > 0) setTimeout(() => reply(msg.payload), delayMs);
      else reply(msg.payload);
    }
  });
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, ...FAST, ...poolOptions });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  return { peer, port, pool };
}


/** Waits until `pred()` holds, checking on each of the emitter's events. */
async function until(emitter, events, pred, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('condition not met in time');
    await Promise.race(events.map((e) => waitFor(emitter, e, left).catch(() => {})));
  }
}

test('pool - defaults and option checks', () => {
  const pool = new ConnectionPool('app');
  assert.deepEqual(
    [pool.minConnections, pool.maxConnections, pool.acquireTimeout, pool.idleTimeout],
    [1, 10, 5000, 30000]
  );
  assert.equal(pool.leaseThreshold, 1);
  assert.throws(() => new ConnectionPool('app', { maxConnections: 0 }), TypeError);
  assert.throws(() => new ConnectionPool('app', { minConnections: 3, maxConnections: 2 }), RangeError);
  assert.throws(() => new ConnectionPool('app', { acquireTimeout: -1 }), TypeError);
  assert.throws(() => new ConnectionPool('app', { leaseThreshold: 0 }), TypeError);
  assert.throws(() => new ConnectionPool('app', { port: 'eighty' }), TypeError); // client options are checked too
  const lenient = new ConnectionPool('app', { maxConnections: '4', acquireTimeout: ' 250 ', port: '9000', poolBogusOption: 1 });
  assert.deepEqual([lenient.maxConnections, lenient.acquireTimeout, lenient.port], [4, 250, 9000]); // an unknown key only warns
  assert.throws(() => new ConnectionPool(''), TypeError);
});

test('pool - start() opens minConnections; acquire, release and execute', async (t) => {
  const { pool, peer } = await setup(t, { minConnections: 2, maxConnections: 3 });
  await pool.start();
  assert.deepEqual(pool.stats(), { total: 2, available: 2, inUse: 0, pending: 0, totalCreated: 2, totalDestroyed: 0 });
  // the counters are read through stats(): the instance's public fields are the settings index.d.ts declares
  const fields = ['acquireTimeout', 'appId', 'host', 'idleTimeout', 'leaseThreshold', 'maxConnections', 'minConnections', 'port'];
  assert.deepEqual(Object.keys(pool).filter((k) => !k.startsWith('_')).sort(), fields);
  const a = await pool.acquire();
  assert.equal(a.connected, true);
  assert.equal(a.options.reconnect, false); // the pool replaces members itself
  assert.equal(pool.stats().inUse, 1);
  assert.equal((await a.sendRequest('echo', 'x')).payload, 'x');
  assert.equal(pool.release(a), true);
  assert.equal(pool.release(a), false); // twice: ignored
  assert.equal(pool.release(await pool.acquire({ timeout: 0 })), true); // a zero timeout takes an idle member
  assert.equal(await pool.execute(async (c) => (await c.sendRequest('echo', 7)).payload), 7);
  await assert.rejects(pool.execute(async () => { throw new Error('boom'); }), /boom/);
  assert.deepEqual(pool.stats(), { total: 2, available: 2, inUse: 0, pending: 0, totalCreated: 2, totalDestroyed: 0 });
  assert.equal(peer.received.filter((m) => m.channel_id === 'system' && m.payload.action === 'connect').length, 2);
});

test('pool - opens up to maxConnections, then waits FIFO and times out with code timeout', async (t) => {
  const { pool } = await setup(t, { minConnections: 0, maxConnections: 2, acquireTimeout: 150 });
  const a = await pool.acquire();
  const b = await pool.acquire();
  assert.notEqual(a, b);
  const order = [];
  const first = pool.acquire().then((c) => (order.push('first'), c));
  const second = pool.acquire().then((c) => (order.push('second'), c));
  assert.equal(pool.stats().pending, 2);
  pool.release(b);
  assert.equal(await first, b); // the released client goes to the oldest waiter
  pool.release(a);
  assert.equal(await second, a);
  assert.deepEqual(order, ['first', 'second']);
  const start = Date.now();
  await assert.rejects(pool.acquire(), { code: ErrorCode.TIMEOUT });
  const elapsed = Date.now() - start;
  assert.ok(elapsed >= 140 && elapsed < 3000, `${elapsed} ms`);
  await assert.rejects(pool.acquire({ timeout: 0 }), { code: ErrorCode.TIMEOUT }); // only waiting times out
  assert.deepEqual(pool.stats(), { total: 2, available: 0, inUse: 2, pending: 0, totalCreated: 2, totalDestroyed: 0 });
});

test('pool - concurrent work never exceeds maxConnections and every call gets its own answer', async (t) => {
  const { pool } = await setup(t, { minConnections: 1, maxConnections: 4 }, { delayMs: 2 });
  await pool.start();
  let busy = 0;
  let peak = 0;
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      pool.execute(async (c) => {
        peak = Math.max(peak, ++busy);
        try {
          return (await c.sendRequest('echo', i)).payload;
        } finally {
          busy--;
        }
      })
    )
  );
  assert.deepEqual(results, Array.from({ length: 100 }, (_, i) => i));
  assert.equal(peak, 4);
  const s = pool.stats();
  assert.equal(s.totalCreated, 4);
  assert.equal(s.total, s.available + s.inUse);
  assert.deepEqual([s.inUse, s.pending], [0, 0]);
});

test('pool - a connection that cannot be opened rejects acquire() with not_connected at once', async (t) => {
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port: await freePort(), minConnections: 0, acquireTimeout: 5000 });
  t.after(() => pool.close());
  const start = Date.now();
  const all = await Promise.allSettled([pool.acquire(), pool.acquire(), pool.acquire()]);
  for (const r of all) {
    assert.equal(r.status, 'rejected');
    assert.equal(r.reason.code, ErrorCode.NOT_CONNECTED);
    assert.equal(r.reason.cause.code, 'ECONNREFUSED');
  }
  assert.ok(Date.now() - start < 2500, 'not at the acquire timeout');
  assert.deepEqual(pool.stats(), { total: 0, available: 0, inUse: 0, pending: 0, totalCreated: 0, totalDestroyed: 0 });
  await pool.start(); // minConnections 0: nothing to open
  const eager = new ConnectionPool('app', { host: '127.0.0.1', port: pool.port, minConnections: 2 });
  t.after(() => eager.close());
  await assert.rejects(eager.start(), { code: ErrorCode.NOT_CONNECTED });
});

test('pool - close() fails waiting acquires with not_connected, and every later call', async (t) => {
  const { pool } = await setup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  const held = await pool.acquire();
  const waiting = assert.rejects(pool.acquire(), { code: ErrorCode.NOT_CONNECTED });
  await pool.close();
  await waiting;
  await assert.rejects(pool.acquire(), { code: ErrorCode.NOT_CONNECTED });
  await assert.rejects(pool.start(), { code: ErrorCode.NOT_CONNECTED });
  assert.equal(held.connected, false);
  assert.equal(pool.release(held), false);
  assert.deepEqual(pool.stats(), { total: 0, available: 0, inUse: 0, pending: 0, totalCreated: 1, totalDestroyed: 1 });
});

test('pool - members whose connection drops are destroyed once nobody holds them, and replaced up to minConnections', async (t) => {
  // The same scenario and counts as tests/test_pool.py::test_dead_members_are_destroyed_and_replaced.
  const { pool, peer } = await setup(t, { minConnections: 2, maxConnections: 3 });
  await pool.start();
  const lost = [];
  pool.on('connection_lost', (e) => lost.push(e));
  const held = await pool.acquire();
  peer.drop();
  // The idle one is destroyed and replaced; the held one stays its holder's until released.
  await until(pool, ['created', 'destroyed', 'connection_lost'], () => lost.length === 2 && pool.stats().totalCreated === 3);
  assert.ok(lost.every((e) => e.client.connected === false));
  assert.deepEqual(pool.stats(), { total: 2, available: 1, inUse: 1, pending: 0, totalCreated: 3, totalDestroyed: 1 });
  const destroyed = waitFor(pool, 'destroyed', 3000);
  assert.equal(pool.release(held), true); // dead on release: destroyed and replaced
  assert.equal((await destroyed)[0].client, held);
  await until(pool, ['created'], () => pool.stats().available === 2);
  assert.deepEqual(pool.stats(), { total: 2, available: 2, inUse: 0, pending: 0, totalCreated: 4, totalDestroyed: 2 });
  assert.equal(await pool.execute(async (c) => (await c.sendRequest('echo', 'back')).payload), 'back');
});

test('pool - a held member that dies keeps its place until released: a full pool times out, as the Python pool', async (t) => {
  const { pool, peer } = await setup(t, { minConnections: 1, maxConnections: 1, acquireTimeout: 200 });
  await pool.start();
  const held = await pool.acquire();
  const lost = waitFor(pool, 'connection_lost', 3000);
  peer.drop();
  await lost;
  assert.equal(held.connected, false);
  const full = { total: 1, available: 0, inUse: 1, pending: 0, totalCreated: 1, totalDestroyed: 0 };
  assert.deepEqual(pool.stats(), full); // not destroyed under its holder, nor replaced beside it
  await assert.rejects(pool.acquire(), { code: ErrorCode.TIMEOUT });
  assert.deepEqual(pool.stats(), full);
  const next = pool.acquire({ timeout: 3000 });
  assert.equal(pool.release(held), true); // closed now, and its replacement goes to the waiter
  const fresh = await next;
  assert.ok(fresh !== held && fresh.connected);
  assert.deepEqual(pool.stats(), { total: 1, available: 0, inUse: 1, pending: 0, totalCreated: 2, totalDestroyed: 1 });
  pool.release(fresh);
});

test('pool - a shared member that dies is closed when its last lease call ends', async (t) => {
  const { pool, peer } = await setup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  let end;
  const gate = new Promise((resolve) => (end = resolve));
  let leased = null;
  const call = pool.lease(async (c) => {
    leased = c;
    await gate;
    return c.connected;
  });
  const lost = waitFor(pool, 'connection_lost', 3000);
  peer.drop();
  await lost;
  assert.deepEqual([pool.stats().inUse, pool.stats().totalDestroyed], [1, 0]);
  const destroyed = waitFor(pool, 'destroyed', 3000);
  end();
  assert.equal(await call, false);
  assert.equal((await destroyed)[0].client, leased);
  await until(pool, ['created'], () => pool.stats().available === 1);
  assert.deepEqual([pool.stats().totalCreated, pool.stats().totalDestroyed], [2, 1]);
});

test('pool - replacement retries with backoff while the server is down', async (t) => {
  const peer = new Peer();
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, minConnections: 1, ...FAST });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  await pool.start();
  const errors = [];
  pool.on('error', (err) => errors.push(err));
  await peer.close();
  await until(pool, ['error'], () => errors.length >= 2);
  assert.equal(pool.stats().total, 0);
  assert.equal(errors[0].code, ErrorCode.NOT_CONNECTED);
  await assert.rejects(pool.acquire(), { code: ErrorCode.NOT_CONNECTED });
  const again = new Peer();
  await again.listen(port);
  t.after(() => again.close());
  await waitFor(pool, 'created', 3000);
  assert.deepEqual(pool.stats().total, 1);
});

test('pool - a released client that is no longer connected is destroyed', async (t) => {
  const { pool } = await setup(t, { minConnections: 1, maxConnections: 2 });
  await pool.start();
  const c = await pool.acquire();
  c.removeAllListeners('disconnected'); // as if the pool had not heard yet
  await c.disconnect();
  assert.equal(pool.release(c), true);
  assert.equal(pool.stats().totalDestroyed, 1);
  await until(pool, ['created'], () => pool.stats().total === 1);
});

test('pool - idle members above minConnections are closed after idleTimeout', async (t) => {
  const { pool } = await setup(t, { minConnections: 1, maxConnections: 3, idleTimeout: 40 });
  await pool.start();
  const clients = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
  assert.equal(pool.stats().total, 3);
  for (const c of clients) pool.release(c);
  await until(pool, ['destroyed'], () => pool.stats().total === 1);
  assert.deepEqual(pool.stats(), { total: 1, available: 1, inUse: 0, pending: 0, totalCreated: 3, totalDestroyed: 2 });
});

test('pool - a listener that acquires while the pool closes idle members never gets one being closed', async (t) => {
  const { pool } = await setup(t, { minConnections: 0, maxConnections: 2, idleTimeout: 40 });
  const [a, b] = [await pool.acquire(), await pool.acquire()];
  pool.release(a);
  pool.release(b);
  const busyUntil = performance.now() + 60; // both idle timers come due together: one plan closes both
  while (performance.now() < busyUntil);
  const got = new Promise((resolve) => pool.once('destroyed', () => resolve(pool.acquire())));
  const client = await got;
  assert.equal(client.connected, true);
  assert.ok(client !== a && client !== b);
  assert.deepEqual([pool.stats().inUse, pool.stats().totalDestroyed], [1, 2]);
  pool.release(client);
});

test('pool - healthCheck() pings on a busy member too, and reports a dead server', async (t) => {
  const { pool, peer } = await setup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  const held = await pool.acquire();
  const ok = await pool.healthCheck({ timeout: 1000 });
  assert.equal(ok.healthy, true);
  assert.equal(typeof ok.latencyMs, 'number');
  peer.silent = true;
  const silent = await pool.healthCheck({ timeout: 100 });
  assert.deepEqual(silent, { healthy: false, latencyMs: null, error: ErrorCode.TIMEOUT });
  pool.release(held);
});

test('pool - getMetrics() has every key with no member live; sums recompute rates and averages', async (t) => {
  const { pool, peer } = await setup(t, { minConnections: 1, initialDelay: 5000, maxDelay: 5000 });
  const keys = Object.keys(new IPCClient('app', { host: '127.0.0.1', port: 1 }).getMetrics()).sort();
  const current = ['activeConnections', 'queued', 'queuedBytes', 'cacheSize'];
  const check = (m, active, where) => {
    assert.deepEqual(Object.keys(m).sort(), keys, where); // the Python pool's keys too (tests/test_pool_metrics.py)
    assert.deepEqual(current.map((k) => m[k]), [active, 0, 0, 0], where);
  };
  check(pool.getMetrics(), 0, 'before start()');
  await pool.start();
  assert.equal(await pool.request('echo', 1), 1);
  check(pool.getMetrics(), 1, 'a member live');
  await peer.close(); // the server goes: its member is lost, and no other opens
  await until(pool, ['destroyed'], () => pool.stats().total === 0);
  check(pool.getMetrics(), 0, 'the server down');
  assert.equal(pool.getMetrics().messagesDelivered, 1); // the counters stay
  await pool.close();
  check(pool.getMetrics(), 0, 'after close()');
  assert.equal(pool.getMetrics().messagesDelivered, 1);
  const sum = sumMetrics([
    { connectionAttempts: 2, connectionSuccesses: 1, connectionSuccessRate: 0.5, messagesDelivered: 3, messagesFailed: 1, messageDeliveryRate: 0.75, reconnections: 1, averageReconnectionTimeMs: 100, activeConnections: 1, averageConnectionDurationMs: 10 },
    { connectionAttempts: 2, connectionSuccesses: 2, connectionSuccessRate: 1, messagesDelivered: 4, messagesFailed: 0, messageDeliveryRate: 1, reconnections: 3, averageReconnectionTimeMs: 300, activeConnections: 1, averageConnectionDurationMs: 40 }
  ]);
  assert.equal(sum.connectionAttempts, 4);
  assert.equal(sum.connectionSuccessRate, 0.75);
  assert.equal(sum.messageDeliveryRate, 7 / 8);
  assert.equal(sum.averageReconnectionTimeMs, 250);
  assert.equal(sum.activeConnections, 2);
  assert.equal(sum.averageConnectionDurationMs, 30);
});

test('pool - a closed member\'s mean is weighed in, and means are in ms to 3 decimals as in Python', () => {
  const { foldRetired } = require('../lib/pool_metrics');
  let retired = foldRetired(null, { connectionSuccesses: 1, averageConnectionDurationMs: 10, activeConnections: 1 });
  retired = foldRetired(retired, { connectionSuccesses: 2, averageConnectionDurationMs: 0.5, activeConnections: 1 });
  // (10 + 2 x 0.5) / 3 = 3.666...: rounded once, when the pool reports (tests/test_pool_metrics.py)
  assert.equal(sumMetrics([retired]).averageConnectionDurationMs, 3.667);
  assert.equal(sumMetrics([retired]).activeConnections, undefined);
  const live = { connectionSuccesses: 1, averageConnectionDurationMs: 1, activeConnections: 1 };
  assert.equal(sumMetrics([retired, live]).averageConnectionDurationMs, 3); // (11 + 1) / 4
});

/**
 * A peer that holds every request until `release()` answers them all, and a
 * pool on it. `held` fills as requests arrive.
 */
async function holdingSetup(t, poolOptions = {}) {
  const held = [];
  const peer = new Peer({ onRequest: (msg, conn, reply) => held.push(() => reply(msg.payload)) });
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, ...FAST, ...poolOptions });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  const release = () => held.splice(0).forEach((answer) => answer());
  return { peer, pool, held, release };
}

test('pool - lease() runs many calls at once on one shared connection', async (t) => {
  const { pool, peer, held, release } = await holdingSetup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  const N = 25;
  const calls = Array.from({ length: N }, (_, i) => pool.lease(async (c) => (await c.sendRequest('echo', i, 3000)).payload));
  await until(peer.events, ['message'], () => held.length === N);
  assert.equal(peer.sockets.size, 1);
  assert.deepEqual(pool.stats(), { total: 1, available: 0, inUse: 1, pending: 0, totalCreated: 1, totalDestroyed: 0 });
  release();
  assert.deepEqual(await Promise.all(calls), Array.from({ length: N }, (_, i) => i));
  assert.deepEqual(pool.stats(), { total: 1, available: 1, inUse: 0, pending: 0, totalCreated: 1, totalDestroyed: 0 });
  await assert.rejects(pool.lease(async () => { throw new Error('boom'); }), /boom/);
  assert.equal(pool.stats().available, 1); // given back even when fn throws
  await assert.rejects(pool.lease('nope'), TypeError);
});

test('pool - lease() opens another member only once every member has leaseThreshold calls in flight', async (t) => {
  const { pool, peer, held, release } = await holdingSetup(t, { minConnections: 1, maxConnections: 2, leaseThreshold: 2 });
  await pool.start();
  const clients = [];
  const call = (i) => pool.lease((c) => (clients.push(c), c.sendRequest('echo', i, 3000)));
  const arrived = (n) => until(peer.events, ['message'], () => held.length === n);
  const calls = [call(0), call(1)];
  await arrived(2);
  assert.equal(pool.stats().totalCreated, 1); // below the threshold: no new member
  const created = waitFor(pool, 'created', 3000);
  calls.push(call(2)); // every member at the threshold: one more opens, in the background
  await arrived(3);
  assert.equal(clients[2], clients[0], 'the call went on the busy member rather than wait');
  await created;
  calls.push(call(3));
  await arrived(4);
  assert.notEqual(clients[3], clients[0], 'the new member takes the next call');
  calls.push(call(4), call(5), call(6));
  await arrived(7);
  const on = (c) => clients.filter((x) => x === c).length;
  assert.deepEqual([on(clients[0]), on(clients[3])], [4, 3]); // fewest in flight first
  assert.deepEqual(pool.stats(), { total: 2, available: 0, inUse: 2, pending: 0, totalCreated: 2, totalDestroyed: 0 }); // never past maxConnections
  release();
  await Promise.all(calls);
  assert.deepEqual(pool.stats(), { total: 2, available: 2, inUse: 0, pending: 0, totalCreated: 2, totalDestroyed: 0 });
});

test('pool - lease() never takes a member held by acquire(), and waits for a first connection without opening one per call', async (t) => {
  const { pool } = await setup(t, { minConnections: 0, maxConnections: 1, acquireTimeout: 150 });
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.lease(async (c) => (await c.sendRequest('echo', i)).payload)));
  assert.deepEqual(results, Array.from({ length: 10 }, (_, i) => i));
  assert.equal(pool.stats().totalCreated, 1); // all ten shared the one connection opened for them
  const held = await pool.acquire();
  await assert.rejects(pool.lease(() => 1), { code: ErrorCode.TIMEOUT });
  const waiting = pool.lease((c) => c, { timeout: 2000 });
  assert.equal(pool.stats().pending, 1);
  pool.release(held);
  assert.equal(await waiting, held); // released, then shared
  assert.deepEqual(pool.stats(), { total: 1, available: 1, inUse: 0, pending: 0, totalCreated: 1, totalDestroyed: 0 });
});

test('pool - an exclusive acquire() waits for the shared calls to end', async (t) => {
  const { pool, peer, held, release } = await holdingSetup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  const shared = [pool.lease((c) => c.sendRequest('echo', 1, 3000)), pool.lease((c) => c.sendRequest('echo', 2, 3000))];
  await until(peer.events, ['message'], () => held.length === 2);
  let got = null;
  const exclusive = pool.acquire({ timeout: 3000 }).then((c) => (got = c));
  assert.equal(pool.stats().pending, 1);
  release();
  await Promise.all(shared);
  const client = await exclusive;
  assert.equal(got, client);
  assert.deepEqual(pool.stats(), { total: 1, available: 0, inUse: 1, pending: 0, totalCreated: 1, totalDestroyed: 0 });
  pool.release(client);
});

test('pool - waiting leases all fail at once with not_connected when the connection cannot be opened', async (t) => {
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port: await freePort(), minConnections: 0, acquireTimeout: 5000 });
  t.after(() => pool.close());
  const start = Date.now();
  const all = await Promise.allSettled(Array.from({ length: 5 }, () => pool.lease(() => 1)));
  assert.ok(all.every((r) => r.status === 'rejected' && r.reason.code === ErrorCode.NOT_CONNECTED));
  assert.ok(Date.now() - start < 2500, 'not at the acquire timeout');
  assert.deepEqual(pool.stats(), { total: 0, available: 0, inUse: 0, pending: 0, totalCreated: 0, totalDestroyed: 0 });
});

test('pool - a shared member whose connection drops fails its calls connection_lost and is replaced', async (t) => {
  const { pool, peer, held } = await holdingSetup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  const calls = Array.from({ length: 3 }, (_, i) => pool.lease((c) => c.sendRequest('echo', i, 3000)));
  await until(peer.events, ['message'], () => held.length === 3);
  peer.drop();
  for (const r of await Promise.allSettled(calls)) assert.equal(r.reason.code, ErrorCode.CONNECTION_LOST);
  await until(pool, ['created', 'destroyed'], () => pool.stats().totalCreated === 2 && pool.stats().total === 1);
  assert.deepEqual(pool.stats(), { total: 1, available: 1, inUse: 0, pending: 0, totalCreated: 2, totalDestroyed: 1 });
});

test('queuePath is refused by ConnectionPool, LoadBalancedClient and ServiceClient: a persisted outbox belongs to one client', () => {
  const { LoadBalancedClient, ServiceClient } = require('..');
  const queuePath = require('node:path').join(require('node:os').tmpdir(), 'never-created.q');
  assert.throws(() => new ConnectionPool('app', { port: 1, queuePath }), { name: 'TypeError', message: /ConnectionPool does not accept queuePath/ });
  assert.throws(() => new LoadBalancedClient('app', ['127.0.0.1:1'], { queuePath }), { name: 'TypeError', message: /LoadBalancedClient does not accept queuePath/ });
  assert.throws(() => new ServiceClient({ svc: { port: 1 } }, { queuePath }), { name: 'TypeError', message: /ServiceClient does not accept queuePath/ });
  assert.equal(require('node:fs').existsSync(queuePath), false);
  new ConnectionPool('app', { port: 1, queuePath: null }); // explicitly off is fine
});

test('pool - failed opens are attempts and calls that reached no member are failed, as a lone client counts them', async (t) => {
  const port = await freePort(); // nothing listens: every open is refused
  const lone = new IPCClient('app', { host: '127.0.0.1', port, reconnect: false });
  await assert.rejects(lone.connect(), { code: ErrorCode.NOT_CONNECTED });
  assert.deepEqual([lone.getMetrics().connectionAttempts, lone.getMetrics().connectionSuccessRate], [1, 0]);
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, initialDelay: 5000 }); // no background retry meanwhile
  pool.on('error', () => {});
  t.after(() => pool.close());
  await assert.rejects(pool.start(), { code: ErrorCode.NOT_CONNECTED });
  for (let i = 0; i < 3; i++) await assert.rejects(pool.request('x', 1, { timeout: 500 }), { code: ErrorCode.NOT_CONNECTED });
  const m = pool.getMetrics();
  // was 0 attempts, a success rate of 1, 0 failed
  assert.deepEqual([m.connectionAttempts, m.connectionSuccesses, m.connectionSuccessRate, m.messagesFailed, m.messageDeliveryRate], [4, 0, 0, 3, 0]);
  await pool.close();
  await assert.rejects(pool.request('x', 1), { code: ErrorCode.NOT_CONNECTED });
  assert.equal(pool.getMetrics().messagesFailed, 4);
});

test('pool - a stream that reached no connection is failed, as a request; one its reader left is not', async (t) => {
  // The same counts as tests/test_pool_failed_counts.py::test_a_stream_that_reached_no_connection_is_failed_as_a_request (all were 0).
  const { LoadBalancedClient } = require('../lib/load_balanced_client');
  const port = await freePort(); // nothing listens: every open is refused
  const down = new ConnectionPool('app', { host: '127.0.0.1', port, minConnections: 0, initialDelay: 5000 });
  down.on('error', () => {});
  await assert.rejects(down.stream('x', null, { timeout: 500 }).next(), { code: ErrorCode.NOT_CONNECTED }); // its open refused
  assert.equal(down.getMetrics().messagesFailed, 1);
  const aborted = new AbortController();
  const left = down.stream('x', null, { signal: aborted.signal }).next();
  aborted.abort();
  await assert.rejects(left, { name: 'AbortError' });
  assert.equal(down.getMetrics().messagesFailed, 1); // the reader's doing: not counted
  await down.close();
  await assert.rejects(down.stream('x').next(), { code: ErrorCode.NOT_CONNECTED }); // closed
  assert.equal(down.getMetrics().messagesFailed, 2);

  const { pool } = await setup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  const held = await pool.acquire();
  await assert.rejects(pool.stream('x', null, { timeout: 100 }).next(), { code: ErrorCode.TIMEOUT }); // no member free within its timeout
  pool.release(held);
  assert.equal(pool.getMetrics().messagesFailed, 1);

  const lb = new LoadBalancedClient('app', [`127.0.0.1:${port}`], { healthCheckInterval: null, minConnections: 0, initialDelay: 5000 });
  t.after(() => lb.close());
  await assert.rejects(lb.stream('x').next(), { code: ErrorCode.NOT_CONNECTED, message: /start/ }); // not started: no server tried
  await lb.start();
  await assert.rejects(lb.stream('x', null, { timeout: 1000 }).next(), { code: ErrorCode.NOT_CONNECTED }); // its one server's open refused
  await assert.rejects(lb.stream('x', null, { timeout: 1000 }).next(), { code: ErrorCode.NOT_CONNECTED, message: /no healthy server/ }); // none tried
  assert.equal(lb.getMetrics().messagesFailed, 3);
  assert.equal([...lb._pools.values()][0].getMetrics().messagesFailed, 1);
});

test('pool - after a failed start() it opens minConnections once the server listens, with no call made', async (t) => {
  // As the Python pool now does (tests/test_pool_open_failures.py); interop-tests/test_js_pool_recovery.py runs both.
  const port = await freePort();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, minConnections: 2, maxConnections: 4, ...FAST });
  pool.on('error', () => {}); // the retries that fail before the server listens
  t.after(() => pool.close());
  await assert.rejects(pool.start(), { code: ErrorCode.NOT_CONNECTED });
  const peer = new Peer();
  t.after(() => peer.close());
  await peer.listen(port);
  await until(pool, ['created'], () => pool.stats().total === 2);
  assert.equal(pool.stats().total, 2); // minConnections, and no more
});
