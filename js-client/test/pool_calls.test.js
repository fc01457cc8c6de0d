'use strict';

// ConnectionPool's waits for a member and its own calls (docs/resilience.md
// §7) on real sockets against the scripted peer of test/helpers.js. Every
// wait is bounded by an event or a deadline.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionPool } = require('../lib/pool');
const { ErrorCode } = require('../lib/errors');
const { Peer, until } = require('./helpers');

/** A peer answering `echo` requests with their payload, and a pool on it. */
async function setup(t, poolOptions = {}, { onRequest } = {}) {
  const peer = new Peer({ onRequest: onRequest ?? ((msg, conn, reply) => reply(msg.payload)) });
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, initialDelay: 20, maxDelay: 50, ...poolOptions });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  return { peer, port, pool };
}

test('pool - a wait for a member that is not a number is refused, not a wait for ever', { timeout: 5000 }, async (t) => {
  // A NaN deadline never passed: acquire({ timeout: NaN }) waited past acquireTimeout, for ever.
  const { pool } = await setup(t, { maxConnections: 1, acquireTimeout: 1000 });
  await pool.start();
  const held = await pool.acquire();
  for (const timeout of [NaN, 'x', null, {}]) {
    await assert.rejects(pool.acquire({ timeout }), TypeError, `acquire ${String(timeout)}`);
    await assert.rejects(pool.execute(() => 1, { timeout }), TypeError, `execute ${String(timeout)}`);
    await assert.rejects(pool.lease(() => 1, { timeout }), TypeError, `lease ${String(timeout)}`);
  }
  assert.equal(pool.stats().pending, 0);
  const started = performance.now();
  await assert.rejects(pool.acquire({ timeout: '50' }), { code: ErrorCode.TIMEOUT }); // a numeric string is its number
  assert.ok(performance.now() - started < 900);
  for (const timeout of [0, -1]) await assert.rejects(pool.acquire({ timeout }), { code: ErrorCode.TIMEOUT }); // passed: no wait
  pool.release(held);
  assert.equal(pool.release(await pool.acquire({ timeout: 0 })), true); // a free member is still taken
  const health = await pool.healthCheck({ timeout: NaN });
  assert.equal(health.healthy, false);
  assert.match(health.error, /timeout/);
});

test('pool - its calls share a member, as lease() and the load balancer share it', async (t) => {
  const held = [];
  const { pool } = await setup(t, { maxConnections: 1 }, {
    onRequest: (msg, conn, reply) => {
      if (msg.channel_id !== 'together') return reply(msg.payload);
      held.push(() => reply(msg.payload));
      if (held.length === 5) for (const answer of held) answer(); // one at a time, none would ever be answered
    }
  });
  await pool.start();
  const results = await Promise.all([0, 1, 2, 3, 4].map((i) => pool.request('together', i, 3000)));
  assert.deepEqual(results, [0, 1, 2, 3, 4]);
  assert.deepEqual([pool.stats().totalCreated, pool.stats().inUse], [1, 0]);
  const res = await pool.sendRequest('echo', 'x', { timeout: 1000, headers: { a: '1' } }); // the options in third place
  assert.equal(res.payload, 'x');
  assert.equal(await pool.request('echo', 'y', '1000'), 'y');
});

test('pool - publish() and notify() go out on a member', async (t) => {
  const { pool, peer } = await setup(t);
  await pool.start();
  assert.equal(await pool.publish('news', 1), undefined);
  await pool.notify('jobs', 2, { timeout: 1000 });
  await pool.request('echo', 'after'); // sent after them on the one connection
  const sent = peer.received.filter((m) => m.channel_id !== 'system').map((m) => [m.message_type, m.channel_id, m.payload]);
  assert.deepEqual(sent, [['publish', 'news', 1], ['notification', 'jobs', 2], ['request', 'echo', 'after']]);
  assert.equal(pool.stats().inUse, 0);
});

test('pool - concurrent coalesced calls join the one in flight on any member', async (t) => {
  const runs = [];
  let release = null;
  const released = new Promise((resolve) => (release = resolve));
  const { pool } = await setup(t, { minConnections: 2, maxConnections: 4 }, {
    onRequest: (msg, conn, reply) => {
      runs.push(msg.payload);
      released.then(() => reply(runs.length));
    }
  });
  await pool.start();
  const calls = [1, 2, 3].map(() => pool.request('counted', { a: 1, b: 2 }, 3000, { coalesce: true }));
  await until(() => runs.length > 0, 3000, 'the first call');
  calls.push(pool.request('counted', { b: 2, a: 1 }, { coalesce: true, timeout: 3000 })); // later, the same key
  await new Promise((resolve) => setImmediate(resolve));
  release();
  assert.deepEqual(await Promise.all(calls), [1, 1, 1, 1]);
  assert.deepEqual(runs, [{ a: 1, b: 2 }]); // each took a member of its own: once per member
  assert.equal(pool.getMetrics().requestsCoalesced, 3);
});

test('pool - call timeouts: checked as IPCClient checks them, a wait for a member included', async (t) => {
  const { pool, peer } = await setup(t, { maxConnections: 1, acquireTimeout: 5000 });
  await pool.start();
  for (const timeout of [0, -1, NaN, 'x']) {
    await assert.rejects(pool.request('echo', 1, timeout), TypeError);
    await assert.rejects(pool.publish('news', 1, { timeout }), TypeError);
    await assert.rejects(pool.notify('jobs', 1, { timeout }), TypeError);
  }
  const held = await pool.acquire();
  const started = performance.now();
  await assert.rejects(pool.request('echo', 'late', 100), { code: ErrorCode.TIMEOUT }); // not the acquireTimeout
  assert.ok(performance.now() - started < 2000);
  pool.release(held);
  assert.equal(peer.received.filter((m) => m.channel_id === 'echo').length, 0);
});
