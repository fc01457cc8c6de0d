'use strict';

// client.stream() and streaming responders against a scripted peer on a real
// socket (docs/protocol.md §15): what goes on the wire, credit, the end,
// errors, leaving early, the connection's loss. The same behaviours against
// the real Python server, across languages, are in interop-tests/test_js_streams.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { streamingPeer, connectedClient, nextReceived, until, settle } = require('./helpers');

const connected = (t, peer, options = {}) => connectedClient(t, peer, { reconnect: false, ...options });


/** A frame from the peer to the client answering `request`. */
function frame(type, request, payload = null, extra = {}) {
  return buildMessage(type, 'app', request.channel_id, payload, { reply_to: request.message_id, ...extra });
}

/** `promise`, or a rejection after `ms`: a promise that never settles fails the test, not hangs it. */
async function within(promise, ms = 2000) {
  let timer;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Sends `msg` to the client from the peer's only connection. */
function sender(peer) {
  return (msg) => [...peer.sockets][0].write(encodeFrame(encodeMessage(msg)));
}

test('streams - the client asks for the features and the request carries its window and timeouts', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { requestTimeout: 7000 });
  const connect = peer.received.find((m) => m.payload && m.payload.action === 'connect');
  assert.deepEqual(connect.payload.features, ['cancel', 'streams', 'binary', 'lame_duck', 'goaway', 'cluster']);
  const stream = client.stream('ticks', { n: 1 }, { timeout: 5000, window: 8 });
  const first = stream.next();
  const request = await nextReceived(peer, (m) => m.channel_id === 'ticks');
  assert.equal(request.window, 8);
  assert.equal(request.idle_timeout_ms, 7000);
  assert.ok(request.timeout_ms > 4900 && request.timeout_ms <= 5000);
  const send = sender(peer);
  send(frame('stream_item', request, 'a'));
  send(frame('stream_item', request, 'b'));
  send(frame('stream_end', request));
  assert.deepEqual(await first, { value: 'a', done: false });
  const rest = [];
  for await (const item of stream) rest.push(item);
  assert.deepEqual(rest, ['b']);
  assert.equal(client._streams.size, 0);
});

test('streams - credit is granted half a window at a time, as the loop takes items', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const send = sender(peer);
  const stream = client.stream('ticks', null, { window: 4 });
  const first = stream.next();
  const request = await nextReceived(peer, (m) => m.channel_id === 'ticks');
  for (let i = 0; i < 4; i++) send(frame('stream_item', request, i));
  assert.deepEqual(await first, { value: 0, done: false });
  const grant = nextReceived(peer, (m) => m.message_type === 'credit');
  assert.deepEqual(await stream.next(), { value: 1, done: false }); // two taken: half the window
  const credit = await grant;
  assert.equal(credit.reply_to, request.message_id);
  assert.equal(credit.window, 2);
  await stream.return();
});

test('streams - an error after items: the items, then the error', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const send = sender(peer);
  const got = [];
  const done = (async () => {
    for await (const item of client.stream('ticks')) got.push(item);
  })();
  const request = await nextReceived(peer, (m) => m.channel_id === 'ticks');
  send(frame('stream_item', request, 1));
  send(frame('stream_item', request, 2));
  send(frame('response', request, null, { error: { code: 'handler_error', message: 'boom', remote_type: 'KeyError' } }));
  await assert.rejects(done, (err) => err.code === 'handler_error' && err.remoteType === 'KeyError');
  assert.deepEqual(got, [1, 2]);
});

test('streams - a plain answer is a one-item stream', async (t) => {
  const peer = await streamingPeer(t, { onRequest: (msg, conn, reply) => reply({ answer: 42 }) });
  const client = await connected(t, peer);
  const got = [];
  for await (const item of client.stream('plain')) got.push(item);
  assert.deepEqual(got, [{ answer: 42 }]);
});

