'use strict';

// Cancellation (docs/protocol.md §15.4) against a scripted peer on a real
// socket: the `signal` of every call, the cancel frame a request sends, the
// handler's ctx.signal, late answers. Against the real Python server, across
// languages: interop-tests/test_js_cancel.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, AbortError } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { streamingPeer, connectedClient, nextReceived, until, settle, freePort } = require('./helpers');

function send(peer, msg) {
  [...peer.sockets][0].write(encodeFrame(encodeMessage(msg)));
}

test('cancel - an aborted request rejects AbortError at once, sends cancel, and drops its late answer', async (t) => {
  const peer = await streamingPeer(t, { onRequest: () => {} });
  const client = await connectedClient(t, peer);
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const controller = new AbortController();
  const call = client.sendRequest('slow', { n: 1 }, { signal: controller.signal, timeout: 5000 });
  const request = await nextReceived(peer, (m) => m.channel_id === 'slow');
  const cancelled = nextReceived(peer, (m) => m.message_type === 'cancel');
  controller.abort(new Error('the user left'));
  await assert.rejects(call, (err) => {
    assert.ok(err instanceof AbortError);
    assert.equal(err.code, 'cancelled');
    assert.equal(err.name, 'AbortError');
    assert.equal(err.cause.message, 'the user left');
    return true;
  });
  const cancel = await cancelled;
  assert.equal(cancel.reply_to, request.message_id);
  assert.equal(cancel.channel_id, 'slow');
  assert.equal(client._calls.pending.size, 0);
  send(peer, buildMessage('response', 'app', 'slow', null, { reply_to: request.message_id, error: { code: 'timeout', message: 'late' } }));
  await client.system('ping');
  await settle();
  assert.deepEqual(errors, []);
  assert.equal(client.getMetrics().messagesFailed, 1);
});

test('cancel - a signal aborted before the call sends nothing', async (t) => {
  const peer = await streamingPeer(t, { onRequest: (msg, conn, reply) => reply('answered') });
  const client = await connectedClient(t, peer);
  const signal = AbortSignal.abort();
  await assert.rejects(client.request('x', null, { signal }), { name: 'AbortError', code: 'cancelled' });
  await assert.rejects(client.publish('news', 1, { ack: true, signal }), { name: 'AbortError' });
  await assert.rejects(client.connect({ signal }), { name: 'AbortError' });
  assert.equal(await client.request('x', null, { signal: new AbortController().signal }), 'answered');
  assert.equal(peer.received.filter((m) => m.channel_id === 'x').length, 1);
  await assert.rejects(client.request('x', null, { signal: {} }), TypeError);
});

test('cancel - an aborted publish with ack rejects, sending no cancel', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connectedClient(t, peer);
  const controller = new AbortController();
  const call = client.publish('news', 1, { ack: true, signal: controller.signal });
  await nextReceived(peer, (m) => m.message_type === 'publish');
  controller.abort();
  await assert.rejects(call, { name: 'AbortError' });
  await client.system('ping');
  assert.equal(peer.received.filter((m) => m.message_type === 'cancel').length, 0);
});

test('cancel - a call waiting in the offline queue leaves it when aborted', async (t) => {
  const peer = await streamingPeer(t, { onRequest: () => {} });
  const client = await connectedClient(t, peer, { initialDelay: 60_000, maxDelay: 60_000 });
  peer.drop();
  await until(() => client.state === 'reconnecting');
  const controller = new AbortController();
  const call = client.sendRequest('later', null, { signal: controller.signal });
  assert.equal(client.queueStats().size, 1);
  controller.abort();
  await assert.rejects(call, { name: 'AbortError' });
  assert.equal(client.queueStats().size, 0);
});

test('cancel - notify() takes a signal as publish() does: aborted before the call, nothing is sent', async (t) => {
  const peer = await streamingPeer(t, { onRequest: () => {} });
  const client = await connectedClient(t, peer);
  await assert.rejects(client.notify('jobs.run', 1, { signal: AbortSignal.abort() }), { name: 'AbortError', code: 'cancelled' });
  const live = new AbortController();
  const written = client.notify('jobs.run', 2, { signal: live.signal });
  live.abort(); // written at the call: final, it resolves
  await written;
  await nextReceived(peer, (m) => m.message_type === 'notification' && m.payload === 2);
  assert.deepEqual(peer.received.filter((m) => m.message_type === 'notification').map((m) => m.payload), [2]);
  assert.throws(() => client.notify('jobs.run', 3, { signal: {} }), TypeError); // an argument error: thrown at the call
});

