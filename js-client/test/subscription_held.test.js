'use strict';

/**
 * Publishes held for a handler slot (maxConcurrentHandlers full) outlive a
 * lost connection, as in the Python client: the server delivered them, so
 * they are handled (by the handlers they matched on arrival still
 * subscribed at dispatch); disconnect() drops
 * them. An unsubscribe()/unserve() whose ack the lost connection took
 * resolves: the server dropped the registration with it. The Python mirror
 * is tests/test_subscription_held.py.
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { peerAndClient: setup, waitFor, nextReceived, until } = require('./helpers');

/** Writes publishes to the peer's (only) client socket, in one write. */
function publish(peer, channel, payloads) {
  const frames = payloads.map((p) => encodeFrame(encodeMessage(buildMessage('publish', 'app', channel, p))));
  [...peer.sockets][0].write(Buffer.concat(frames));
}

/** An async handler that records each call and holds its slot until released. */
function busy() {
  const calls = [];
  let release;
  const released = new Promise((resolve) => (release = resolve));
  const handler = async (msg) => {
    calls.push(msg.payload);
    await released;
  };
  return { calls, release, handler };
}

for (const reconnect of [true, false]) {
  test(`held publishes - they outlive a lost connection (reconnect ${reconnect}) and are handled in order`, async (t) => {
    const { peer, client } = await setup(t, {}, { maxConcurrentHandlers: 1, reconnect });
    await client.connect();
    const b = busy();
    await client.subscribe('held.x', b.handler);
    publish(peer, 'held.x', [0, 1, 2, 3, 4]);
    await until(() => client.getConnectionInfo().heldMessages === 4, 2000, 'four held publishes');
    const back = waitFor(client, reconnect ? 'reconnected' : 'close');
    peer.drop();
    await back;
    b.release();
    await until(() => b.calls.length === 5, 2000, 'every held publish handled'); // were dropped: [0]
    assert.deepEqual(b.calls, [0, 1, 2, 3, 4]);
    assert.equal(client.getConnectionInfo().heldMessages, 0);
  });
}

test('held publishes - disconnect() drops them, as the Python client does', async (t) => {
  const { peer, client } = await setup(t, {}, { maxConcurrentHandlers: 1 });
  await client.connect();
  const b = busy();
  await client.subscribe('held.x', b.handler);
  publish(peer, 'held.x', [0, 1, 2]);
  await until(() => client.getConnectionInfo().heldMessages === 2, 2000, 'two held publishes');
  await client.disconnect();
  assert.equal(client.getConnectionInfo().heldMessages, 0);
  b.release();
  await client.connect();
  publish(peer, 'held.x', ['new']);
  await until(() => b.calls.length === 2, 2000, 'the new publish');
  assert.deepEqual(b.calls, [0, 'new']);
});

test('held publishes - no held call starts after unsubscribe() resolves', async (t) => {
  const { peer, client } = await setup(t, {}, { maxConcurrentHandlers: 1 });
  await client.connect();
  const b = busy();
  await client.subscribe('held.x', b.handler);
  publish(peer, 'held.x', [0, 1, 2, 3]);
  await until(() => client.getConnectionInfo().heldMessages === 3, 2000, 'three held publishes');
  await client.unsubscribe('held.x', b.handler);
  b.release();
  await until(() => client.getConnectionInfo().heldMessages === 0 && client.getConnectionInfo().runningHandlers === 0, 2000, 'the held publishes dealt with');
  assert.deepEqual(b.calls, [0]);
});

test('held publishes - a handler subscribed after they arrived is not given them, as in Python', async (t) => {
  const { peer, client } = await setup(t, {}, { maxConcurrentHandlers: 1 });
  await client.connect();
  const b = busy();
  await client.subscribe('held.x', b.handler);
  publish(peer, 'held.x', [0, 1, 2]);
  await until(() => client.getConnectionInfo().heldMessages === 2, 2000, 'two held publishes');
  const late = [];
  await client.subscribe('held.*', (msg) => late.push(msg.payload));
  b.release();
  await until(() => client.getConnectionInfo().heldMessages === 0 && b.calls.length === 3, 2000, 'the held publishes handled');
  assert.deepEqual(b.calls, [0, 1, 2]);
  assert.deepEqual(late, []); // before: [1, 2], matched at dispatch
  publish(peer, 'held.x', [3]);
  await until(() => late.length === 1, 2000, 'a publish after the subscription');
  assert.deepEqual(late, [3]);
});

test('running handlers - one still running after a lost connection still counts, as in Python', async (t) => {
  const { peer, client } = await setup(t, {}, { maxConcurrentHandlers: 1 });
  await client.connect();
  const b = busy();
  await client.subscribe('held.x', b.handler);
  publish(peer, 'held.x', [0]);
  await until(() => b.calls.length === 1, 2000, 'the handler running');
  const back = waitFor(client, 'reconnected');
  peer.drop();
  await back;
  assert.equal(client.getConnectionInfo().runningHandlers, 1); // before: 0, the count restarted
  publish(peer, 'held.x', [1]);
  await until(() => client.getConnectionInfo().heldMessages === 1, 2000, 'the new publish held for the slot');
  assert.deepEqual(b.calls, [0]); // before: [0, 1], two handlers at once under maxConcurrentHandlers 1
  b.release();
  await until(() => b.calls.length === 2 && client.getConnectionInfo().runningHandlers === 0, 2000, 'the held publish handled');
});

test('unsubscribe()/unserve() resolve when the connection is lost before their ack: not restored either', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  await client.subscribe('gone.x', () => {});
  await client.serve('gone.y', () => 1);
  peer.silent = true; // no ack
  const sent = nextReceived(peer, (m) => m.message_type === 'unsubscribe' && m.channel_id === 'gone.y', 2000);
  const leaving = Promise.all([client.unsubscribe('gone.x'), client.unserve('gone.y')]);
  await sent;
  const back = waitFor(client, 'reconnected');
  const from = peer.received.length;
  peer.silent = false;
  peer.drop();
  assert.deepEqual(await leaving, [undefined, undefined]); // rejected ConnectionLostError
  await back;
  assert.equal(peer.received.slice(from).filter((m) => m.message_type === 'subscribe').length, 0);
  const info = client.getConnectionInfo();
  assert.deepEqual([info.subscriptions, info.responders], [[], []]);
});
