'use strict';

// The client against a 1.1.x server (version 1, docs/legacy.md,
// lib/legacy_server.js), on real sockets against a scripted peer
// (test/helpers.js): its notifications are broadcasts to the subscribers,
// what it lacks (responders, wildcard subscriptions) is refused with
// MessageError and never sent, and only an error object as the whole
// payload is an error answer. The same against the real 1.1.2 package:
// interop-tests/test_js_legacy.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ErrorCode, MessageError, HandlerError } = require('..');
const { buildMessage } = require('../lib/envelope');
const { Peer, peerAndClient: setup, waitFor, until } = require('./helpers');

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

const SUBSCRIBES = (m) => m.message_type === 'subscribe';

/** Publishes a marker and waits until the peer has it: every frame sent before it has arrived too. */
async function barrier(peer, client) {
  const marker = `end-${peer.received.length}`;
  await client.publish(marker, 1);
  await until(() => peer.received.some((m) => m.channel_id === marker), 2000, 'the marker');
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

test('version 1: serve() and wildcard subscriptions reject with MessageError and send nothing', async (t) => {
  const { peer, client } = await setup(t, { legacy: true });
  await client.connect();
  const before = peer.received.length;
  await assert.rejects(client.serve('svc', () => 1), (err) => err instanceof MessageError && err.code === ErrorCode.BAD_MESSAGE && /serve\('svc'\) needs a version-2 server/.test(err.message));
  for (const pattern of ['w.*', 'w.>']) {
    await assert.rejects(client.subscribe(pattern, () => {}), (err) => err instanceof MessageError && /wildcard subscriptions need a version-2 server/.test(err.message));
  }
  const info = client.getConnectionInfo();
  assert.deepEqual([info.responders, info.subscriptions], [[], []]);
  await client.subscribe('news', () => {}); // an exact name is what 1.1.x has
  await barrier(peer, client);
  assert.deepEqual(peer.received.slice(before).filter(SUBSCRIBES).map((m) => m.channel_id), ['news']);
  assert.equal(client.state, 'connected');
});

test('version 1: registrations made while connecting are refused when the server turns out to be 1.1.x', async (t) => {
  let release;
  const held = new Promise((resolve) => (release = resolve));
  const { peer, client } = await peerAndSender(t, {
    legacy: true,
    onConnect: (msg, conn) => {
      held.then(() => conn.send(buildMessage('response', msg.app_id, 'system', { status: 'connected', connection_id: msg.payload.connection_id })));
      return true;
    }
  });
  const errors = errorsOf(client);
  const connecting = client.connect();
  await until(() => peer.received.length === 1, 2000, 'the connect');
  const serving = client.serve('svc', () => 1);
  const wildcard = client.subscribe('w.*', () => {});
  const exact = client.subscribe('news', () => {});
  release();
  assert.equal(await connecting, true);
  const refusal = await serving.then(() => null, (err) => err);
  assert.ok(refusal instanceof MessageError, String(refusal));
  await assert.rejects(wildcard, (err) => err instanceof MessageError && /'w\.\*'/.test(err.message));
  await exact;
  assert.ok(errors.includes(refusal)); // the error event names each refused registration
  assert.deepEqual(errors.map((e) => e.message.match(/\('([^']*)'\)/)[1]).sort(), ['svc', 'w.*']);
  const info = client.getConnectionInfo();
  assert.deepEqual([info.responders, info.subscriptions], [[], ['news']]);
  await barrier(peer, client);
  assert.deepEqual([...new Set(peer.received.filter(SUBSCRIBES).map((m) => m.channel_id))], ['news']);
});

test('version 1: a reconnection that finds a 1.1.x server reports each registration it cannot restore on error', async (t) => {
  const { peer, client } = await setup(t);
  await client.connect();
  await client.serve('svc', () => 1);
  await client.subscribe('w.*', () => {});
  await client.subscribe('news', () => {});
  const errors = errorsOf(client);
  peer.legacy = true; // the same address now answers as a 1.1.x server
  const before = peer.received.length;
  const reconnected = waitFor(client, 'reconnected');
  peer.drop();
  await reconnected;
  assert.equal(client.getConnectionInfo().protocol, 1);
  assert.ok(errors.every((e) => e instanceof MessageError), String(errors));
  assert.deepEqual(errors.map((e) => e.message.match(/\('([^']*)'\)/)[1]).sort(), ['svc', 'w.*']);
  const info = client.getConnectionInfo();
  assert.deepEqual([info.responders, info.subscriptions], [[], ['news']]);
  await barrier(peer, client);
  assert.deepEqual(peer.received.slice(before).filter(SUBSCRIBES).map((m) => m.channel_id), ['news']);
  assert.equal(client.state, 'connected');
});

test('version 1: only an error object as the whole payload is an error answer (docs/legacy.md)', async (t) => {
  const answers = { obj: { error: { code: 'handler_error', message: 'boom' } }, text: { error: 'User not found' }, null: { error: null }, false: { error: false }, list: { error: ['a'] } };
  const { client } = await setup(t, { legacy: true, onRequest: (msg, conn, reply) => reply(answers[msg.channel_id]) });
  await client.connect();
  await assert.rejects(client.sendRequest('obj', null), HandlerError);
  for (const channel of ['text', 'null', 'false', 'list']) {
    assert.deepEqual((await client.sendRequest(channel, null)).payload, answers[channel], channel);
  }
});
