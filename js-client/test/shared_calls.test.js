'use strict';

// Request coalescing and the TTL response cache (lib/coalescing.js,
// lib/response_cache.js): the cache's bookkeeping on a fake clock, then
// sendRequest()'s `coalesce` and `cacheTtl` on real sockets against a
// scripted peer that counts the requests it receives.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ErrorCode, RequestTimeoutError } = require('..');
const { Metrics } = require('../lib/metrics');
const { ResponseCache } = require('../lib/response_cache');
const { requestKey } = require('../lib/coalescing');
const { Peer, until } = require('./helpers');

const reply = (payload) => ({ message_type: 'response', payload });

// ------------------------------------------------------------------ the cache

test('cache - a fresh answer is a hit, an expired one a miss', () => {
  const clock = { t: 1000 };
  const metrics = new Metrics();
  const cache = new ResponseCache(10, metrics, () => clock.t);
  assert.equal(cache.get('k'), undefined);
  cache.put('k', reply(1), 5000);
  clock.t += 4999;
  assert.equal(cache.get('k').payload, 1);
  clock.t += 1;
  assert.equal(cache.get('k'), undefined);
  assert.equal(cache.size, 0);
  const s = metrics.snapshot();
  assert.deepEqual([s.cacheHits, s.cacheMisses, s.cacheSize], [1, 2, 0]);
});

test('cache - bounded, least recently used first; 0 entries stores nothing', () => {
  const metrics = new Metrics();
  const cache = new ResponseCache(2, metrics, () => 0);
  cache.put('a', reply('a'), 60000);
  cache.put('b', reply('b'), 60000);
  assert.ok(cache.get('a')); // a is now the most recently used
  cache.put('c', reply('c'), 60000);
  assert.equal(cache.get('b'), undefined);
  assert.ok(cache.get('a') && cache.get('c'));
  assert.equal(metrics.cacheSize, 2);
  cache.clear();
  assert.equal(metrics.cacheSize, 0);
  const off = new ResponseCache(0, new Metrics(), () => 0);
  off.put('a', reply(1), 60000);
  assert.equal(off.get('a'), undefined);
  for (const bad of [-1, 1.5, '10', null]) assert.throws(() => new ResponseCache(bad, new Metrics()), TypeError);
  assert.throws(() => new IPCClient('app', { cacheMaxEntries: -1 }), TypeError);
});

test('cache - the key is the channel and the canonical payload', () => {
  assert.equal(requestKey('c', { a: 1, b: [1, { y: 2, x: 1 }] }), requestKey('c', { b: [1, { x: 1, y: 2 }], a: 1 }));
  assert.notEqual(requestKey('c', { a: 1 }), requestKey('d', { a: 1 }));
  assert.notEqual(requestKey('c', { a: 1 }), requestKey('c', { a: '1' }));
  assert.equal(requestKey('c', undefined), requestKey('c', null));
  assert.equal(requestKey('c', NaN), null);
  assert.equal(requestKey('c', 10n), null);
});

// ------------------------------------------------------------------ on the wire

/**
 * A peer answering every request on 'svc' with {n, echo} (n counts the
 * requests it received), holding the answers while `peer.hold` is set, or
 * answering an error while `peer.fail` is set.
 */
async function setup(t, clientOptions = {}) {
  const held = [];
  const peer = new Peer({
    onRequest: (msg, conn, answer) => {
      peer.count++;
      const send = () =>
        peer.fail
          ? answer(null, { error: { code: peer.failCode ?? 'handler_error', message: 'refused', remote_type: 'ValueError' } })
          : answer({ n: peer.count, echo: msg.payload });
      if (peer.hold) held.push(send);
      else send();
    }
  });
  peer.count = 0;
  peer.hold = false;
  peer.fail = false;
  peer.release = () => {
    peer.hold = false;
    for (const send of held.splice(0)) send();
  };
  const port = await peer.listen();
  const client = new IPCClient('app', { host: '127.0.0.1', port, ...clientOptions });
  await client.connect();
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  return { peer, client };
}

