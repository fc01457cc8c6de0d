'use strict';

// A subscribe() or serve() that times out after its frame went out keeps
// nothing on the server either: the client withdraws it (lib/subscriptions.js
// _withdraw), and never a later subscribe of the same channel. The scripted
// peer (test/helpers.js) goes silent, so the ack comes late or never.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ErrorCode } = require('..');
const { peerAndClient: setup, waitFor, nextReceived, until } = require('./helpers');

/** The types of what the peer received on `channel` from `mark` on. */
function framesOn(peer, mark, channel) {
  return peer.received.slice(mark).filter((m) => m.channel_id === channel).map((m) => m.message_type);
}

test('subscribe() timed out: withdrawn from the server', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  peer.silent = true;
  const withdrawn = nextReceived(peer, (m) => m.message_type === 'unsubscribe' && m.channel_id === 'late', 2000);
  await assert.rejects(client.subscribe('late', () => {}, { timeout: 100 }), { code: ErrorCode.TIMEOUT });
  const msg = await withdrawn; // was never sent: the server went on delivering to no handler
  assert.equal(msg.payload, null);
  assert.deepEqual(client.getConnectionInfo().subscriptions, []);
});

test('serve() timed out: withdrawn from the server', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  peer.silent = true;
  const withdrawn = nextReceived(peer, (m) => m.message_type === 'unsubscribe' && m.channel_id === 'svc', 2000);
  await assert.rejects(client.serve('svc', () => 1, { timeout: 100 }), { code: ErrorCode.TIMEOUT });
  assert.deepEqual((await withdrawn).payload, { serve: true });
  assert.deepEqual(client.getConnectionInfo().responders, []);
});

test('the withdrawal never undoes a later subscribe of the channel', async (t) => {
  const { peer, client } = await setup(t);
  const conns = [];
  peer.events.on('connection', (conn) => conns.push(conn));
  await client.connect();
  await client.subscribe('marker', () => {});
  const mark = peer.received.length;
  peer.silent = true;
  await assert.rejects(client.subscribe('again', () => {}, { timeout: 100 }), { code: ErrorCode.TIMEOUT });
  const got = [];
  const second = client.subscribe('again', (m) => got.push(m.payload));
  await until(() => framesOn(peer, mark, 'again').length === 3, 2000, 'the second subscribe');
  assert.deepEqual(framesOn(peer, mark, 'again'), ['subscribe', 'unsubscribe', 'subscribe']); // the server ends holding it
  peer.silent = false;
  for (const msg of peer.received.slice(mark)) peer._answer(conns[0], msg); // late acks, in order
  await second;
  assert.deepEqual(client.getConnectionInfo().subscriptions, ['marker', 'again']);
  assert.equal(conns.length, 1);
});

test('a second handler timing out keeps the first one subscribed', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  await client.subscribe('two', () => {});
  const mark = peer.received.length;
  peer.silent = true;
  await assert.rejects(client.subscribe('two', () => {}, { timeout: 100 }), { code: ErrorCode.TIMEOUT });
  peer.silent = false;
  await client.subscribe('marker', () => {}); // everything sent before it has arrived
  assert.deepEqual(framesOn(peer, mark, 'two'), ['subscribe']);
  assert.deepEqual(client.getConnectionInfo().subscriptions, ['two', 'marker']);
});

test('a subscribe() restored while it waits, then timed out, is withdrawn after the restore', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  peer.drop();
  await waitFor(client, 'reconnecting');
  peer.onConnect = () => {
    peer.silent = true; // answers this handshake, then no ack: the restore waits
    return false;
  };
  const mark = peer.received.length;
  const withdrawn = nextReceived(peer, (m) => m.message_type === 'unsubscribe' && m.channel_id === 'waiting', 3000);
  await assert.rejects(client.subscribe('waiting', () => {}, { timeout: 500 }), { code: ErrorCode.TIMEOUT });
  await withdrawn;
  assert.deepEqual(framesOn(peer, mark, 'waiting'), ['subscribe', 'unsubscribe']);
  peer.onConnect = null;
  peer.silent = false;
});

test('serve() then unserve(), subscribe() then unsubscribe(), called back to back: the server ends holding nothing', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  await client.subscribe('marker', () => {});
  const mark = peer.received.length;
  await Promise.all([client.serve('svc', () => 1), client.unserve('svc')]);
  await Promise.all([client.subscribe('news', () => {}), client.unsubscribe('news')]);
  await client.subscribe('marker.end', () => {}); // everything before it has reached the peer
  // Never a subscribe after its withdrawal: the server would go on routing to no handler.
  for (const channel of ['svc', 'news']) {
    const frames = framesOn(peer, mark, channel);
    assert.notEqual(frames[frames.length - 1], 'subscribe', `${channel}: ${frames}`);
  }
  assert.deepEqual(client.getConnectionInfo().responders, []);
});
