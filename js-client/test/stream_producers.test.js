'use strict';

// A Node streaming responder's edges (docs/protocol.md §15.3, §15.4) against a
// scripted peer: an item that cannot be sent, a cancel while the generator
// awaits, an async handler resolving to a generator, typed producers and
// their ctx. The common paths are in streams.test.js.

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { streamingPeer, connectedClient, nextReceived, until } = require('./helpers');

const connected = (t, peer, options = {}) => connectedClient(t, peer, { reconnect: false, ...options });


function send(peer, msg) {
  [...peer.sockets][0].write(encodeFrame(encodeMessage(msg)));
}

test('stream producers - an item that cannot be sent fails the stream handler_error and closes the generator', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxFrameSize: 2000 });
  const closed = [];
  for (const [channel, bad] of [['bigint', 10n], ['large', 'x'.repeat(5000)]]) {
    await client.serve(channel, async function* () {
      try {
        yield 1;
        yield bad;
        yield 3;
      } finally {
        closed.push(channel);
      }
    });
    const request = buildMessage('request', 'app', channel, null, { window: 8 });
    send(peer, request);
    const error = await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'response');
    assert.equal(error.error.code, 'handler_error');
    assert.match(error.error.message, /^an item of the stream cannot be sent: /);
    const items = peer.received.filter((m) => m.reply_to === request.message_id && m.message_type === 'stream_item');
    assert.deepEqual(items.map((m) => m.payload), [1]);
    await until(() => closed.includes(channel), 5000, `the ${channel} generator closed`);
  }
  assert.equal(client._producers.running.size, 0);
});

test('stream producers - a cancel while the generator awaits frees its handler slot at once, and closes it later', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxConcurrentHandlers: 1 });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  let closed = false;
  await client.serve('hang', async function* () {
    try {
      yield 'first';
      await gate; // ignores ctx.signal
      yield 'second';
    } finally {
      closed = true;
    }
  });
  await client.serve('echo', (msg) => msg.payload);
  const request = buildMessage('request', 'app', 'hang', null, { window: 4 });
  send(peer, request);
  await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'stream_item');
  send(peer, buildMessage('cancel', 'app', 'hang', { reason: 'cancelled' }, { reply_to: request.message_id }));
  const echo = buildMessage('request', 'app', 'echo', 'hi', { timeout_ms: 5000 });
  send(peer, echo);
  const answer = await nextReceived(peer, (m) => m.reply_to === echo.message_id); // the slot is free again
  assert.equal(answer.payload, 'hi');
  assert.equal(client._producers.detached, 1);
  assert.equal(client.getMetrics().producersDetached, 1); // Node only: Python's producer task is cancelled instead
  assert.equal(closed, false);
  release();
  await until(() => closed, 5000, 'the generator closed once its next() settled');
  const items = peer.received.filter((m) => m.reply_to === request.message_id);
  assert.deepEqual(items.map((m) => m.payload), ['first']);
});

test('stream producers - an async handler that resolves to a generator streams it, holding its slot till the end', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxConcurrentHandlers: 1 });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  await client.serve('later', async (msg) => {
    await new Promise((resolve) => setImmediate(resolve));
    return (async function* () {
      yield msg.payload;
      await gate;
      yield 'last';
    })();
  });
  await client.serve('echo', (msg) => msg.payload);
  const request = buildMessage('request', 'app', 'later', 'first', { window: 8 });
  send(peer, request);
  await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'stream_item');
  const echo = buildMessage('request', 'app', 'echo', 'hi', { timeout_ms: 5000 });
  send(peer, echo);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(peer.received.filter((m) => m.reply_to === echo.message_id).length, 0); // the stream holds the one slot
  release();
  await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'stream_end');
  const items = peer.received.filter((m) => m.reply_to === request.message_id && m.message_type === 'stream_item');
  assert.deepEqual(items.map((m) => m.payload), ['first', 'last']);
  await until(() => peer.received.some((m) => m.reply_to === echo.message_id), 5000, 'the held request answered'); // once the stream ended
  assert.equal(peer.received.find((m) => m.reply_to === echo.message_id).payload, 'hi');
  // a plain request to it is told to stream, as for an async function*
  const plain = buildMessage('request', 'app', 'later', null, { timeout_ms: 5000 });
  send(peer, plain);
  assert.equal((await nextReceived(peer, (m) => m.reply_to === plain.message_id)).error.code, 'bad_request');
});

test('stream producers - a typed handler gets its ctx, and a typed producer is checked on its request alone', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  const schema = { request: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] }, response: { type: 'object', required: ['total'] } };
  let seen = null;
  await client.serve('typed', (msg, ctx) => ((seen = ctx), { total: msg.payload.n }), { schema });
  await client.serve('typed.gen', async function* (msg, ctx) {
    for (let i = 0; i < msg.payload.n && !ctx.signal.aborted; i++) yield i;
  }, { schema });
  await client.serve('typed.async', async (msg) => (async function* () {
    yield msg.payload.n;
  })(), { schema });
  const request = buildMessage('request', 'app', 'typed', { n: 2 }, { timeout_ms: 5000 });
  send(peer, request);
  assert.deepEqual((await nextReceived(peer, (m) => m.reply_to === request.message_id)).payload, { total: 2 });
  assert.ok(seen !== undefined && seen !== null && seen.signal instanceof AbortSignal, 'the typed handler got ctx.signal');
  for (const [channel, expected] of [['typed.gen', [0, 1, 2]], ['typed.async', [3]]]) {
    const stream = buildMessage('request', 'app', channel, { n: 3 }, { window: 8 });
    send(peer, stream);
    const end = await nextReceived(peer, (m) => m.reply_to === stream.message_id && (m.message_type === 'stream_end' || m.message_type === 'response'));
    assert.equal(end.message_type, 'stream_end', `${channel}: ${JSON.stringify(end.error)}`);
    const items = peer.received.filter((m) => m.reply_to === stream.message_id && m.message_type === 'stream_item');
    assert.deepEqual(items.map((m) => m.payload), expected);
  }
  const bad = buildMessage('request', 'app', 'typed.gen', { n: 'x' }, { window: 8 });
  send(peer, bad);
  assert.equal((await nextReceived(peer, (m) => m.reply_to === bad.message_id)).error.code, 'bad_request');
});

