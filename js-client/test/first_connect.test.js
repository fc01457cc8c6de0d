'use strict';

// The first connection: a server that accepts TCP but never answers the
// handshake, and waitOnFirstConnect (seed 003: connecting -> reconnecting
// when the attempt fails), against scripted peers on free ports.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ErrorCode, NotConnectedError, RequestTimeoutError, UnauthorizedError } = require('..');
const { buildMessage } = require('../lib/envelope');
const { Peer, waitFor, until, freePort } = require('./helpers');

const FAST = { initialDelay: 10, maxDelay: 40, jitter: 0 };

/**
 * A peer that answers handshakes only while `peer.answerHandshakes` is true.
 * @param {import('node:test').TestContext} t
 * @param {object} [options] more Peer options.
 * @param {number} [port]
 * @returns {Promise<Peer>}
 */
async function peerOn(t, options = {}, port = 0) {
  const peer = new Peer({ ...options, onConnect: () => !peer.answerHandshakes });
  peer.answerHandshakes = true;
  await peer.listen(port);
  t.after(() => peer.close());
  return peer;
}

/** Collects events by name. */
function record(client, names) {
  const log = [];
  for (const name of names) client.on(name, (arg) => log.push([name, arg]));
  return log;
}

test('first connect - a server that accepts TCP but never answers the handshake: NotConnectedError after connectTimeout, cause the timeout', async (t) => {
  const peer = await peerOn(t);
  peer.answerHandshakes = false;
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, connectTimeout: 150 });
  t.after(() => client.disconnect());
  const started = performance.now();
  await assert.rejects(client.connect(), (err) => {
    assert.ok(err instanceof NotConnectedError);
    assert.equal(err.code, ErrorCode.NOT_CONNECTED);
    assert.ok(err.cause instanceof RequestTimeoutError);
    assert.equal(err.cause.code, ErrorCode.TIMEOUT);
    return true;
  });
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 140 && elapsed < 2000, `rejected after ${elapsed} ms`);
  assert.equal(client.state, 'disconnected');
});

test('first connect - a connectTimeout past setTimeout\'s ceiling waits for the handshake rather than failing at once', async (t) => {
  const peer = await peerOn(t);
  peer.answerHandshakes = false;
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, connectTimeout: 2 ** 31 });
  let settled = null;
  const connecting = client.connect().then(() => (settled = 'resolved'), (err) => {
    settled = err;
  });
  await waitFor(peer.events, 'message', 2000); // the connect request arrived: the timer had its chance to misfire
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, null);
  await client.disconnect();
  await connecting;
  assert.ok(settled instanceof NotConnectedError && !(settled.cause instanceof RequestTimeoutError));
});

test('first connect - the reconnect loop keeps retrying a server that stops answering handshakes, and comes back when it answers', async (t) => {
  const peer = await peerOn(t);
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, connectTimeout: 60, ...FAST });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  await client.connect();
  peer.answerHandshakes = false;
  const events = record(client, ['reconnecting', 'reconnected', 'reconnect_failed']);
  peer.drop();
  await until(() => events.filter(([name]) => name === 'reconnecting').length >= 3, 3000, 'three attempts');
  assert.equal(client.state, 'reconnecting');
  peer.answerHandshakes = true;
  await waitFor(client, 'reconnected', 3000);
  assert.equal(client.state, 'connected');
  assert.ok(!events.some(([name]) => name === 'reconnect_failed'));
});

test('first connect - waitOnFirstConnect: refused at first, it reconnects with backoff and resolves once the server starts', async (t) => {
  const port = await freePort();
  const client = new IPCClient('app', { host: '127.0.0.1', port, waitOnFirstConnect: true, ...FAST });
  t.after(() => client.disconnect());
  const events = record(client, ['connecting', 'reconnecting', 'connected', 'reconnected', 'error']);
  let settled = false;
  const connecting = client.connect().finally(() => {
    settled = true;
  });
  await until(() => events.filter(([name]) => name === 'reconnecting').length >= 2, 3000, 'two retries');
  assert.equal(client.state, 'reconnecting');
  assert.equal(settled, false);
  assert.deepEqual(events.filter(([name]) => name === 'reconnecting').slice(0, 2).map(([, e]) => e.attempt), [1, 2]);
  const queued = client.sendRequest('echo', 'waited', 5000); // waits in the offline queue meanwhile
  const second = client.connect(); // waits for the same connection
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.payload) });
  await peer.listen(port);
  t.after(() => peer.close());
  assert.equal(await connecting, true);
  assert.equal(await second, true);
  assert.equal(client.state, 'connected');
  assert.equal((await queued).payload, 'waited');
  const names = events.map(([name]) => name);
  assert.equal(names[0], 'connecting');
  assert.equal(names.filter((n) => n === 'connected').length, 1);
  assert.ok(!names.includes('reconnected'), 'a first connection is no reconnection');
  assert.ok(!names.includes('error'));
  assert.equal(client.getMetrics().reconnections, 0);
});