test('streams - break sends cancel, and what crosses it is dropped quietly', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const send = sender(peer);
  const loop = (async () => {
    for await (const item of client.stream('ticks')) if (item === 1) break;
  })();
  const request = await nextReceived(peer, (m) => m.channel_id === 'ticks');
  const cancelled = nextReceived(peer, (m) => m.message_type === 'cancel');
  send(frame('stream_item', request, 0));
  send(frame('stream_item', request, 1));
  await loop;
  const cancel = await cancelled;
  assert.equal(cancel.reply_to, request.message_id);
  assert.deepEqual(cancel.payload, { reason: 'cancelled' });
  send(frame('stream_item', request, 2));
  send(frame('response', request, null, { error: { code: 'timeout', message: 'late' } }));
  await client.system('ping').catch(() => {}); // a round trip after the late frames
  await settle();
  assert.deepEqual(errors, []);
  assert.equal(client._streams.size, 0);
});

test('streams - concurrent next() calls settle in order, as an async generator\'s', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const send = sender(peer);
  const stream = client.stream('ticks', null, { window: 4 });
  const [a, b] = [stream.next(), stream.next()];
  const request = await nextReceived(peer, (m) => m.channel_id === 'ticks');
  send(frame('stream_item', request, 'x'));
  send(frame('stream_item', request, 'y'));
  assert.deepEqual(await within(Promise.all([a, b])), [{ value: 'x', done: false }, { value: 'y', done: false }]);
  const [c, d] = [stream.next(), stream.next()];
  await stream.return(); // settles both waiting calls
  assert.deepEqual(await within(Promise.all([c, d])), [{ value: undefined, done: true }, { value: undefined, done: true }]);
});

test('streams - return() before the request went out: it is never sent', async (t) => {
  let connect;
  const peer = await streamingPeer(t, { hold: new Promise((resolve) => (connect = resolve)) });
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, reconnect: false });
  t.after(() => client.disconnect());
  const connecting = client.connect();
  const stream = client.stream('ticks');
  const first = stream.next(); // waits for the connection
  assert.deepEqual(await stream.return(), { value: undefined, done: true });
  connect();
  await connecting;
  assert.deepEqual(await first, { value: undefined, done: true });
  await client.system('ping').catch(() => {}); // a round trip after whatever the stream would send
  assert.equal(peer.received.filter((m) => m.channel_id === 'ticks').length, 0);
  assert.equal(client._streams.size, 0);
});

test('streams - an aborted signal ends the loop with AbortError and cancels', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const controller = new AbortController();
  const stream = client.stream('ticks', null, { signal: controller.signal });
  const first = stream.next();
  const request = await nextReceived(peer, (m) => m.channel_id === 'ticks');
  const cancelled = nextReceived(peer, (m) => m.message_type === 'cancel' && m.reply_to === request.message_id);
  controller.abort();
  await assert.rejects(first, (err) => err.code === 'cancelled' && err.name === 'AbortError');
  await cancelled;
  assert.deepEqual(await stream.next(), { value: undefined, done: true });
  const already = client.stream('ticks', null, { signal: controller.signal });
  await assert.rejects(already.next(), { name: 'AbortError' });
});

test('streams - a signal aborting while the client reconnects ends the loop with AbortError at once', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { reconnect: true, initialDelay: 20, maxDelay: 50, requestTimeout: 20000 });
  await peer.close(); // the server stays away: the client keeps reconnecting
  await until(() => client.state === 'reconnecting');
  const controller = new AbortController();
  const stream = client.stream('ticks', null, { signal: controller.signal });
  const first = stream.next(); // waits for the connection
  await settle();
  controller.abort();
  let timer;
  const bound = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('still waiting for the connection')), 2000)));
  await Promise.race([assert.rejects(first, (err) => err.code === 'cancelled' && err.name === 'AbortError'), bound]).finally(() => clearTimeout(timer));
  assert.deepEqual(await stream.next(), { value: undefined, done: true });
  assert.equal(client._reconnector.waiters.size, 0); // its wait for the connection is gone, timer and all
});