test('stream producers - a credit right behind the request counts, while its handler resolves or waits for a slot', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxConcurrentHandlers: 1 });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  await client.serve('busy', async () => {
    await gate;
    return 'done';
  });
  await client.serve('later', async (msg) => {
    await new Promise((resolve) => setImmediate(resolve));
    return (async function* () {
      for (let i = 0; i < msg.payload; i++) yield i;
    })();
  });
  const socket = [...peer.sockets][0];
  for (const held of [false, true]) {
    if (held) send(peer, buildMessage('request', 'app', 'busy', null, { timeout_ms: 5000 })); // the one slot taken: the stream request waits for it
    const request = buildMessage('request', 'app', 'later', 4, { window: 1 });
    const credit = buildMessage('credit', 'app', 'later', null, { reply_to: request.message_id, window: 5 });
    socket.write(Buffer.concat([encodeFrame(encodeMessage(request)), encodeFrame(encodeMessage(credit))])); // one write
    if (held) {
      await until(() => client._admission.heldCount === 1, 5000, 'the stream request held');
      release();
    }
    const end = await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type !== 'stream_item');
    assert.equal(end.message_type, 'stream_end', JSON.stringify(end.error));
    const items = peer.received.filter((m) => m.reply_to === request.message_id && m.message_type === 'stream_item');
    assert.deepEqual(items.map((m) => m.payload), [0, 1, 2, 3]);
  }
  await until(() => client._producers._producing.size === 0, 5000, 'the books closed');
});

test('stream producers - a generator that never awaits gives the event loop a turn every SLICE_ITEMS items', async (t) => {
  const { SLICE_ITEMS, MAX_WINDOW } = require('../lib/protocol/streams');
  const peer = await streamingPeer(t);
  const client = await connected(t, peer);
  let turns = 0;
  let ticking = true;
  const tick = () => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  t.after(() => (ticking = false));
  const seen = [];
  const n = 8 * SLICE_ITEMS;
  await client.serve('burst', async function* () {
    for (let i = 0; i < n; i++) {
      seen.push(turns);
      yield i;
    }
  });
  const request = buildMessage('request', 'app', 'burst', null, { window: MAX_WINDOW });
  send(peer, request);
  await nextReceived(peer, (m) => m.reply_to === request.message_id && m.message_type === 'stream_end');
  let longest = 0;
  for (let i = 0, run = 0; i < seen.length; i++) {
    run = i > 0 && seen[i] === seen[i - 1] ? run + 1 : 1;
    longest = Math.max(longest, run);
  }
  assert.equal(seen.length, n);
  assert.ok(longest <= SLICE_ITEMS, `${longest} items in one turn of the loop`);
});

test('stream producers - a cancel of a request held for a handler slot drops it: it never runs, nor holds the slot', async (t) => {
  const peer = await streamingPeer(t);
  const client = await connected(t, peer, { maxConcurrentHandlers: 1 });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const ran = [];
  await client.serve('busy', async () => {
    await gate;
    return 'done';
  });
  await client.serve('gen', async function* (msg) {
    ran.push(msg.payload);
    for (;;) yield 1; // run, it would take the slot and wait for credit that never comes
  });
  await client.serve('work', async (msg) => {
    ran.push(msg.payload);
    return msg.payload;
  });
  const busy = buildMessage('request', 'app', 'busy', null, { timeout_ms: 5000 });
  send(peer, busy);
  const stream = buildMessage('request', 'app', 'gen', 'stream', { window: 4 }); // no timeout_ms: no deadline to expire by
  const plain = buildMessage('request', 'app', 'work', 'plain', { timeout_ms: 5000 });
  const kept = buildMessage('request', 'app', 'work', 'kept', { timeout_ms: 5000 });
  for (const msg of [stream, plain, kept]) send(peer, msg);
  await until(() => client._admission.heldCount === 3, 5000, 'three requests held');
  for (const id of [stream.message_id, plain.message_id, 'not-a-request-of-ours']) {
    send(peer, buildMessage('cancel', 'app', 'x', { reason: 'cancelled' }, { reply_to: id }));
  }
  await until(() => client._admission.heldCount === 1, 5000, 'the cancelled ones dropped');
  assert.equal(client._producers._producing.has(stream.message_id), false); // its credit books gone with it
  release();
  assert.equal((await nextReceived(peer, (m) => m.reply_to === kept.message_id)).payload, 'kept');
  assert.deepEqual(ran, ['kept']);
  assert.equal(client._admission.running, 0);
  assert.equal(peer.received.filter((m) => m.reply_to === stream.message_id || m.reply_to === plain.message_id).length, 0);
});