test('cancel - connect() given up while connecting stops the attempt', async (t) => {
  const port = await freePort();
  const net = require('node:net');
  const silent = net.createServer(() => {}); // accepts, never answers the connect
  silent.listen(port, '127.0.0.1');
  t.after(() => silent.close());
  const client = new IPCClient('app', { host: '127.0.0.1', port, reconnect: false });
  const controller = new AbortController();
  const connecting = client.connect({ signal: controller.signal });
  await until(() => client.state === 'connecting');
  controller.abort();
  await assert.rejects(connecting, { name: 'AbortError', code: 'cancelled' });
  await until(() => client.state === 'disconnected');
});

test('cancel - no cancel frame to a server that did not grant it', async (t) => {
  const peer = await streamingPeer(t, { features: null, onRequest: () => {} });
  const client = await connectedClient(t, peer);
  const controller = new AbortController();
  const call = client.request('slow', null, { signal: controller.signal });
  await nextReceived(peer, (m) => m.channel_id === 'slow');
  controller.abort();
  await assert.rejects(call, { name: 'AbortError' });
  await client.system('ping');
  assert.equal(peer.received.filter((m) => m.message_type === 'cancel').length, 0);
});

// -- the responder's side ----------------------------------------------------------------

test('cancel - a handler sees ctx.signal abort; its late answer is dropped and counted', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connectedClient(t, peer);
  let reason = null;
  await client.serve('slow', (msg, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => {
    reason = ctx.signal.reason;
    resolve('late');
  })));
  const request = buildMessage('request', 'app', 'slow', null, { timeout_ms: 5000 });
  send(peer, request);
  await until(() => client._producers.running.size === 1);
  send(peer, buildMessage('cancel', 'app', 'slow', { reason: 'timeout' }, { reply_to: request.message_id }));
  await until(() => reason !== null);
  assert.equal(reason.code, 'timeout');
  await until(() => client.getMetrics().lateAnswers === 1);
  await client.system('ping');
  assert.equal(peer.received.filter((m) => m.reply_to === request.message_id).length, 0);
  // A cancel naming nothing that runs is ignored.
  send(peer, buildMessage('cancel', 'app', 'slow', null, { reply_to: 'nothing' }));
  await client.system('ping');
});

test('cancel - a handler that never reads ctx.signal answers as before', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connectedClient(t, peer);
  await client.serve('echo', (msg) => msg.payload);
  const request = buildMessage('request', 'app', 'echo', 'hi', { timeout_ms: 5000 });
  send(peer, request);
  const answer = await nextReceived(peer, (m) => m.reply_to === request.message_id);
  assert.equal(answer.payload, 'hi');
  assert.equal(client._producers.running.size, 0);
});

test('cancel - a handler\'s ctx shows only what ServeContext declares: signal and cancelled', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connectedClient(t, peer);
  let seen = null;
  await client.serve('ctx', (msg, ctx) => {
    seen = ctx;
    return null;
  });
  const request = buildMessage('request', 'app', 'ctx', null, { timeout_ms: 5000 });
  send(peer, request);
  await nextReceived(peer, (m) => m.reply_to === request.message_id);
  const own = Object.keys(seen).filter((k) => !k.startsWith('_'));
  const inherited = Object.getOwnPropertyNames(Object.getPrototypeOf(seen)).filter((k) => k !== 'constructor' && !k.startsWith('_'));
  assert.deepEqual([...own, ...inherited].sort(), ['cancelled', 'signal']);
});

test('cancel - the connection lost aborts every running handler with connection_lost', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connectedClient(t, peer, { reconnect: false });
  let reason = null;
  await client.serve('slow', (msg, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve((reason = ctx.signal.reason)))));
  send(peer, buildMessage('request', 'app', 'slow', null, { timeout_ms: 5000 }));
  await until(() => client._producers.running.size === 1);
  peer.drop();
  await until(() => reason !== null);
  assert.equal(reason.code, 'connection_lost');
});
