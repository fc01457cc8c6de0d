'use strict';

// The client against a 1.1.x server (version 1, docs/legacy.md,
// lib/legacy_server.js), on real sockets against a scripted peer
// (test/helpers.js): its notifications are broadcasts to the subscribers.
// The same against the real 1.1.2 package: interop-tests/test_js_legacy.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient } = require('..');
const { buildMessage } = require('../lib/envelope');
const { Peer, until } = require('./helpers');

/** The error events of a client, collected. */
function errorsOf(client) {
  const errors = [];
  client.on('error', (err) => errors.push(err));
  return errors;
}

/**
 * A peer that can also send to its latest client connection, and a client
 * of it (not connected yet); both closed after the test.
 * @returns {Promise<{peer: Peer, client: IPCClient, send: (msg: object) => void}>}
 */
async function peerAndSender(t, options) {
  const peer = new Peer(options);
  const conns = [];
  peer.events.on('connection', (conn) => conns.push(conn));
  await peer.listen();
  const client = new IPCClient('app', { host: '127.0.0.1', port: peer.port, initialDelay: 20, maxDelay: 50 });
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  return { peer, client, send: (msg) => conns[conns.length - 1].send(msg) };
}

test('version 1: a notification is a broadcast, delivered to the subscribers of its channel as 1.1.x does', async (t) => {
  const { peer, client, send } = await peerAndSender(t, { legacy: true });
  await client.connect();
  assert.equal(client.getConnectionInfo().protocol, 1);
  const errors = errorsOf(client);
  const got = [];
  await client.subscribe('alerts', (...args) => got.push(args));
  const events = [];
  client.on('message', (msg) => events.push(msg.message_type));
  // As ipc_framework's examples/basic_server.py broadcasts: server._handle_publish(Message(NOTIFICATION, ...)).
  send(buildMessage('notification', 'app', 'alerts', { type: 'high_cpu_alert', value: 95 }, { message_id: '' }));
  send(buildMessage('publish', 'app', 'alerts', { type: 'as_publish' }));
  send(buildMessage('notification', 'app', 'elsewhere', 1)); // nobody subscribes: dropped, as 1.1.x drops it
  await until(() => got.length === 2, 2000, 'both broadcasts');
  assert.deepEqual(got.map(([msg]) => [msg.message_type, msg.payload]), [['notification', { type: 'high_cpu_alert', value: 95 }], ['publish', { type: 'as_publish' }]]);
  assert.ok(got.every((args) => args.length === 1)); // a subscriber's call, not a served one (no ctx)
  assert.deepEqual(events, ['notification', 'publish', 'notification']); // 'message' sees every broadcast, as every publish
  assert.deepEqual(errors, []);
  assert.ok(!peer.received.some((m) => m.message_type === 'response')); // nothing answered
});

test('version 2: a notification still goes to the responder, not to the subscribers', async (t) => {
  const { client, send } = await peerAndSender(t, {});
  await client.connect();
  const subscribed = [];
  const served = [];
  await client.subscribe('alerts', (msg) => subscribed.push(msg.payload));
  await client.serve('alerts', (msg) => served.push(msg.payload));
  send(buildMessage('notification', 'app', 'alerts', { n: 1 }));
  await until(() => served.length === 1, 2000, 'the served notification');
  assert.deepEqual([served, subscribed], [[{ n: 1 }], []]);
});
