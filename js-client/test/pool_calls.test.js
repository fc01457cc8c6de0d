'use strict';

// ConnectionPool's waits for a member and its own calls (docs/resilience.md
// §7) on real sockets against the scripted peer of test/helpers.js. Every
// wait is bounded by an event or a deadline.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionPool } = require('../lib/pool');
const { ErrorCode } = require('../lib/errors');
const { Peer } = require('./helpers');

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
