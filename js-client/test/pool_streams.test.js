'use strict';

// ConnectionPool.stream() (docs/protocol.md §15, docs/resilience.md §7) on
// real sockets against the scripted peer of test/helpers.js: the items in
// order on a member shared as lease() shares it, the member given back
// exactly once however the stream ends (its end, an error, break/return(),
// the signal, close()), the cancel reaching the producer, and the deadline
// covering the wait for a member. The same against the real Python server:
// interop-tests/test_js_pool_streams.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionPool } = require('../lib/pool');
const { ErrorCode } = require('../lib/errors');
const { producerPeer, nextReceived, until } = require('./helpers');

/** Counts `n` items, `name:0`, `name:1`..., then ends. */
const count = (name) => (msg, out) => {
  for (let i = 0; i < msg.payload.n; i++) out.item(`${name}:${i}`);
  out.end();
};

/** A started pool on `peer`, closed after the test. */
async function poolOn(t, peer, options = {}) {
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port: peer.port, initialDelay: 20, maxDelay: 50, ...options });
  t.after(() => pool.close());
  await pool.start();
  return pool;
}

/** The lease count of each member: never negative (given back once). */
const shares = (pool) => [...pool._members].map((m) => m.shared);

/** `promise`, or a rejection after `ms`: a promise that never settles fails the test, not hangs it. */
async function within(promise, ms = 2000) {
  let timer;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test('pool streams - the items in order on a member shared as lease() shares it, given back at the end', async (t) => {
  const peer = await producerPeer(t, count('a'));
  const pool = await poolOn(t, peer, { maxConnections: 1 });
  const got = [];
  for await (const item of pool.stream('ticks', { n: 200 }, { window: 8 })) {
    got.push(item);
    if (got.length === 1) {
      // shared, as lease() shares it: another call runs on the member meanwhile
      assert.deepEqual([pool.stats().inUse, ...shares(pool)], [1, 1]);
      assert.equal(await pool.request('echo', 'x', 2000), 'x');
    }
  }
  assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => `a:${i}`));
  assert.deepEqual(shares(pool), [0]);
  assert.deepEqual(pool.stats(), { total: 1, available: 1, inUse: 0, pending: 0, totalCreated: 1, totalDestroyed: 0 });
  assert.equal(peer.streams.length, 1);
  assert.equal(peer.streams[0].window, 8);
});

for (const how of ['break', 'return() while a next() waits', 'the signal between items', 'the signal while a next() waits']) {
  test(`pool streams - leaving early (${how}) cancels at the producer and gives the member back once`, async (t) => {
    const peer = await producerPeer(t, (msg, out) => out.item(0)); // one item, then nothing until cancelled
    const pool = await poolOn(t, peer, { maxConnections: 1 });
    const controller = new AbortController();
    const stream = pool.stream('ticks', null, { signal: controller.signal });
    const cancelled = nextReceived(peer, (m) => m.message_type === 'cancel');
    if (how === 'break') {
      for await (const item of stream) if (item === 0) break;
    } else {
      assert.deepEqual(await stream.next(), { value: 0, done: false });
      if (how === 'return() while a next() waits') {
        const waiting = stream.next();
        await stream.return();
        assert.deepEqual(await within(waiting), { value: undefined, done: true });
      } else if (how === 'the signal between items') {
        controller.abort();
        assert.deepEqual(shares(pool), [0]); // given back at the abort, before any next()
        await assert.rejects(stream.next(), { name: 'AbortError', code: ErrorCode.CANCELLED });
      } else {
        const waiting = stream.next();
        controller.abort();
        await assert.rejects(within(waiting), { name: 'AbortError', code: ErrorCode.CANCELLED });
      }
    }
    const cancel = await cancelled;
    assert.equal(cancel.reply_to, peer.streams[0].message_id);
    assert.deepEqual(await stream.next(), { value: undefined, done: true });
    assert.deepEqual(shares(pool), [0]);
    assert.equal(pool.stats().inUse, 0);
  });
}

test('pool streams - an error ends the stream after its items and gives the member back', async (t) => {
  const peer = await producerPeer(t, (msg, out) => {
    out.item(1);
    out.item(2);
    out.fail('handler_error');
  });
  const pool = await poolOn(t, peer);
  const got = [];
  await assert.rejects(
    (async () => {
      for await (const item of pool.stream('ticks')) got.push(item);
    })(),
    { code: ErrorCode.HANDLER_ERROR }
  );
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(shares(pool), [0]);
  assert.equal(pool.stats().inUse, 0);
});

test('pool streams - close() during a stream ends it with connection_lost, once', async (t) => {
  const peer = await producerPeer(t, (msg, out) => {
    out.item(0);
    out.item(1);
  });
  const pool = await poolOn(t, peer);
  const stream = pool.stream('ticks');
  assert.deepEqual(await stream.next(), { value: 0, done: false });
  const member = [...pool._members][0];
  const waiting = stream.next().then(() => stream.next()); // the second item, then a wait
  const failed = assert.rejects(within(waiting), { code: ErrorCode.CONNECTION_LOST });
  await pool.close();
  await failed;
  assert.deepEqual(await stream.next(), { value: undefined, done: true }); // one error, then the end
  assert.equal(member.shared, 0);
  assert.equal(pool.stats().inUse, 0);
  await assert.rejects(pool.stream('ticks').next(), { code: ErrorCode.NOT_CONNECTED }); // a stream after close()
});

test('pool streams - the timeout covers the wait for a member; an abort ends that wait at once', async (t) => {
  const peer = await producerPeer(t, count('a'));
  const pool = await poolOn(t, peer, { maxConnections: 1, acquireTimeout: 5000 });
  const held = await pool.acquire();
  const started = performance.now();
  await assert.rejects(pool.stream('ticks', { n: 1 }, { timeout: 200 }).next(), { code: ErrorCode.TIMEOUT });
  const waited = performance.now() - started;
  assert.ok(waited >= 150 && waited < 2000, `${waited} ms`); // the stream's deadline, not the 5 s acquireTimeout
  const controller = new AbortController();
  const aborted = pool.stream('ticks', { n: 1 }, { signal: controller.signal }).next();
  await until(() => pool.stats().pending === 1);
  controller.abort();
  await assert.rejects(within(aborted, 500), { name: 'AbortError' });
  pool.release(held); // handed to the abandoned wait, and straight back
  await until(() => pool.stats().inUse === 0 && pool.stats().pending === 0);
  const got = [];
  for await (const item of pool.stream('ticks', { n: 3 }, { timeout: 2000 })) got.push(item);
  assert.deepEqual(got, ['a:0', 'a:1', 'a:2']);
  assert.deepEqual(shares(pool), [0]);
  assert.equal(peer.streams.length, 1); // the streams that got no member sent nothing
});

test('pool streams - arguments are checked at the call', async (t) => {
  const peer = await producerPeer(t, count('a'));
  const pool = await poolOn(t, peer);
  assert.throws(() => pool.stream('ticks.*'), /wildcard/);
  assert.throws(() => pool.stream('ticks', null, null), TypeError);
  assert.throws(() => pool.stream('ticks', null, { timeout: 0 }), TypeError);
  assert.throws(() => pool.stream('ticks', null, { timeout: Infinity }), RangeError);
  assert.throws(() => pool.stream('ticks', null, { idleTimeout: -1 }), TypeError);
  assert.throws(() => pool.stream('ticks', null, { window: 0 }), RangeError);
  assert.throws(() => pool.stream('ticks', null, { signal: 'no' }), TypeError);
  assert.equal(pool.stats().inUse, 0);
});