test('streams - the connection lost ends the loop after the items that came', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const send = sender(peer);
  const got = [];
  const done = (async () => {
    for await (const item of client.stream('ticks')) got.push(item);
  })();
  const request = await nextReceived(peer, (m) => m.channel_id === 'ticks');
  send(frame('stream_item', request, 'x'));
  await until(() => got.length === 1);
  peer.drop();
  await assert.rejects(done, { code: 'connection_lost' });
});

test('streams - against a server without the features a stream is one plain request', async (t) => {
  const peer = await streamingPeer(t, { features: null, onRequest: (msg, conn, reply) => reply([msg.window ?? null, 'plain']) });
  const client = await connected(t, peer);
  const got = [];
  for await (const item of client.stream('plain')) got.push(item);
  assert.deepEqual(got, [[null, 'plain']]);
});

test('streams - bad options are refused before anything is sent', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  assert.throws(() => client.stream('bad..channel'), { code: 'bad_message' });
  assert.throws(() => client.stream('ticks', null, { window: 0 }), RangeError);
  assert.throws(() => client.stream('ticks', null, { timeout: -1 }), TypeError);
  assert.throws(() => client.stream('ticks', null, { timeout: Infinity }), RangeError); // the request could not carry it
  assert.throws(() => client.stream('ticks', null, { idleTimeout: Infinity }), RangeError);
  assert.throws(() => client.stream('ticks', null, { signal: 'nope' }), TypeError);
});

// -- the producer's side ------------------------------------------------------------------

test('streams - an async generator responder sends only what its credit allows', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const send = sender(peer);
  let pulled = 0;
  let closed = false;
  await client.serve('ticks', async function* () {
    try {
      for (;;) {
        pulled++;
        yield pulled;
      }
    } finally {
      closed = true;
    }
  });
  const request = buildMessage('request', 'app', 'ticks', null, { window: 3, timeout_ms: 5000 });
  send(request);
  await until(() => peer.received.filter((m) => m.message_type === 'stream_item').length === 3);
  await client.system('ping').catch(() => {});
  await settle();
  assert.equal(peer.received.filter((m) => m.message_type === 'stream_item').length, 3);
  assert.ok(pulled <= 4);
  send(frame('credit', request, null, { window: 2 }));
  await until(() => peer.received.filter((m) => m.message_type === 'stream_item').length === 5);
  send(frame('cancel', request, { reason: 'cancelled' }));
  await until(() => closed, 5000, 'the generator closed');
  const items = peer.received.filter((m) => m.message_type === 'stream_item' && m.reply_to === request.message_id).map((m) => m.payload);
  assert.deepEqual(items, [1, 2, 3, 4, 5]);
  assert.equal(client._producers.running.size, 0);
});

test('streams - a streaming responder ends with stream_end, or with its error', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const send = sender(peer);
  await client.serve('three', async function* () {
    yield 1;
    yield 2;
    yield 3;
  });
  await client.serve('failing', async function* () {
    yield 'ok';
    throw new RangeError('no more');
  });
  const three = buildMessage('request', 'app', 'three', null, { window: 8 });
  send(three);
  const end = await nextReceived(peer, (m) => m.reply_to === three.message_id && m.message_type === 'stream_end');
  assert.equal(end.channel_id, 'three');
  const failing = buildMessage('request', 'app', 'failing', null, { window: 8 });
  send(failing);
  const error = await nextReceived(peer, (m) => m.reply_to === failing.message_id && m.message_type === 'response');
  assert.deepEqual([error.error.code, error.error.remote_type], ['handler_error', 'RangeError']);
  const plain = buildMessage('request', 'app', 'three', null);
  send(plain);
  const refused = await nextReceived(peer, (m) => m.reply_to === plain.message_id);
  assert.equal(refused.error.code, 'bad_request');
  assert.match(refused.error.message, /streams its answer: call stream\(\)/);
});
