'use strict';

// ServiceClient (docs/resilience.md §9) against scripted peers: named
// services in their own apps, per-service metrics, status and shutdown.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ServiceClient } = require('../lib/service_client');
const { ErrorCode } = require('../lib/errors');
const { Peer, captureWarnings, settle, until } = require('./helpers');

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

test('service - descriptions are checked; unknown keys warn once and are ignored', async (t) => {
  const warnings = captureWarnings(t);
  assert.throws(() => new ServiceClient({ a: { host: 'x' } }), TypeError);
  assert.throws(() => new ServiceClient({ a: { port: 1, strategy: 'best' } }), TypeError);
  assert.throws(() => new ServiceClient({ a: { port: 'one' } }), TypeError);
  assert.throws(() => new ServiceClient({ a: { servers: [['h', '2']] } }), TypeError); // a server entry's port is a number (the description's port an option)
  assert.throws(() => new ServiceClient({ a: { port: 1, timeout: 0 } }), TypeError);
  assert.throws(() => new ServiceClient([]), TypeError);
  const sc = new ServiceClient({ a: { port: '1', colour: 'red' }, b: { servers: ['h:2', 'h:3'], colour: 'blue' } });
  assert.deepEqual(sc.services, ['a', 'b']);
  assert.equal(sc.appId, 'gateway');
  assert.deepEqual(sc.status().a.servers.map((s) => s.port), [1]);
  await until(() => warnings.some((w) => w.code === 'IPC_UNKNOWN_OPTION'), 1000, 'the warning');
  await settle();
  const colour = warnings.filter((w) => w.code === 'IPC_UNKNOWN_OPTION' && /"colour"/.test(w.message));
  assert.equal(colour.length, 1, 'once per name per process');
  assert.equal(colour[0].name, 'IpcBridgeWarning');
});

test('service - new ServiceClient() with no services; a description\'s defaults are seed 004\'s', () => {
  const sc = new ServiceClient();
  assert.deepEqual(sc.services, []);
  assert.deepEqual(sc.metrics(), {});
  assert.equal(sc.configureService('users', { host: 'users.internal', port: 3001 }), sc);
  const lb = sc._services.get('users').client;
  assert.equal(lb.appId, 'users');
  assert.equal(lb.healthCheckInterval, 30_000);
  assert.equal(lb._requestTimeout, 5000);
  assert.equal(lb._clientOptions.initialDelay, 1000);
  const pool = [...lb._pools.values()][0];
  assert.deepEqual([pool.host, pool.port, pool.minConnections, pool.maxConnections], ['users.internal', 3001, 1, 10]);
  // The description's own values win; a defaulted maxConnections follows a larger minConnections.
  sc.configureService('big', { port: 1, maxConnections: 20, minConnections: 5, timeout: 3000, reconnectDelay: 10, healthCheckInterval: 100 });
  const big = sc._services.get('big').client;
  assert.deepEqual([big._requestTimeout, big._clientOptions.initialDelay, big.healthCheckInterval], [3000, 10, 100]);
  assert.deepEqual([...big._pools.values()].map((p) => [p.minConnections, p.maxConnections]), [[5, 20]]);
  sc.configureService('wide', { port: 1, minConnections: 12 });
  assert.deepEqual([...sc._services.get('wide').client._pools.values()].map((p) => [p.minConnections, p.maxConnections]), [[12, 12]]);
  // Options shared by every service win over the defaults, legacy names included.
  const shared = new ServiceClient({ a: { port: 1 } }, { requestTimeout: 2000, reconnectDelay: 50 });
  const a = shared._services.get('a').client;
  assert.equal(a._requestTimeout, 2000);
  assert.equal(a._clientOptions.initialDelay, undefined);
  assert.equal(a._clientOptions.reconnectDelay, 50);
});

test('service - seed 004 usage: configureService() then request() at once, getMetrics(name), getConnectionStatus(), shutdown()', async (t) => {
  const users = await backend(t);
  const serviceClient = new ServiceClient();
  t.after(() => serviceClient.shutdown());
  serviceClient.configureService('user-service', { host: '127.0.0.1', port: users.port, maxConnections: 20, minConnections: 5, timeout: 3000 });
  const response = await serviceClient.request('user-service', 'getUserProfile', { userId: '12345' });
  assert.deepEqual(response, { app: 'user-service', channel: 'getUserProfile', payload: { userId: '12345' } });
  const metrics = serviceClient.getMetrics('user-service');
  assert.equal(metrics.requests, 1);
  assert.equal(metrics.errors, 0);
  assert.deepEqual(Object.keys(serviceClient.getMetrics()), ['user-service']);
  assert.throws(() => serviceClient.getMetrics('billing'), TypeError);
  const status = serviceClient.getConnectionStatus();
  assert.deepEqual(status, serviceClient.status());
  assert.equal(status['user-service'].healthy, true);
  await serviceClient.shutdown();
  await assert.rejects(serviceClient.request('user-service', 'getUserProfile'), { code: ErrorCode.NOT_CONNECTED });
  assert.throws(() => serviceClient.configureService('x', { port: 1 }), { code: ErrorCode.NOT_CONNECTED });
});

