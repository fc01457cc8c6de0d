'use strict';

// The `system` channel (docs/protocol.md §8) from the client's side: it may
// serve `system` and gets the actions the server routes there, keeps
// answering the server's pings itself, and may send any action. Against the
// real server: interop-tests/test_js_system.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient, ErrorCode, ForbiddenError } = require('..');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { Peer, nextReceived } = require('./helpers');

/**
 * A peer (answering `system` requests with `onSystem(msg, reply)`) and a
 * connected client.
 * @param {import('node:test').TestContext} t
 * @param {(msg: object, reply: Function) => void} [onSystem]
 */
async function setup(t, onSystem) {
  const peer = new Peer({
    onRequest: (msg, conn, reply) => {
      if (msg.channel_id === 'system' && onSystem) onSystem(msg, reply);
      else reply({ echo: msg.payload });
    }
  });
  const port = await peer.listen();
  const client = new IPCClient('app', { host: '127.0.0.1', port });
  client.on('error', () => {});
  t.after(async () => {
    await client.disconnect();
    await peer.close();
  });
  await client.connect();
  return { peer, client };
}

/**
 * Sends a request from the peer to the client and resolves the client's answer.
 * @param {Peer} peer
 * @param {object} payload
 * @returns {Promise<object>} the response message.
 */
function askClient(peer, payload) {
  const req = buildMessage('request', 'app', 'system', payload, { timeout_ms: 2000 });
  const answered = nextReceived(peer, (m) => m.message_type === 'response' && m.reply_to === req.message_id);
  [...peer.sockets][0].write(encodeFrame(encodeMessage(req)));
  return answered;
}

test('system - serve("system") registers with the server and answers the actions routed to it; pings stay the client\'s', async (t) => {
  const { peer, client } = await setup(t);
  const seen = [];
  await client.serve('system', (msg) => {
    seen.push(msg.payload.action);
    if (msg.payload.action === 'get_time') return { time: 1234.5 };
    throw new RangeError(`unknown action ${msg.payload.action}`);
  });
  const sub = peer.received.find((m) => m.message_type === 'subscribe' && m.channel_id === 'system');
  assert.deepEqual(sub.payload, { serve: true });
  assert.deepEqual(client.getConnectionInfo().responders, ['system']);
  assert.deepEqual((await askClient(peer, { action: 'get_time' })).payload, { time: 1234.5 });
  const failed = await askClient(peer, { action: 'reboot' });
  assert.equal(failed.error.code, ErrorCode.HANDLER_ERROR);
  assert.equal(failed.error.remote_type, 'RangeError');
  // The server's heartbeat pings never reach the responder.
  assert.deepEqual((await askClient(peer, { action: 'ping' })).payload, { status: 'pong' });
  assert.deepEqual(seen, ['get_time', 'reboot']);
});

test('system - without a system responder, a routed system request is answered no_responders, as the server answers it', async (t) => {
  const { peer, client } = await setup(t);
  const answer = await askClient(peer, { action: 'get_time' });
  assert.equal(answer.error.code, ErrorCode.NO_RESPONDERS);
  await client.serve('system', () => 'now');
  assert.equal((await askClient(peer, { action: 'get_time' })).payload, 'now');
  await client.unserve('system');
  const unsub = peer.received.find((m) => m.message_type === 'unsubscribe' && m.channel_id === 'system');
  assert.deepEqual(unsub.payload, { serve: true });
  assert.equal((await askClient(peer, { action: 'get_time' })).error.code, ErrorCode.NO_RESPONDERS);
});

test('system - other reserved channels and patterns under them are refused locally with ForbiddenError', async (t) => {
  const { peer, client } = await setup(t);
  const before = peer.received.length;
  for (const channel of ['system.x', 'system.*', 'system.>', '$sys', '$sys.services', '$sys.>']) {
    await assert.rejects(client.serve(channel, () => 1), (err) => err instanceof ForbiddenError && err.code === ErrorCode.FORBIDDEN, channel);
  }
  assert.equal(peer.received.length, before, 'nothing was sent');
  assert.deepEqual(client.getConnectionInfo().responders, []);
});

test('system - sendRequest("system", {action}) goes out; system(action) and request() resolve the payload', async (t) => {
  const { peer, client } = await setup(t, (msg, reply) => {
    if (msg.payload.action === 'get_time') reply({ time: 42 });
    else if (msg.payload.action === 'stats') reply({ connections: 1 });
    else reply(null, { error: { code: 'no_responders', message: 'nobody serves system' } });
  });
  const res = await client.sendRequest('system', { action: 'get_time' });
  assert.deepEqual(res.payload, { time: 42 });
  assert.ok(peer.received.some((m) => m.message_type === 'request' && m.channel_id === 'system' && m.payload.action === 'get_time'));
  assert.deepEqual(await client.system('get_time'), { time: 42 });
  assert.deepEqual(await client.system('stats', { timeout: 1000 }), { connections: 1 });
  await assert.rejects(client.system('reboot'), { code: ErrorCode.NO_RESPONDERS });
  await assert.rejects(client.system(''), TypeError);
  assert.deepEqual(await client.request('echo', { a: 1 }), { echo: { a: 1 } });
  assert.deepEqual(await client.request('echo', 2, { timeout: 1000 }), { echo: 2 });
  assert.deepEqual(await client.request('echo', 3, 1000, { headers: { h: 'v' } }), { echo: 3 });
});

test('system - params go in the payload beside the action (a page of channels or connections), as in Python', async (t) => {
  const { peer, client } = await setup(t, (msg, reply) => reply({ channels: {}, total: 0, offset: msg.payload.offset, limit: msg.payload.limit }));
  const page = await client.system('channels', { params: { offset: 2048, limit: 10, action: 'not this' } });
  assert.deepEqual(page, { channels: {}, total: 0, offset: 2048, limit: 10 });
  const sent = peer.received.find((m) => m.message_type === 'request' && m.channel_id === 'system' && m.payload.action === 'channels');
  assert.deepEqual(sent.payload, { offset: 2048, limit: 10, action: 'channels' });
  await assert.rejects(client.system('channels', { params: [1] }), { name: 'TypeError', message: 'params must be an object, got an array' });
  await assert.rejects(client.system('channels', { params: 'offset=1' }), TypeError);
});

test('notify() on a reserved channel is refused at the call (the server would drop it unanswered), as publish()', async (t) => {
  const { peer, client } = await setup(t);
  const mark = peer.received.length;
  for (const channel of ['system.x', '$sys.x']) {
    assert.throws(() => client.notify(channel, 1), { code: 'forbidden' });
  }
  const arrived = nextReceived(peer, (m) => m.message_type === 'notification', 2000);
  await client.notify('system', { action: 'get_time' }); // routed to whoever serves system
  await arrived;
  const notified = () => peer.received.slice(mark).filter((m) => m.message_type === 'notification').map((m) => m.channel_id);
  assert.deepEqual(notified(), ['system']); // the refused ones never went out
});
