'use strict';

// Subscriptions and responders made through a ConnectionPool (docs/resilience.md
// §7, lib/pool_registrations.js), as the Python pool keeps them
// (tests/test_pool.py, tests/test_subscribe_withdrawn.py): on one member, the
// registrar, replayed on its replacement before that one is handed out. On
// real sockets against the scripted peer of test/helpers.js; every wait is
// bounded by an event or a deadline.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionPool } = require('../lib/pool');
const { AlreadyServingError, ErrorCode } = require('../lib/errors');
const { buildMessage } = require('../lib/envelope');
const { Peer, freePort, nextReceived, until, waitFor } = require('./helpers');

/** A peer answering requests with their payload, the connections it accepted, and a pool on it. */
async function setup(t, poolOptions = {}, { port = 0 } = {}) {
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.payload) });
  const conns = [];
  peer.events.on('connection', (conn) => conns.push(conn));
  await peer.listen(port);
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port: peer.port, initialDelay: 20, maxDelay: 50, ...poolOptions });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  return { peer, pool, conns };
}

/** What the peer received on `channel` from `mark` on: [type, serve?]. */
function framesOn(peer, mark, channel) {
  return peer.received.slice(mark).filter((m) => m.channel_id === channel).map((m) => m.message_type);
}

test('pool registrations - on one member: each publish heard once, requests answered, a channel served once', async (t) => {
  const { pool, peer, conns } = await setup(t, { minConnections: 2, maxConnections: 2 });
  await pool.start();
  const got = [];
  assert.equal(await pool.subscribe('news.*', (msg) => got.push(msg.payload)), true);
  assert.equal(await pool.serve('double', (msg) => msg.payload * 2), true);
  await assert.rejects(pool.serve('double', () => 0), (err) => err instanceof AlreadyServingError && err.code === ErrorCode.ALREADY_SERVING);
  assert.deepEqual(framesOn(peer, 0, 'news.*'), ['subscribe']); // not once per member
  for (const conn of conns) conn.send(buildMessage('publish', 'app', 'news.today', 1)); // as if every connection were subscribed
  const answered = nextReceived(peer, (m) => m.message_type === 'response' && m.payload === 8);
  for (const conn of conns) conn.send(buildMessage('request', 'app', 'double', 4, { message_id: `r-${conns.indexOf(conn)}` }));
  await answered;
  await until(() => got.length > 0, 2000, 'the publish');
  await pool.request('echo', 'flush'); // whatever the other member would do has arrived by now
  assert.deepEqual(got, [1]);

  const mark = peer.received.length;
  await pool.unsubscribe('news.*');
  await pool.unserve('double');
  assert.deepEqual(framesOn(peer, mark, 'news.*'), ['unsubscribe']);
  assert.deepEqual(framesOn(peer, mark, 'double'), ['unsubscribe']);
  assert.equal(await pool.serve('double', (msg) => msg.payload), true); // unserved: may be served again
});

test('pool registrations - replayed on the replacement before a waiting call goes out on it', async (t) => {
  const { pool, peer } = await setup(t, { minConnections: 1, maxConnections: 1 });
  await pool.start();
  await pool.subscribe('news', () => {});
  await pool.serve('svc', () => 1, { schema: { request: { type: 'integer' } } });
  await pool.subscribe('gone', () => {});
  await pool.unsubscribe('gone');
  const mark = peer.received.length;
  const lost = waitFor(pool, 'connection_lost', 3000);
  peer.drop();
  await lost;
  assert.equal(await pool.request('echo', 'after', 3000), 'after'); // waits for the replacement
  const after = peer.received.slice(mark).filter((m) => m.channel_id !== 'system');
  assert.deepEqual(after.map((m) => [m.message_type, m.channel_id]), [['subscribe', 'news'], ['subscribe', 'svc'], ['request', 'echo']]);
  assert.deepEqual([after[1].payload.serve, after[1].payload.schema.request], [true, { type: 'integer' }]); // its schema too
});

test('pool registrations - one the replacement cannot make is dropped and reported, the others replayed', async (t) => {
  // Refused here, not by the server (too large for the new server's frame limit):
  // the replay threw it, so every replacement's open failed and nothing came back.
  const { pool, peer } = await setup(t, { minConnections: 1, maxConnections: 1 });
  const errors = [];
  pool.on('error', (err) => errors.push(err));
  await pool.start();
  await pool.subscribe('keep', () => {});
  await pool.serve('svc.small', () => 1);
  const choices = Array.from({ length: 100 }, (_, i) => `${'v'.repeat(60)}${i}`); // a schema of some 6.7 kB
  await pool.serve('svc.big', () => 2, { schema: { request: { enum: choices } } });
  peer.maxFrameSize = 2048; // the server found by the replacement takes 2 KiB frames at most
  const mark = peer.received.length;
  const replaced = waitFor(pool, 'created', 3000);
  peer.drop();
  await replaced;
  assert.deepEqual(errors.map((err) => err.code), [ErrorCode.TOO_LARGE]);
  const replayed = peer.received.slice(mark).filter((m) => m.message_type === 'subscribe');
  assert.deepEqual(replayed.map((m) => m.channel_id).sort(), ['keep', 'svc.small']);
  assert.deepEqual([...pool._registrations.services.keys()], ['svc.small']);
  assert.equal(await pool.serve('svc.big', () => 3), true); // dropped: no AlreadyServingError
});

test('pool registrations - one timing out on a live member rejects and is not kept', async (t) => {
  const { pool, peer } = await setup(t);
  await pool.start();
  assert.equal(await pool.subscribe('first', () => {}), true);
  peer.silent = true;
  await assert.rejects(pool.subscribe('late', () => {}, { timeout: 100 }), { code: ErrorCode.TIMEOUT });
  await assert.rejects(pool.serve('slow', () => 1, { timeout: 100 }), { code: ErrorCode.TIMEOUT }); // Node's client withdraws it too
  peer.silent = false;
  assert.equal(pool._registrations.subscriptions.has('late'), false);
  assert.equal(pool._registrations.services.has('slow'), false);
  assert.equal(await pool.subscribe('late', () => {}), true); // applied now, once
  assert.equal(await pool.serve('slow', () => 1), true);
});

test('pool registrations - with no server they are kept and applied once one is there', async (t) => {
  const port = await freePort();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, minConnections: 0, initialDelay: 20, maxDelay: 50, connectTimeout: 500 });
  t.after(() => pool.close());
  assert.equal(await pool.subscribe('news', () => {}), false);
  assert.equal(await pool.serve('svc', () => 1), false);
  const peer = new Peer();
  t.after(() => peer.close());
  const registered = nextReceived(peer, (m) => m.channel_id === 'svc', 3000);
  await peer.listen(port);
  await registered; // the pool brought a registrar back by itself
  assert.deepEqual(framesOn(peer, 0, 'news'), ['subscribe']);
  await until(() => pool.stats().total === 1, 3000, 'the registrar listed once its registrations are acked');
  assert.equal(pool._registrations.missing, false);
});

test('pool registrations - the registrar is never closed for idleness', async (t) => {
  const { pool } = await setup(t, { minConnections: 0, maxConnections: 2, idleTimeout: 1000 });
  await pool.subscribe('news', () => {});
  const registrar = pool._registrations.registrar;
  const other = await pool.acquire();
  pool.release(other);
  pool._settle(null, performance.now() + 60_000); // as if both had been idle a minute
  assert.deepEqual([pool.stats().total, pool._registrations.registrar], [1, registrar]);
  assert.equal([...pool._members][0], registrar);
});