test('service - concurrent first requests share one start; a first start that finds no server fails them with not_connected', async (t) => {
  const gone = await backend(t);
  const port = gone.port;
  await gone.close();
  const sc = new ServiceClient({ down: { host: '127.0.0.1', port, reconnectDelay: 10 } });
  t.after(() => sc.shutdown());
  const results = await Promise.allSettled([sc.request('down', 'a'), sc.request('down', 'b')]);
  for (const r of results) assert.equal(r.reason.code, ErrorCode.NOT_CONNECTED);
  assert.equal(sc.getMetrics('down').errors, 2);
  assert.equal(sc.getConnectionStatus().down.healthy, false);
});

test('service - configureService() replaces a service: the old connections close, calls go to the new server, metrics carry on', async (t) => {
  const first = await backend(t);
  const second = await backend(t);
  const sc = new ServiceClient({ api: { host: '127.0.0.1', port: first.port } });
  t.after(() => sc.shutdown());
  assert.equal((await sc.request('api', 'echo', 1)).payload, 1);
  assert.ok(first.sockets.size > 0);
  const oldClient = sc._services.get('api').client;
  assert.equal(sc.configureService('api', { host: '127.0.0.1', port: second.port }), sc);
  assert.equal((await sc.request('api', 'echo', 2)).payload, 2);
  assert.ok(second.received.some((m) => m.channel_id === 'echo' && m.payload === 2));
  assert.ok(!first.received.some((m) => m.channel_id === 'echo' && m.payload === 2));
  await until(() => first.sockets.size === 0, 2000, 'the old service\'s connections to close');
  await assert.rejects(oldClient.sendRequest('echo', 3), { code: ErrorCode.NOT_CONNECTED });
  assert.equal(sc.getMetrics('api').requests, 2);
  assert.deepEqual(sc.services, ['api']);
  // A bad description replaces nothing.
  assert.throws(() => sc.configureService('api', { host: '127.0.0.1' }), TypeError);
  assert.equal((await sc.request('api', 'echo', 4)).payload, 4);
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

test('service - request() keeps its deadline and its signal while the service is still starting', async (t) => {
  const peer = await backend(t);
  peer.silent = true; // takes the TCP connection, never answers the handshake
  const sc = new ServiceClient({ api: { host: '127.0.0.1', port: peer.port } }, { connectTimeout: 20000 });
  t.after(async () => {
    peer.drop();
    await sc.shutdown();
  });
  let started = performance.now();
  await assert.rejects(sc.request('api', 'echo', 1, { timeout: 300 }), { code: ErrorCode.TIMEOUT });
  let elapsed = performance.now() - started;
  assert.ok(elapsed >= 290 && elapsed < 3000, `rejected after ${elapsed} ms, not at the call's deadline`);
  const controller = new AbortController();
  const call = sc.request('api', 'echo', 1, { timeout: 20000, signal: controller.signal });
  await settle();
  started = performance.now();
  controller.abort();
  await assert.rejects(call, { name: 'AbortError', code: ErrorCode.CANCELLED });
  elapsed = performance.now() - started;
  assert.ok(elapsed < 2000, `rejected ${elapsed} ms after the abort`);
  const m = sc.getMetrics('api');
  assert.deepEqual([m.requests, m.errors, m.timeouts], [1, 1, 1]); // a caller giving up is not the service's failure
});

test('service - request() takes a signal: an aborted call rejects AbortError at once; one aborted before sends nothing', async (t) => {
  const peer = await backend(t);
  const sc = new ServiceClient({ api: { host: '127.0.0.1', port: peer.port } });
  t.after(() => sc.shutdown());
  await sc.start();
  const controller = new AbortController();
  const call = sc.request('api', 'slow', null, { timeout: 20000, signal: controller.signal });
  await until(() => peer.received.some((m) => m.channel_id === 'slow'), 5000, 'the request');
  controller.abort();
  await assert.rejects(call, { name: 'AbortError', code: ErrorCode.CANCELLED });
  await assert.rejects(sc.request('api', 'echo', 2, { signal: controller.signal }), { name: 'AbortError' });
  assert.ok(!peer.received.some((m) => m.channel_id === 'echo'));
  await assert.rejects(sc.request('api', 'echo', 2, { signal: 'stop' }), TypeError);
});
