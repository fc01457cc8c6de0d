'use strict';

/**
 * Today's Node client against a 2.0.0 server (docs/protocol.md §15.1 item 3):
 * a server whose connect reply has no `features` does not negotiate, so it
 * ignores a declared maxFrameSize (§12.3) and idempotency keys (§6.6), and
 * does not screen numbers (§1.1). The twin of tests/test_version_skew.py.
 *
 * The 2.0.0 server is emulated, not run: OLD_REPLY is the connect reply a
 * real 2.0.0 server (commit 5ee088e, `python -m ipc_server`) sent to a
 * connect asking for `features` and `max_frame_size: 4096`, byte for byte
 * but for its message_id, timestamp, connection_id and reply_to, filled in
 * below. Today's server sends the same payload plus `"features": [...]`
 * (NEW_REPLY; the list left empty here: any list negotiates).
 */

const test = require('node:test');
const assert = require('node:assert/strict');
const { IPCClient } = require('..');
const { encodeFrame } = require('../lib/framing');
const { ProtocolViolation } = require('../lib/protocol/protocol');
const { ClientProtocol, Connected } = require('../lib/protocol/client_protocol');
const { Peer } = require('./helpers');

const OLD_REPLY =
  '{"message_id":"f339220370571","app_id":"app","channel_id":"system","message_type":"response",' +
  '"payload":{"status":"connected","connection_id":"c1","protocol":2,"server":"ipc-bridge/2.0.0",' +
  '"heartbeat_interval_ms":15000,"max_frame_size":16777216},"timestamp":1796672840.8515081,"reply_to":"h1"}';
const NEW_REPLY = OLD_REPLY.replace('"max_frame_size":16777216}', '"max_frame_size":16777216,"features":[]}');
const BIG = 'x'.repeat(10_000); // over the client's declared 4096, under the server's 16 MiB
const HUGE = '9'.repeat(309); // an integer past the largest double (§1.1)

/** A response as a 2.0.0 server relays it: the payload's bytes as they came. */
function response(request, payloadJson) {
  const head = { message_id: `s-${request.message_id}`, app_id: request.app_id, channel_id: request.channel_id, message_type: 'response', payload: '@', timestamp: 1, reply_to: request.message_id };
  return Buffer.from(JSON.stringify(head).replace('"payload":"@"', `"payload":${payloadJson}`));
}

function opened(reply, options = {}) {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c1', features: ['cancel', 'streams'], ...options });
  const hello = proto.connect();
  proto.dataToSend();
  const [event] = proto.receiveData(encodeFrame(Buffer.from(reply.replace('"h1"', JSON.stringify(hello))))).map((f) => proto.receiveFrame(f));
  assert.ok(event instanceof Connected);
  return [proto, event];
}

function frames(proto, body) {
  return proto.receiveData(encodeFrame(body)).map((f) => proto.receiveFrame(f));
}

test('version skew - a reply without features is a server that does not negotiate', () => {
  const [old, oldEvent] = opened(OLD_REPLY);
  const [now, newEvent] = opened(NEW_REPLY);
  assert.deepEqual([old.negotiates, oldEvent.negotiates, now.negotiates, newEvent.negotiates], [false, false, true, true]);
});

test('version skew - a declared limit bounds only what is sent to a server that does not negotiate (§12.3)', () => {
  const request = { message_id: 'r1', app_id: 'app', channel_id: 'svc.big' };
  const [old, oldEvent] = opened(OLD_REPLY, { maxFrameSize: 4096 });
  assert.deepEqual([oldEvent.maxFrameSize, old.sendLimit, old.maxFrameSize], [4096, 4096, 16777216]);
  const [item] = frames(old, response(request, JSON.stringify(BIG)));
  assert.equal(item.payload, BIG);
  const [now, newEvent] = opened(NEW_REPLY, { maxFrameSize: 4096 });
  assert.deepEqual([newEvent.maxFrameSize, now.sendLimit, now.maxFrameSize], [4096, 4096, 4096]);
  assert.deepEqual(frames(now, response(request, JSON.stringify(BIG))), []); // refused on its length prefix
  assert.equal(now.violation.error.code, 'too_large');
});

test('version skew - with no declared limit, a server that does not negotiate is taken at its own (as Python)', () => {
  const [old, oldEvent] = opened(OLD_REPLY.replace('"max_frame_size":16777216', '"max_frame_size":67108864'));
  assert.deepEqual([oldEvent.maxFrameSize, old.sendLimit, old.maxFrameSize], [67108864, 67108864, 67108864]);
});

