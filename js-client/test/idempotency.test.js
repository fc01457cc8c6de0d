'use strict';

/**
 * The idempotencyKey option (docs/protocol.md §6.6): what a key may be,
 * the header it travels in, and the resend of a keyed request whose
 * connection dropped. The server's side (running once, joining, storing)
 * is tested against the real server in interop-tests/test_js_idempotency.py.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { IPCClient } = require('..');
const { EventEmitter } = require('node:events');
const { IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH, keyedHeaders, keyProblem, resendOnLoss } = require('../lib/idempotency');
const { ConnectionLostError } = require('../lib/errors');
const { ROOT, Peer, nextReceived, waitFor, until } = require('./helpers');
const { proxiedClient } = require('./proxied');

const SPEC = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'idempotency.json'), 'utf8'));

test('idempotency - the header and the key length are those of interop-tests/spec/idempotency.json', () => {
  assert.equal(IDEMPOTENCY_HEADER, SPEC.header);
  assert.equal(MAX_IDEMPOTENCY_KEY_LENGTH, SPEC.max_key_length);
  assert.equal(SPEC.node_option, 'idempotencyKey');
});

test('idempotency - a key is a non-empty string of at most 256 characters', () => {
  assert.equal(keyProblem('k'), null);
  assert.equal(keyProblem('k'.repeat(256)), null);
  for (const bad of ['', 'k'.repeat(257), 7, null, {}]) assert.match(keyProblem(bad), /idempotency key/);
  const headers = { trace: 't' };
  assert.deepEqual(keyedHeaders(headers, 'k'), { trace: 't', 'idempotency-key': 'k' });
  assert.deepEqual(headers, { trace: 't' }); // the caller's object is left alone
  assert.throws(() => keyedHeaders(undefined, ''), TypeError);
});

/**
 * A client of a scripted peer, closed after the test.
 * @param {import('node:test').TestContext} t
 * @param {Peer} peer
 * @param {object} [options]
 * @returns {Promise<IPCClient>}
 */
async function connected(t, peer, options = {}) {
  await peer.listen();
  const client = new IPCClient('app', { port: peer.port, initialDelay: 10, maxDelay: 20, jitter: 0, requestTimeout: 5000, ...options });
  client.on('error', () => {});
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  await client.connect();
  return client;
}

test('idempotency - sendRequest sends the key as a header; a bad key is refused before sending', async (t) => {
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.headers) });
  const client = await connected(t, peer);
  const res = await client.sendRequest('jobs.run', 1, { idempotencyKey: 'job-1', headers: { a: 'b' } });
  assert.match(res.payload.traceparent, /^00-/); // docs/tracing.md
  delete res.payload.traceparent;
  assert.deepEqual(res.payload, { a: 'b', 'idempotency-key': 'job-1' });
  await assert.rejects(client.sendRequest('jobs.run', 1, { idempotencyKey: '' }), TypeError);
  await assert.rejects(client.request('jobs.run', 1, { idempotencyKey: 'x'.repeat(257) }), TypeError);
  assert.equal(peer.received.filter((m) => m.channel_id === 'jobs.run').length, 1);
});

test('idempotency - a keyed request whose connection drops is sent again once reconnected', async (t) => {
  let attempts = 0;
  const peer = new Peer({
    onRequest: (msg, conn, reply) => {
      attempts++;
      if (attempts === 1) conn.socket.destroy(); // the first attempt reached the server, then the connection dropped
      else reply({ attempt: attempts, key: msg.headers[IDEMPOTENCY_HEADER] });
    }
  });
  const client = await connected(t, peer);
  const reconnected = waitFor(client, 'reconnected');
  const res = await client.sendRequest('jobs.run', { n: 1 }, { idempotencyKey: 'job-1' });
  await reconnected;
  assert.deepEqual(res.payload, { attempt: 2, key: 'job-1' });
  const sent = peer.received.filter((m) => m.channel_id === 'jobs.run');
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1].payload, sent[0].payload);
  assert.ok(sent[1].timeout_ms <= sent[0].timeout_ms); // the same deadline, what is left of it
});