test('first connect - waitOnFirstConnect: maxRetries spent -> NotConnectedError, reconnect_failed, queued calls fail', async (t) => {
  const port = await freePort();
  const client = new IPCClient('app', { host: '127.0.0.1', port, waitOnFirstConnect: true, maxRetries: 2, ...FAST });
  t.after(() => client.disconnect());
  const events = record(client, ['reconnecting', 'reconnect_failed', 'error', 'close']);
  const connecting = client.connect();
  const queued = client.sendRequest('echo', 1, 5000);
  await assert.rejects(connecting, (err) => {
    assert.ok(err instanceof NotConnectedError && err.cause.code === ErrorCode.NOT_CONNECTED && err.cause.cause.code === 'ECONNREFUSED');
    // The last attempt's words too, as in Python (a TLS failure then names TLS: security.md §2.2).
    assert.equal(err.message, `cannot connect to 127.0.0.1:${port}: gave up after 3 attempts: ${err.cause.message}`);
    return true;
  });
  await assert.rejects(queued, { code: ErrorCode.NOT_CONNECTED });
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(events.filter(([name]) => name === 'reconnecting').map(([, e]) => e.attempt), [1, 2]);
  assert.deepEqual(events.filter(([name]) => name === 'reconnect_failed').map(([, n]) => n), [2]);
  assert.ok(!events.some(([name]) => name === 'error'), 'the caller of connect() has the failure');
  assert.equal(client.getMetrics().connectionAttempts, 3);
  assert.equal(client.getConnectionInfo().reconnectAttempt, 0);
  // A second connect() gets its own retries, not what is left of the first's.
  await assert.rejects(client.connect(), NotConnectedError);
  assert.deepEqual(events.filter(([name]) => name === 'reconnecting').map(([, e]) => e.attempt), [1, 2, 1, 2]);
  assert.deepEqual(events.filter(([name]) => name === 'reconnect_failed').map(([, n]) => n), [2, 2]);
});

test('first connect - waitOnFirstConnect: disconnect() meanwhile rejects connect() with NotConnectedError at once', async (t) => {
  const port = await freePort();
  const client = new IPCClient('app', { host: '127.0.0.1', port, waitOnFirstConnect: true, initialDelay: 10_000, maxDelay: 10_000, jitter: 0 });
  const connecting = client.connect();
  await waitFor(client, 'reconnecting', 2000); // asleep for 10 s
  const started = performance.now();
  await client.disconnect();
  await assert.rejects(connecting, NotConnectedError);
  assert.ok(performance.now() - started < 5000); // not after the 10 s sleep
  assert.equal(client.state, 'disconnected');
});

test('first connect - waitOnFirstConnect: a refused token rejects at once with UnauthorizedError, without retrying', async (t) => {
  const peer = new Peer();
  peer.onConnect = (msg, conn) => {
    conn.send(buildMessage('response', msg.app_id, 'system', null, { reply_to: msg.message_id, error: { code: 'unauthorized', message: 'bad token' } }));
    return true;
  };
  await peer.listen();
  t.after(() => peer.close());
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, waitOnFirstConnect: true, ...FAST });
  t.after(() => client.disconnect());
  const events = record(client, ['reconnecting']);
  await assert.rejects(client.connect(), UnauthorizedError);
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(events, []);
});

test('first connect - waitOnFirstConnect: handshake silence counts as a failed attempt; resolves once the server answers', async (t) => {
  const peer = await peerOn(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  peer.answerHandshakes = false;
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, waitOnFirstConnect: true, connectTimeout: 50, ...FAST });
  t.after(() => client.disconnect());
  const connecting = client.connect();
  await waitFor(client, 'reconnecting', 2000);
  peer.answerHandshakes = true;
  assert.equal(await connecting, true);
  assert.equal((await client.sendRequest('echo', 5, 1000)).payload, 5);
});

test('first connect - without waitOnFirstConnect the first failure rejects at once (no reconnecting)', async (t) => {
  const port = await freePort();
  const client = new IPCClient('app', { host: '127.0.0.1', port, ...FAST });
  const events = record(client, ['reconnecting']);
  await assert.rejects(client.connect(), (err) => err.code === ErrorCode.NOT_CONNECTED && err.cause.code === 'ECONNREFUSED');
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(events, []);
});

test('first connect - the reconnecting events count attempts from 1 and the first delay is initialDelay (backoff n = attempt - 1)', async (t) => {
  const port = await freePort();
  const client = new IPCClient('app', { host: '127.0.0.1', port, waitOnFirstConnect: true, maxRetries: 3, initialDelay: 5, multiplier: 3, maxDelay: 1000, jitter: 0 });
  t.after(() => client.disconnect());
  client.on('error', () => {});
  const log = record(client, ['reconnecting']);
  await assert.rejects(client.connect(), NotConnectedError);
  assert.deepEqual(log.map(([, e]) => [e.attempt, e.delay]), [[1, 5], [2, 15], [3, 45]]);
});