test('coalesce - identical calls in flight share one round trip', async (t) => {
  const { peer, client } = await setup(t);
  peer.hold = true;
  const calls = [0, 1, 2, 3, 4].map((i) => client.request('svc', i % 2 ? { a: 1, b: 2 } : { b: 2, a: 1 }, { coalesce: true }));
  const other = client.request('svc', { a: 2 }, 5000, { coalesce: true });
  await until(() => peer.count === 2);
  peer.release();
  const results = await Promise.all(calls);
  assert.ok(results.every((r) => r === results[0]));
  assert.deepEqual((await other).echo, { a: 2 });
  assert.equal(peer.count, 2);
  const m = client.getMetrics();
  assert.equal(m.requestsCoalesced, 4);
  assert.equal(m.messagesSent, 2);
  assert.equal(client._shared.inflight.size, 0);
  await client.request('svc', { a: 1, b: 2 }, { coalesce: true }); // settled: a new call
  assert.equal(peer.count, 3);
});

test('coalesce - every caller gets the shared error', async (t) => {
  const { peer, client } = await setup(t);
  peer.hold = true;
  peer.fail = true;
  const calls = [0, 1, 2].map(() => client.request('svc', 1, { coalesce: true }));
  await until(() => peer.count === 1);
  peer.release();
  const results = await Promise.allSettled(calls);
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason.code === ErrorCode.HANDLER_ERROR && r.reason.remoteType === 'ValueError'));
  assert.equal(peer.count, 1);
});

test('coalesce - a caller that times out or aborts leaves the shared call to the others', async (t) => {
  const { peer, client } = await setup(t);
  peer.hold = true;
  const controller = new AbortController();
  const first = client.request('svc', 1, { coalesce: true, signal: controller.signal });
  await until(() => peer.count === 1);
  const impatient = client.request('svc', 1, { coalesce: true, timeout: 30 });
  const patient = client.request('svc', 1, { coalesce: true });
  await assert.rejects(impatient, (err) => err instanceof RequestTimeoutError && err.code === ErrorCode.TIMEOUT);
  controller.abort(new Error('user gave up'));
  await assert.rejects(first, (err) => err.name === 'AbortError' && err.code === ErrorCode.CANCELLED && err.cause.message === 'user gave up');
  peer.release();
  assert.deepEqual(await patient, { n: 1, echo: 1 });
  assert.equal(peer.count, 1);
});

test('cache - a cached answer saves the round trip until it expires; errors are not cached', async (t) => {
  const { peer, client } = await setup(t);
  const first = await client.sendRequest('svc', { q: 1 }, { cacheTtl: 60000 });
  const again = await client.sendRequest('svc', { q: 1 }, 1000, { cacheTtl: 60000 });
  assert.equal(again, first);
  assert.equal(peer.count, 1);
  assert.equal((await client.request('svc', { q: 2 }, { cacheTtl: 60000 })).n, 2);
  assert.equal((await client.request('svc', { q: 1 })).n, 3); // without cacheTtl: always sent
  let m = client.getMetrics();
  assert.deepEqual([m.cacheHits, m.cacheMisses, m.cacheSize], [1, 2, 2]);

  const clock = { t: 0 };
  client._shared.cache._now = () => clock.t; // expiry without waiting for it
  client.clearCache();
  await client.request('svc', { q: 1 }, { cacheTtl: 1000 });
  clock.t += 1000;
  assert.equal((await client.request('svc', { q: 1 }, { cacheTtl: 1000 })).n, 5);

  peer.fail = true;
  await assert.rejects(client.request('svc', 'e', { cacheTtl: 60000 }), { code: ErrorCode.HANDLER_ERROR });
  peer.fail = false;
  assert.equal((await client.request('svc', 'e', { cacheTtl: 60000 })).n, 7);
  m = client.getMetrics();
  assert.equal(m.cacheSize, 2);
});

test('cache - with coalescing, bounded by cacheMaxEntries; a bad cacheTtl is refused', async (t) => {
  const { peer, client } = await setup(t, { cacheMaxEntries: 1 });
  peer.hold = true;
  const calls = [0, 1, 2].map(() => client.request('svc', 'x', { coalesce: true, cacheTtl: 60000 }));
  await until(() => peer.count === 1);
  peer.release();
  await Promise.all(calls);
  assert.equal((await client.request('svc', 'x', { cacheTtl: 60000 })).n, 1);
  await client.request('svc', 'y', { cacheTtl: 60000 }); // evicts x: one entry at most
  assert.equal((await client.request('svc', 'x', { cacheTtl: 60000 })).n, 3);
  for (const bad of [0, -1, NaN, Infinity, 'five', '-5']) {
    await assert.rejects(client.request('svc', 1, { cacheTtl: bad }), TypeError);
  }
  await assert.rejects(client.request('svc', 1, { coalesce: 'yes' }), TypeError);
});