test('version skew - a server that does not negotiate is screened for numbers that overflow (§1.1)', () => {
  // A short frame: the depth walk that also finds them runs on long frames only.
  const request = { message_id: 'r', app_id: 'a', channel_id: 'n' };
  const body = () => Buffer.from(`{"message_id":"m","app_id":"a","channel_id":"n","message_type":"response","payload":1e400,"timestamp":1,"reply_to":"r"}`);
  const [old] = opened(OLD_REPLY);
  const [violation] = frames(old, body());
  assert.ok(violation instanceof ProtocolViolation);
  assert.equal(violation.error.code, 'bad_frame');
  const [now] = opened(NEW_REPLY);
  const [item] = frames(now, body()); // not looked at again: its server screened it
  assert.equal(item.reply_to, request.message_id);
  assert.equal(item.payload, Infinity);
  const [long] = frames(opened(OLD_REPLY)[0], response(request, `{"n":${HUGE}}`));
  assert.ok(long instanceof ProtocolViolation); // 2.0.0 relays this one as it came
});

/**
 * A scripted server answering each connect with replies[i] (the i-th
 * connection's, the last for any after) byte for byte, and each request as
 * `answer(msg, conn)` does.
 */
async function scripted(t, replies, answer) {
  let connections = 0;
  const peer = new Peer({
    onRequest: answer,
    onConnect: (msg, conn) => {
      const reply = replies[Math.min(connections++, replies.length - 1)];
      const bytes = reply.replace('"h1"', JSON.stringify(msg.message_id)).replace('"c1"', JSON.stringify(msg.payload.connection_id));
      conn.socket.write(encodeFrame(Buffer.from(bytes)));
      return true;
    }
  });
  await peer.listen();
  t.after(() => peer.close());
  return peer;
}

async function clientOf(t, peer, options = {}) {
  const client = new IPCClient('app', { port: peer.port, initialDelay: 10, maxDelay: 20, jitter: 0, requestTimeout: 5000, ...options });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  await client.connect();
  return client;
}

test('version skew - a declared maxFrameSize does not cost the connection behind a 2.0.0 server', async (t) => {
  // Before: the 10 KB answer broke the connection (too_large) and the call failed connection_lost.
  const peer = await scripted(t, [OLD_REPLY], (msg, conn) => conn.socket.write(encodeFrame(response(msg, JSON.stringify(BIG)))));
  const client = await clientOf(t, peer, { maxFrameSize: 4096 });
  const lost = [];
  client.on('disconnected', (e) => lost.push(e));
  assert.equal(await client.request('svc.big', {}), BIG);
  await assert.rejects(client.request('svc.big', 'y'.repeat(5000)), { code: 'too_large' }); // ours still bounds what is sent
  assert.deepEqual(lost, []);
});

for (const [name, first, then] of [['old-old', OLD_REPLY, OLD_REPLY], ['new-old', NEW_REPLY, OLD_REPLY], ['old-new', OLD_REPLY, NEW_REPLY]]) {
  test(`version skew - a keyed request is not resent unless both servers negotiate (${name})`, async (t) => {
    // A 2.0.0 server ignores the key: a resend would run it again (the probe saw 2 runs).
    let runs = 0;
    const peer = await scripted(t, [first, then], (msg, conn) => {
      runs++;
      if (runs === 1) conn.socket.destroy();
      else conn.socket.write(encodeFrame(response(msg, '"ran"')));
    });
    const client = await clientOf(t, peer);
    await assert.rejects(client.request('pay.charge', { amount: 10 }, { idempotencyKey: 'order-42' }), { code: 'connection_lost' });
    assert.equal(runs, 1);
  });
}

test('version skew - a keyed request is resent between servers that negotiate', async (t) => {
  let runs = 0;
  const peer = await scripted(t, [NEW_REPLY], (msg, conn) => {
    runs++;
    if (runs === 1) conn.socket.destroy();
    else conn.socket.write(encodeFrame(response(msg, '"ran"')));
  });
  const client = await clientOf(t, peer);
  assert.equal(await client.request('pay.charge', { amount: 10 }, { idempotencyKey: 'order-42' }), 'ran');
  assert.equal(runs, 2);
});
