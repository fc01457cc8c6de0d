'use strict';

// The client's own local errors are worded as the Python client words them
// (ipc_client: calls.py, circuit_breaker.py, state.py, lifecycle.py,
// pool_registrations.py), so a log or an alert reads the same from both;
// durations stay each language's own unit (ms here, s in Python).

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, AlreadyServingError } = require('..');
const { Peer, connectedClient, nextReceived, waitFor } = require('./helpers');

test('wording - timeout, circuit open, not connected, already serving, connection lost read as in Python', async (t) => {
  const peer = new Peer({ onRequest: () => {} }); // never answers
  await peer.listen();
  t.after(() => peer.close());
  const idle = new IPCClient('app', { host: '127.0.0.1', port: peer.port });
  await assert.rejects(idle.request('svc.slow', {}, 1000), { code: 'not_connected', message: 'not connected (disconnected)' });

  const client = await connectedClient(t, peer, { circuitBreaker: { failureThreshold: 1, resetTimeout: 60_000 }, reconnect: false });
  await assert.rejects(client.request('svc.slow', {}, 50), (err) => err.code === 'timeout' && /^no response on 'svc\.slow' within \d+ ms$/.test(err.message));
  await assert.rejects(client.request('svc.slow', {}, 50), (err) => err.code === 'circuit_open' && /^circuit 'svc\.slow' is open; retry in \d+ ms$/.test(err.message));

  assert.equal(new AlreadyServingError('mine.a').message, "already serving 'mine.a'; unserve() it first");
  await client.serve('mine.a', () => 1);
  await assert.rejects(client.serve('mine.a', () => 2), { code: 'already_serving', message: "already serving 'mine.a'; unserve() it first" });

  const sent = nextReceived(peer, (m) => m.channel_id === 'svc.other');
  const pending = client.request('svc.other', {}, 10_000);
  await sent;
  peer.drop();
  await assert.rejects(pending, (err) => err.code === 'connection_lost' && err.message.startsWith(`connection to 127.0.0.1:${peer.port} lost`));
});

test("wording - a request's timeout names the call's own timeout, not what was left when it was written", async (t) => {
  const peer = new Peer({ onRequest: () => {} }); // never answers
  await peer.listen();
  t.after(() => peer.close());
  const client = await connectedClient(t, peer, { initialDelay: 100, maxDelay: 100, jitter: 0 });
  await assert.rejects(client.request('svc.slow', {}, 300), { code: 'timeout', message: "no response on 'svc.slow' within 300 ms" });
  // queued while reconnecting, written 100 ms later (the reconnect delay): still its 300 ms, never 200
  const reconnecting = waitFor(client, 'reconnecting');
  peer.drop();
  await reconnecting;
  const written = nextReceived(peer, (m) => m.channel_id === 'svc.slow');
  const queued = client.request('svc.slow', {}, 300);
  assert.ok((await written).timeout_ms <= 250, 'written once the reconnect delay had passed');
  await assert.rejects(queued, { code: 'timeout', message: "no response on 'svc.slow' within 300 ms" });
  // a coalesced caller's own wait names its timeout too
  const first = client.request('svc.slow', { same: 1 }, { timeout: 5000, coalesce: true });
  first.catch(() => {});
  await assert.rejects(client.request('svc.slow', { same: 1 }, { timeout: 300, coalesce: true }), {
    code: 'timeout',
    message: "no response on 'svc.slow' within 300 ms (a coalesced call)"
  });
});