test('cache - a circuit breaker fallback is not cached', async (t) => {
  const { peer, client } = await setup(t, { circuitBreaker: { failureThreshold: 1, resetTimeout: 3600000, fallback: () => ({ fallback: true }) } });
  peer.fail = true;
  peer.failCode = 'no_responders';
  await assert.rejects(client.request('svc', 1, { cacheTtl: 60000 }), { code: ErrorCode.NO_RESPONDERS }); // opens the circuit
  peer.fail = false;
  assert.deepEqual(await client.request('svc', 1, { cacheTtl: 60000 }), { fallback: true });
  assert.deepEqual(await client.request('svc', 1, { cacheTtl: 60000 }), { fallback: true });
  assert.equal(client.getMetrics().cacheSize, 0);
});

test('cache - a fallback that answers after the circuit closed is not cached, by its caller or one that joined it', async (t) => {
  let release;
  let entered;
  const gate = new Promise((resolve) => (release = resolve));
  const inFallback = new Promise((resolve) => (entered = resolve));
  const fallback = async (channel, payload) => {
    if (payload === 1) {
      entered();
      await gate;
    }
    return { fallback: true };
  };
  const { peer, client } = await setup(t, { circuitBreaker: { failureThreshold: 1, resetTimeout: 50, successThreshold: 1, fallback } });
  peer.fail = true;
  peer.failCode = 'no_responders';
  await assert.rejects(client.request('svc', 0), { code: ErrorCode.NO_RESPONDERS }); // opens the circuit
  peer.fail = false;
  const first = client.request('svc', 1, { cacheTtl: 60000, coalesce: true });
  await inFallback;
  const joined = client.request('svc', 1, { cacheTtl: 60000, coalesce: true });
  const deadline = performance.now() + 5000; // a trial call once the reset timeout passed closes it
  while ((await client.request('svc', 2)).fallback === true) {
    assert.ok(performance.now() < deadline, 'the circuit did not close');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(client.circuitBreakers().svc.state, 'closed');
  release();
  assert.deepEqual(await Promise.all([first, joined]), [{ fallback: true }, { fallback: true }]);
  assert.equal(client.getMetrics().cacheSize, 0);
  const answered = await client.request('svc', 1, { cacheTtl: 60000 }); // from the service, and now stored
  assert.equal(answered.echo, 1);
  assert.equal(client.getMetrics().cacheSize, 1);
});

// ------------------------------------------------- through the wrappers

test('clearCache() of a pool, a load balancer and a service client empties every member cache', async (t) => {
  const { ConnectionPool, LoadBalancedClient, ServiceClient } = require('..');
  let runs = 0;
  const peer = new Peer({ onRequest: (msg, conn, answer) => answer(++runs) });
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, minConnections: 2, maxConnections: 2 });
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${port}`], { healthCheckInterval: 60_000 });
  const gw = new ServiceClient({ app: { host: '127.0.0.1', port } });
  t.after(async () => {
    await Promise.all([pool.close(), lb.close(), gw.shutdown()]);
    await peer.close();
  });
  await Promise.all([pool.start(), lb.start(), gw.start()]);
  const [first, second] = [await pool.acquire(), await pool.acquire()];
  for (const member of [first, second]) await member.request('price', 'a', { cacheTtl: 60_000 }); // both hold an answer
  pool.release(first);
  pool.release(second);
  assert.equal(pool.getMetrics().cacheSize, 2);
  pool.clearCache();
  assert.equal(pool.getMetrics().cacheSize, 0);
  assert.equal(await pool.request('price', 'a', { cacheTtl: 60_000 }), 3); // asked again

  // The load balancer takes cacheTtl as its servers' clients do, and now clears what they cached.
  assert.equal(await lb.request('price', 'b', { cacheTtl: 60_000 }), 4);
  assert.equal(await lb.request('price', 'b', 1000, { cacheTtl: 60_000 }), 4); // from the cache
  lb.clearCache();
  assert.equal(lb.getMetrics().cacheSize, 0);
  assert.equal(await lb.request('price', 'b', { cacheTtl: 60_000 }), 5);
  const service = gw._services.get('app').client; // a service's balanced client (its request() takes no cacheTtl)
  assert.equal(await service.request('price', 'c', { cacheTtl: 60_000 }), 6);
  gw.clearCache();
  assert.equal(service.getMetrics().cacheSize, 0);
  assert.equal(await service.request('price', 'c', { cacheTtl: 60_000 }), 7);
});