test('idempotency - without a key, or with onDisconnect fail, the loss rejects connection_lost', async (t) => {
  const peer = new Peer({ onRequest: (msg, conn) => conn.socket.destroy() });
  const client = await connected(t, peer);
  await assert.rejects(client.sendRequest('jobs.run', 1), { code: 'connection_lost' });
  await waitFor(client, 'reconnected');
  const seen = nextReceived(peer, (m) => m.channel_id === 'jobs.run');
  await assert.rejects(client.sendRequest('jobs.run', 1, { idempotencyKey: 'k', onDisconnect: 'fail' }), { code: 'connection_lost' });
  await seen;
});

test('idempotency - a keyed request gives up at its deadline while the server stays away', async (t) => {
  const peer = new Peer({ onRequest: (msg, conn) => conn.socket.destroy() });
  const client = await connected(t, peer);
  const started = performance.now();
  await assert.rejects(client.sendRequest('jobs.run', 1, { idempotencyKey: 'k', timeout: 300 }), { code: 'timeout' });
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 3000, `gave up after ${elapsed} ms`);
});

test('idempotency - a loss noticed past the deadline ends the keyed request with its timeout, the loss as its cause', async () => {
  const lost = async () => {
    throw new ConnectionLostError('the connection was lost');
  };
  const err = await resendOnLoss({ _state: 'disconnected', _outbox: { keyed: 0 } }, lost, performance.now() - 1, 'wait').catch((e) => e);
  assert.equal(err.code, 'timeout');
  assert.ok(err.cause instanceof ConnectionLostError);
  // Connected on paper, the socket already gone: the deadline passes before the client notices.
  const host = new EventEmitter();
  host._state = 'connected';
  host._outbox = { keyed: 0 };
  const waiting = resendOnLoss(host, lost, performance.now() + 50, 'wait');
  assert.equal(host._outbox.keyed, 1); // counted while it waits, in neither the pending table nor the queue (drain())
  await assert.rejects(waiting, { code: 'timeout' });
  await assert.rejects(resendOnLoss(host, lost, performance.now() - 1, 'fail'), { code: 'connection_lost' });
  assert.equal(host._outbox.keyed, 0);
});

test('idempotency - twenty keyed calls waiting for a loss to be noticed share one disconnected listener', async () => {
  let attempts = 0;
  const host = new EventEmitter();
  host._state = 'connected'; // on paper: the socket is already gone
  host._outbox = { keyed: 0 };
  const attempt = async () => {
    attempts++;
    if (host._state === 'connected') throw new ConnectionLostError('the connection was lost');
    return 'answered';
  };
  const calls = Array.from({ length: 20 }, () => resendOnLoss(host, attempt, performance.now() + 5000, 'wait'));
  await until(() => attempts === 20);
  assert.equal(host.listenerCount('disconnected'), 1); // eleven made Node warn of a leak
  host._state = 'reconnecting';
  host.emit('disconnected', new ConnectionLostError('noticed'));
  assert.deepEqual(await Promise.all(calls), Array(20).fill('answered'));
  assert.equal(host.listenerCount('disconnected'), 0);
});

test('idempotency - a keyed resend that expires in the offline queue rejects with timeout, the loss as its cause', async (t) => {
  const held = [];
  const { proxy, client } = await proxiedClient(t, { onRequest: (msg, conn, reply) => held.push(reply) });
  client.on('error', () => {});
  await client.connect();
  const call = client.sendRequest('jobs.run', 1, { idempotencyKey: 'k', timeout: 300 });
  await until(() => held.length === 1);
  proxy.refuse(true); // the server stays away: the resend waits in the queue until its deadline
  proxy.cut();
  const err = await call.catch((e) => e);
  assert.equal(err.code, 'timeout');
  assert.match(err.message, /offline queue/);
  assert.ok(err.cause instanceof ConnectionLostError);
});
