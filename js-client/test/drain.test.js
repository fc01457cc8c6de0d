'use strict';

// drain() (docs/resilience.md §12) on real loopback sockets, against the
// scripted peer: no new calls, registrations withdrawn, what is in flight
// finishes (the offline queue included), then the client closes. Against the
// real server and across languages: interop-tests/test_js_drain.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ErrorCode } = require('..');
const { ConnectionLostError } = require('../lib/errors');
const { waitFor, nextReceived, until } = require('./helpers');
const { proxiedClient } = require('./proxied');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');

/**
 * A peer whose answers the test releases (`answer(msg, payload)`), and a connected client.
 * @param {import('node:test').TestContext} t
 */
async function setup(t, clientOptions = {}) {
  const held = [];
  const { peer, proxy, client } = await proxiedClient(t, { onRequest: (msg, conn, reply) => held.push({ msg, reply }) }, clientOptions);
  await client.connect();
  return { peer, proxy, client, held };
}

test('drain - new calls reject with not_connected while the one in flight finishes; then it closes', async (t) => {
  const { client, held } = await setup(t);
  const pending = client.request('slow', 1, 5000);
  await until(() => held.length === 1);
  const draining = client.drain({ timeout: 5000 });
  for (const refused of [client.request('x'), client.notify('x'), client.publish('x', 1), client.subscribe('x', () => {}), client.serve('y', () => 1)]) {
    await assert.rejects(refused, (err) => err.code === ErrorCode.NOT_CONNECTED && /draining/.test(err.message));
  }
  // stream() and the iterators return, as in every other closed state: their first next() rejects
  for (const iterable of [client.stream('x'), client.subscription('x'), client.requests('y')]) {
    await assert.rejects(iterable[Symbol.asyncIterator]().next(), (err) => err.code === ErrorCode.NOT_CONNECTED && /draining/.test(err.message));
  }
  held[0].reply('finished');
  assert.equal(await pending, 'finished');
  assert.equal(await draining, true);
  assert.equal(client.state, 'disconnected');
});

test('drain - the registrations are withdrawn and a served request still running is answered', async (t) => {
  const { peer, client } = await setup(t);
  let release;
  let started;
  const released = new Promise((resolve) => (release = resolve));
  const running = new Promise((resolve) => (started = resolve));
  await client.serve('work', async () => {
    started();
    await released;
    return 'done';
  });
  await client.subscribe('news', () => {});
  // The peer forwards a request to the client, as a server does for a responder.
  const served = nextReceived(peer, (m) => m.message_type === 'response' && m.reply_to === 'fwd-1');
  const [socket] = peer.sockets;
  socket.write(encodeFrame(encodeMessage(buildMessage('request', 'app', 'work', 1, { message_id: 'fwd-1', timeout_ms: 5000 }))));
  await running;
  const unserved = nextReceived(peer, (m) => m.message_type === 'unsubscribe' && m.channel_id === 'work');
  const unsubscribed = nextReceived(peer, (m) => m.message_type === 'unsubscribe' && m.channel_id === 'news');
  const draining = client.drain({ timeout: 5000 });
  assert.equal((await unserved).payload.serve, true);
  await unsubscribed;
  release();
  assert.equal((await served).payload, 'done');
  assert.equal(await draining, true);
});

test('drain - a stream made while draining never throws at the call; one a handler makes goes through', async (t) => {
  const { peer, client, held } = await setup(t);
  let release;
  let started;
  const released = new Promise((resolve) => (release = resolve));
  const running = new Promise((resolve) => (started = resolve));
  await client.serve('relay', async () => {
    started();
    await released;
    const items = [];
    for await (const item of client.stream('up', 1, { timeout: 5000 })) items.push(item); // a handler's call: not refused
    return items;
  });
  const served = nextReceived(peer, (m) => m.message_type === 'response' && m.reply_to === 'fwd-2');
  [...peer.sockets][0].write(encodeFrame(encodeMessage(buildMessage('request', 'app', 'relay', 1, { message_id: 'fwd-2', timeout_ms: 5000 }))));
  await running;
  const draining = client.drain({ timeout: 5000 });
  const refused = await new Promise((resolve) => {
    setImmediate(() => {
      // as a timer or event callback would start it, outside any try: no exception escapes
      client.stream('x')[Symbol.asyncIterator]().next().then(() => resolve(null), resolve);
    });
  });
  assert.equal(refused.code, ErrorCode.NOT_CONNECTED);
  release();
  await until(() => held.some((h) => h.msg.channel_id === 'up'), 2000, "the handler's stream request");
  held.find((h) => h.msg.channel_id === 'up').reply('u');
  assert.deepEqual((await served).payload, ['u']);
  assert.equal(await draining, true);
});

test('drain - the offline queue is sent once connected again, and answered', async (t) => {
  const { peer, proxy, client, held } = await setup(t);
  proxy.refuse(true);
  const reconnecting = waitFor(client, 'reconnecting', 2000);
  proxy.cut();
  await reconnecting;
  const queued = [client.request('q', 1, 5000), client.request('q', 2, 5000)];
  const note = nextReceived(peer, (m) => m.message_type === 'notification');
  await client.notify('n', 3);
  const draining = client.drain({ timeout: 5000 });
  proxy.refuse(false);
  await until(() => held.length === 2);
  for (const { msg, reply } of held) reply(msg.payload * 10);
  assert.deepEqual(await Promise.all(queued), [10, 20]);
  assert.equal((await note).payload, 3);
  assert.equal(await draining, true);
});

test('drain - what outlives the deadline ends as a disconnect ends it; two drains share one', async (t) => {
  const { client, held } = await setup(t);
  const pending = client.request('hang', 1, 10000);
  await until(() => held.length === 1);
  const failed = assert.rejects(pending, (err) => err.code === ErrorCode.CONNECTION_LOST);
  const [a, b] = await Promise.all([client.drain({ timeout: 100 }), client.drain({ timeout: 100 })]);
  assert.deepEqual([a, b], [false, false]);
  await failed;
  assert.equal(await client.drain(), true); // closed: nothing to do
  await assert.rejects(client.drain({ timeout: 0 }), TypeError);
});

test('drain - a keyed request between its loss and its resend is waited for, and answered once reconnected', async (t) => {
  const { proxy, client, held } = await setup(t);
  const keyed = client.request('jobs', 1, { idempotencyKey: 'k', timeout: 5000 });
  await until(() => held.length === 1);
  const draining = client.drain({ timeout: 5000 });
  let looks = 0;
  const busy = client._drain._busy.bind(client._drain);
  client._drain._busy = () => (looks++, busy());
  // The socket is gone and the call failed, but the client has not seen the
  // loss yet: the call waits for it, in neither the pending table nor the queue.
  client._calls.failAll(new ConnectionLostError('the connection was lost'));
  const seen = looks;
  await until(() => looks >= seen + 2, 2000, 'the drain to look twice more');
  assert.equal(client.state, 'connected'); // still waiting for the keyed call
  proxy.cut();
  await until(() => held.length === 2);
  held[1].reply('done');
  assert.equal(await keyed, 'done');
  assert.equal(await draining, true);
});
