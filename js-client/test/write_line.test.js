'use strict';

// A full send buffer (lib/write_line.js, docs/resilience.md §4): a peer on a
// real socket that stops reading it. A call that finds the buffer full waits
// BEFORE it is written; one that leaves at its deadline or its signal was
// never sent, and what comes after it never overtakes it.

const test = require('node:test');
const assert = require('node:assert/strict');
const { peerAndClient, until } = require('./helpers');
const { ErrorCode } = require('..');

const BODY = 'x'.repeat(256 * 1024);
const MAX_CALLS = 400; // 100 MiB: far past what loopback's socket buffers hold

/** The peer's one socket, not read from now on (its 'data' events stop, the kernel buffers fill). */
function stopReading(peer) {
  const socket = [...peer.sockets][0];
  socket.pause();
  return socket;
}

/**
 * Publishes (awaited, short timeout) until `rejections` of them reject:
 * the socket's buffer is then full and stays so.
 * @returns {Promise<{ok: number[], failed: Array<[number, string]>}>}
 */
async function fill(client, rejections, call = (i) => client.publish('bp', { i, body: BODY }, { timeout: 150 })) {
  const ok = [];
  const failed = [];
  for (let i = 0; i < MAX_CALLS && failed.length < rejections; i++) {
    try {
      await call(i);
      ok.push(i);
    } catch (err) {
      failed.push([i, err.code, err.message]);
    }
  }
  assert.equal(failed.length, rejections, 'the buffer never filled up');
  return { ok, failed };
}

/** Resumes reading and waits for the publish on `bp.end`: whatever was written before it has arrived by then. */
async function resumeAndSettle(peer, socket, client) {
  socket.resume();
  await client.publish('bp.end', null, { timeout: 5000 });
  await until(() => peer.received.some((m) => m.channel_id === 'bp.end'), 5000, 'the closing publish');
  return peer.received.filter((m) => m.channel_id !== 'bp.end' && m.message_type !== 'request');
}

test('write line - a publish or notify that rejects timeout on a full buffer was never written', async (t) => {
  const { peer, client } = await peerAndClient(t);
  await client.connect();
  const socket = stopReading(peer);
  const { ok, failed } = await fill(client, 3);
  const buffered = client._conn._socket.writableLength;
  const notified = [];
  for (const i of [1000, 1001]) {
    await client.notify('bp', { i, body: BODY }, { timeout: 100 }).catch((err) => notified.push([i, err.code, err.message]));
  }
  assert.equal(notified.length, 2);
  for (const [, code, message] of [...failed, ...notified]) {
    assert.equal(code, ErrorCode.TIMEOUT);
    assert.match(message, /was not sent: the connection's send buffer stayed full/);
  }
  assert.equal(client._conn._socket.writableLength, buffered, 'nothing added to the socket while it was full');
  const m = client.getMetrics();
  assert.equal(m.messagesFailed, 5);
  assert.equal(m.messagesSent, ok.length); // the rejected ones were never written
  const got = await resumeAndSettle(peer, socket, client);
  assert.deepEqual(got.map((msg) => msg.payload.i), ok, 'exactly the resolved ones, in order');
});

test('write line - a publish or notify aborted while it waits is never written; one written at once stays written', async (t) => {
  const { peer, client } = await peerAndClient(t);
  await client.connect();
  const written = new AbortController();
  const first = client.publish('bp', { i: -1 }, { signal: written.signal });
  written.abort(); // after publish() wrote it: it was sent, and resolves
  await first;
  const socket = stopReading(peer);
  const { ok } = await fill(client, 1);
  const ac = new AbortController();
  const waiting = client.publish('bp', { i: 2000, body: BODY }, { signal: ac.signal, timeout: 10_000 });
  const notified = client.notify('bp', { i: 2002 }, { signal: ac.signal, timeout: 10_000 });
  const behind = client.publish('bp', { i: 2001 }, { timeout: 10_000 }); // waits behind them
  ac.abort();
  await assert.rejects(waiting, { name: 'AbortError', code: ErrorCode.CANCELLED });
  await assert.rejects(notified, { name: 'AbortError', code: ErrorCode.CANCELLED });
  const got = await resumeAndSettle(peer, socket, client);
  await behind;
  assert.deepEqual(got.map((msg) => msg.payload.i), [-1, ...ok, 2001]);
});

test('write line - what is called after a waiting call is written after it, requests included', async (t) => {
  const { peer, client } = await peerAndClient(t, { onRequest: (msg, conn, reply) => reply({ echo: msg.payload.i }) });
  await client.connect();
  const socket = stopReading(peer);
  const { ok } = await fill(client, 1);
  const order = [];
  const calls = [
    client.publish('bp', { i: 'a', body: BODY }, { timeout: 10_000 }).then(() => order.push('a')),
    client.sendRequest('bp.req', { i: 'r' }, 10_000).then((reply) => order.push(`r=${reply.payload.echo}`)),
    client.publish('bp', { i: 'b' }, { timeout: 10_000 }).then(() => order.push('b')),
    client.notify('bp', { i: 'c' }, { timeout: 10_000 }).then(() => order.push('c'))
  ];
  socket.resume();
  await Promise.all(calls);
  await until(() => peer.received.filter((m) => m.payload && m.payload.i === 'c').length === 1, 5000, 'the notify');
  const ids = peer.received.filter((m) => m.channel_id === 'bp' || m.channel_id === 'bp.req').map((m) => m.payload.i);
  assert.deepEqual(ids, [...ok, 'a', 'r', 'b', 'c']);
  assert.deepEqual(order.filter((x) => x !== 'r=r'), ['a', 'b', 'c']);
  assert.ok(order.includes('r=r'));
});

test('write line - a request that reaches its deadline waiting for a full buffer is never sent, and the buffer does not grow', async (t) => {
  const { peer, client } = await peerAndClient(t, { onRequest: (msg, conn, reply) => reply(msg.payload) });
  await client.connect();
  const socket = stopReading(peer);
  await fill(client, 1);
  const buffered = client._conn._socket.writableLength;
  const sentBefore = client.getMetrics().messagesSent;
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => client.sendRequest('bp.req', { i, body: BODY }, 150)));
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal(r.reason.code, ErrorCode.TIMEOUT);
    assert.match(r.reason.message, /^request on bp\.req was not sent/);
  }
  assert.equal(client._conn._socket.writableLength, buffered, '20 x 256 KiB never reached the socket');
  assert.equal(client.getMetrics().messagesSent, sentBefore);
  assert.equal(client._calls.pending.size, 0);
  await resumeAndSettle(peer, socket, client);
  assert.equal(peer.received.filter((m) => m.channel_id === 'bp.req' || m.message_type === 'cancel').length, 0);
  assert.deepEqual((await client.sendRequest('bp.req', 'after', 2000)).payload, 'after');
});

test('write line - a call waiting when the connection drops rejects connection_lost, unsent', async (t) => {
  const { peer, client } = await peerAndClient(t, {}, { reconnect: false });
  await client.connect();
  stopReading(peer);
  await fill(client, 1);
  const publish = client.publish('bp', { i: 'p', body: BODY }, { timeout: 10_000 });
  const request = client.sendRequest('bp.req', { i: 'r' }, 10_000);
  peer.drop();
  for (const call of [publish, request]) {
    await assert.rejects(call, (err) => err.code === ErrorCode.CONNECTION_LOST && /the call was not sent/.test(err.message));
  }
  assert.equal(client._calls.line, null);
});
