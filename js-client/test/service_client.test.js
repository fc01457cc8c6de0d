'use strict';

// ServiceClient (docs/resilience.md §9) against scripted peers: named
// services in their own apps, per-service metrics, status and shutdown.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ServiceClient } = require('../lib/service_client');
const { ErrorCode } = require('../lib/errors');
const { Peer } = require('./helpers');

/**
 * A peer answering `{app, channel, payload}`; channel `slow` never answers,
 * channel `fail` answers a handler_error.
 */
async function backend(t) {
  const peer = new Peer({
    onRequest: (msg, conn, reply) => {
      if (msg.channel_id === 'slow') return;
      if (msg.channel_id === 'fail') return reply(null, { error: { code: 'handler_error', message: 'no' } });
      reply({ app: msg.app_id, channel: msg.channel_id, payload: msg.payload });
    }
  });
  await peer.listen();
  t.after(() => peer.close());
  return peer;
}

test('service - descriptions are checked', () => {
  assert.throws(() => new ServiceClient({}), TypeError);
  assert.throws(() => new ServiceClient({ a: { host: 'x' } }), TypeError);
  assert.throws(() => new ServiceClient({ a: { port: 1, colour: 'red' } }), TypeError);
  assert.throws(() => new ServiceClient({ a: { port: 1, strategy: 'best' } }), TypeError);
  const sc = new ServiceClient({ a: { port: 1 }, b: { servers: ['h:2', 'h:3'] } });
  assert.deepEqual(sc.services, ['a', 'b']);
  assert.equal(sc.appId, 'gateway');
});

test('service - requests go to the service\'s app, on channel `method`, and return the payload', async (t) => {
  const users = await backend(t);
  const orders = await backend(t);
  const sc = new ServiceClient({
    users: { host: '127.0.0.1', port: users.port },
    orders: { servers: [`127.0.0.1:${orders.port}`], appId: 'shop', timeout: 200, reconnectDelay: 10 }
  });
  t.after(() => sc.shutdown());
  await sc.start();
  assert.deepEqual(await sc.request('users', 'get', { id: 1 }), { app: 'users', channel: 'get', payload: { id: 1 } });
  assert.deepEqual(await sc.request('orders', 'list'), { app: 'shop', channel: 'list', payload: null });
  await assert.rejects(sc.request('billing', 'x'), TypeError);
  // The service's timeout is the default deadline; a per-call one wins.
  const start = Date.now();
  await assert.rejects(sc.request('orders', 'slow'), { code: ErrorCode.TIMEOUT });
  assert.ok(Date.now() - start < 1000);
  await assert.rejects(sc.request('users', 'slow', null, { timeout: 50 }), { code: ErrorCode.TIMEOUT });
});

test('service - metrics: requests, errors, timeouts, rate and latency percentiles', async (t) => {
  const peer = await backend(t);
  const sc = new ServiceClient({ api: { host: '127.0.0.1', port: peer.port } });
  t.after(() => sc.shutdown());
  assert.deepEqual(sc.metrics().api, {
    requests: 0, errors: 0, timeouts: 0, requestsPerS: 0, latencyMs: { avg: null, p50: null, p99: null }
  });
  await sc.start();
  for (let i = 0; i < 20; i++) await sc.request('api', 'echo', i);
  await assert.rejects(sc.request('api', 'fail'), { code: ErrorCode.HANDLER_ERROR });
  await assert.rejects(sc.request('api', 'slow', null, { timeout: 30 }), { code: ErrorCode.TIMEOUT });
  const m = sc.metrics().api;
  assert.equal(m.requests, 22);
  assert.equal(m.errors, 2);
  assert.equal(m.timeouts, 1);
  assert.ok(m.requestsPerS > 0);
  assert.ok(m.latencyMs.p50 <= m.latencyMs.p99);
  assert.ok(m.latencyMs.p99 >= 25, 'the timed-out call is in the window');
  assert.ok(m.latencyMs.avg > 0);
});

test('service - status() per service; an unreachable service fails start() but not the others', async (t) => {
  const up = await backend(t);
  const gone = await backend(t);
  const gonePort = gone.port;
  await gone.close();
  const sc = new ServiceClient({ up: { host: '127.0.0.1', port: up.port }, down: { host: '127.0.0.1', port: gonePort } });
  t.after(() => sc.shutdown());
  await assert.rejects(sc.start(), (err) => err.code === ErrorCode.NOT_CONNECTED && /down/.test(err.message));
  const status = sc.status();
  assert.equal(status.up.healthy, true);
  assert.equal(status.down.healthy, false);
  assert.deepEqual(status.up.servers.map((s) => [s.port, s.healthy]), [[up.port, true]]);
  assert.equal((await sc.request('up', 'echo', 1)).payload, 1);
  await assert.rejects(sc.request('down', 'echo', 1), { code: ErrorCode.NOT_CONNECTED });
  assert.equal(sc.metrics().down.errors, 1);
});

test('service - shutdown() closes everything; later calls reject not_connected', async (t) => {
  const peer = await backend(t);
  const sc = new ServiceClient({ api: { host: '127.0.0.1', port: peer.port } });
  await sc.start();
  await sc.shutdown();
  await sc.shutdown(); // twice is fine
  await assert.rejects(sc.request('api', 'echo', 1), { code: ErrorCode.NOT_CONNECTED });
  await assert.rejects(sc.start(), { code: ErrorCode.NOT_CONNECTED });
  assert.equal(sc.status().api.healthy, false);
});
