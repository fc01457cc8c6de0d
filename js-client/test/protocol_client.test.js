'use strict';

// The client's protocol connection (lib/protocol/client_protocol.js) on
// bytes alone, against the shared vectors: the handshake
// (interop-tests/spec/handshake.json: our connect is the vector's, every
// accepted reply opens, every refusal is reported with its code) and the
// frames (interop-tests/vectors/frames.json: whole, byte by byte, after a
// good frame).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { buildMessage, encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { CLIENT_NAME, DEFAULT_MAX_FRAME_SIZE_BYTES } = require('../lib/constants');
const { ProtocolState, ProtocolViolation } = require('../lib/protocol/protocol');
const { ClientProtocol, Connected, HandshakeRefused, InvalidMessage } = require('../lib/protocol/client_protocol');
const { ROOT, loadVectors } = require('./helpers');

const SPEC = JSON.parse(fs.readFileSync(path.join(ROOT, 'interop-tests', 'spec', 'handshake.json'), 'utf8'));
const { vectors: FRAMES } = loadVectors();

/** A body with what varies replaced (handshake.json's "normalise"). */
function normalise(body) {
  return body
    .replace(new RegExp(SPEC.normalise.message_id, 'g'), '"message_id":"*"')
    .replace(new RegExp(SPEC.normalise.timestamp, 'g'), '"timestamp":0')
    .replace(new RegExp(SPEC.normalise.client, 'g'), '"client":"*"');
}

/** A text body as its frame. */
function frame(body) {
  return encodeFrame(Buffer.from(body, 'utf8'));
}

/** What a pump does with one read. */
function feed(proto, data, now = 0) {
  const items = [];
  for (const body of proto.receiveData(data, now)) {
    if (!proto.live) break;
    items.push(proto.receiveFrame(body));
  }
  return items;
}

/** The frame bodies queued to send, as text. */
function sentBodies(proto) {
  return proto.dataToSend().map((f) => f.subarray(4).toString('utf8'));
}

/** A client protocol for a vector's connect, with the connect sent. */
function clientFor(connect) {
  const sent = JSON.parse(connect);
  const proto = new ClientProtocol({
    appId: sent.app_id,
    connectionId: sent.payload.connection_id ?? 'x',
    token: sent.payload.token ?? null,
    user: sent.payload.user ?? null,
    features: sent.payload.features ?? null // §15.1: asked for only by the vectors that do
  });
  const id = proto.connect();
  return { proto, id, bodies: sentBodies(proto) };
}

/** A server reply of a vector, answering our connect id instead of the vector's. */
function answering(reply, vectorId, id) {
  return frame(reply.split(`"reply_to":"${vectorId}"`).join(`"reply_to":"${id}"`));
}

const ours = SPEC.vectors.filter((v) => {
  const first = JSON.parse(v.steps[0].client_sends);
  return first.app_id !== '' && first.payload && first.payload.action === 'connect' && first.payload.protocol === 2;
});

test('client protocol - the handshake vectors include what a version-2 client sends', () => {
  assert.ok(ours.length >= 4);
});

for (const v of ours) {
  const step = v.steps[0];
  const vectorId = JSON.parse(step.client_sends).message_id;

  test(`client protocol - our connect is the vector's: ${v.name}`, () => {
    const { bodies } = clientFor(step.client_sends);
    assert.equal(bodies.length, 1);
    assert.equal(normalise(bodies[0]), normalise(step.client_sends));
    assert.match(bodies[0], new RegExp(`"client":"${CLIENT_NAME.replace(/[./]/g, '\\$&')}"`));
  });

  test(`client protocol - the server's reply is taken as the server meant it: ${v.name}`, () => {
    const { proto, id } = clientFor(step.client_sends);
    const [event] = feed(proto, answering(step.server_replies[0], vectorId, id));
    if (v.accept_as !== null) {
      assert.ok(event instanceof Connected, String(event && event.constructor.name));
      assert.equal(proto.state, ProtocolState.OPEN);
      assert.equal(event.info.connectionId, v.accept_as);
      assert.deepEqual([event.info.protocol, event.info.legacy, event.info.server], [2, false, SPEC.server.server_name]);
      assert.equal(event.heartbeatIntervalMs, SPEC.server.heartbeat_interval_ms);
      assert.equal(event.connectionId, v.accept_as);
      assert.equal(event.info.keysPerUser, v.users === true); // §3 item 2: the server's keys are per user
      assert.equal(proto.heartbeat, null); // until the pump starts it on its clock
      assert.equal(proto.startHeartbeat(5), true);
      assert.deepEqual([proto.heartbeat.intervalMs, proto.heartbeat.lastReceived], [SPEC.server.heartbeat_interval_ms, 5]);
    } else {
      const expected = JSON.parse(step.server_replies[0]).error.code;
      assert.ok(event instanceof HandshakeRefused);
      assert.equal(event.error.code, expected);
      assert.equal(proto.state, ProtocolState.ERROR);
      assert.equal(proto.startHeartbeat(5), false);
    }
    assert.equal(proto.framesQueued, 0);
  });
}

test('client protocol - a version-1 reply (no protocol field, reply_to null) opens in legacy mode at the local limit', () => {
  const v = SPEC.vectors.find((x) => x.name.startsWith('version 1'));
  const proto = new ClientProtocol({ appId: 'shop', connectionId: 'worker-1', maxFrameSize: 4096 });
  proto.connect();
  proto.dataToSend();
  const reply = JSON.parse(v.steps[0].server_replies[0]);
  reply.reply_to = null; // a 1.1.x server answers the connect with reply_to null (§10)
  const [event] = feed(proto, encodeFrame(encodeMessage(reply)));
  assert.ok(event instanceof Connected);
  assert.deepEqual([event.info.protocol, event.info.legacy, event.info.maxFrameSize], [1, true, 4096]);
  assert.equal(proto.startHeartbeat(0), false); // a version-1 server is never pinged
  assert.equal(proto.heartbeat, null);
  assert.equal(proto.legacy, true);
});

test('client protocol - the frame limit: the smaller of ours and the server\'s, else ours, else the default', () => {
  // A server that negotiates (features in its reply) honours ours both ways (§12.3).
  const open = (local, advertised, negotiates = true) => {
    const proto = new ClientProtocol({ appId: 'a', connectionId: 'c', maxFrameSize: local, features: [] });
    const id = proto.connect();
    const payload = { status: 'connected', protocol: 2, ...(advertised ? { max_frame_size: advertised } : {}), ...(negotiates ? { features: [] } : {}) };
    feed(proto, encodeFrame(encodeMessage(buildMessage('response', 'a', 'system', payload, { reply_to: id }))));
    assert.equal(proto.negotiates, negotiates);
    return [proto.maxFrameSize, proto.sendLimit];
  };
  // A 2.0.0 server (no features) never read ours: we accept up to its own limit, and send no more than ours.
  assert.deepEqual(open(500, 1000, false), [1000, 500]);
  assert.deepEqual(open(5000, 1000, false), [1000, 1000]);
  assert.deepEqual(open(500, null, false), [500, 500]);
  assert.deepEqual(open(null, 1000), [1000, 1000]);
  assert.deepEqual(open(500, 1000), [500, 500]);
  assert.deepEqual(open(5000, 1000), [1000, 1000]);
  assert.deepEqual(open(5000, null), [5000, 5000]);
  assert.deepEqual(open(null, null), [DEFAULT_MAX_FRAME_SIZE_BYTES, DEFAULT_MAX_FRAME_SIZE_BYTES]);
  assert.equal(new ClientProtocol({ appId: 'a', connectionId: 'c' }).maxFrameSize, DEFAULT_MAX_FRAME_SIZE_BYTES); // before the handshake
});

test('client protocol - a refusal in a version-1 payload ({"error": {...}}) is typed too', () => {
  const proto = new ClientProtocol({ appId: 'a', connectionId: 'c', token: 'x' });
  proto.connect();
  const reply = buildMessage('response', 'a', 'system', { error: { code: 'unauthorized', message: 'no' } }, { reply_to: null });
  const [event] = feed(proto, encodeFrame(encodeMessage(reply)));
  assert.ok(event instanceof HandshakeRefused);
  assert.equal(event.error.code, 'unauthorized');
  assert.equal(event.error.name, 'UnauthorizedError');
});

test('client protocol - a reply that is not "connected" is refused with bad_message', () => {
  const proto = new ClientProtocol({ appId: 'a', connectionId: 'c' });
  proto.connect();
  proto.dataToSend();
  const [event] = feed(proto, encodeFrame(encodeMessage(buildMessage('response', 'a', 'system', { status: 'busy' }, { reply_to: null }))));
  assert.ok(event instanceof HandshakeRefused);
  assert.deepEqual([event.error.code, event.error.name, proto.state], ['bad_message', 'MessageError', ProtocolState.ERROR]);
  assert.equal(proto.framesQueued, 0);
});

test('client protocol - anything but the connect reply before it is a violation; the server is not sent an error frame', () => {
  for (const msg of [
    buildMessage('publish', 'a', 'news', 1),
    buildMessage('response', 'a', 'system', { status: 'connected' }, { reply_to: 'someone-else' })
  ]) {
    const proto = new ClientProtocol({ appId: 'a', connectionId: 'c' });
    proto.connect();
    proto.dataToSend();
    const [event] = feed(proto, encodeFrame(encodeMessage(msg)));
    assert.ok(event instanceof ProtocolViolation);
    assert.equal(event.code, 'bad_message');
    assert.equal(event.error.code, 'bad_message');
    assert.equal(proto.state, ProtocolState.ERROR);
    assert.equal(proto.framesQueued, 0);
  }
});

test('client protocol - the second connect and the ping of the multi-step vector, seen from the client', () => {
  const v = SPEC.vectors.find((x) => x.steps.length === 3);
  const { proto, id } = clientFor(v.steps[0].client_sends);
  feed(proto, answering(v.steps[0].server_replies[0], 'hello-1', id));
  const refused = JSON.parse(v.steps[1].server_replies[0]);
  const [answer] = feed(proto, frame(v.steps[1].server_replies[0]));
  assert.deepEqual([answer.reply_to, answer.error.code], [refused.reply_to, refused.error.code]); // the pump's: an answer to a call
  const pingId = proto.sendPing(10);
  const [pong] = feed(proto, answering(v.steps[2].server_replies[0], 'ping-1', pingId), 12);
  assert.equal(pong.constructor.name, 'PongReceived');
  assert.equal(proto.state, ProtocolState.OPEN);
});

/** An open client protocol, the fake clock at 0. */
function openClient() {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c', features: ['cancel', 'streams'] }); // the frames of §15 too
  const id = proto.connect();
  proto.dataToSend();
  const connected = { status: 'connected', protocol: 2, max_frame_size: 1 << 24, features: ['cancel', 'streams'] };
  feed(proto, encodeFrame(encodeMessage(buildMessage('response', 'app', 'system', connected, { reply_to: id }))));
  return proto;
}

/** A response frame whose payload is `{"big": 1e400}`. */
function overflowing(replyTo) {
  const body = encodeMessage(buildMessage('response', 'app', 'x', { big: 'N' }, { reply_to: replyTo })).replace('"N"', '1e400');
  return frame(body);
}

test('client protocol - a version-2 server\'s frames are not walked again for numbers that overflow (§1.1)', () => {
  // It refused them on the way in and never encodes one, as the Python client relies on too.
  const proto = openClient();
  const [msg] = feed(proto, overflowing('req-1'));
  assert.deepEqual(msg.payload, { big: Infinity });
  assert.equal(proto.state, ProtocolState.OPEN);
});

test('client protocol - a 1.1.x server\'s frames are walked for them', () => {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c' });
  proto.connect();
  proto.dataToSend();
  const v1 = { status: 'connected', connection_id: 'c' }; // no protocol field: version 1 (§10)
  feed(proto, encodeFrame(encodeMessage(buildMessage('response', 'app', 'system', v1, { reply_to: null }))));
  assert.equal(proto.legacy, true);
  const [event] = feed(proto, overflowing('req-1'));
  assert.ok(event instanceof ProtocolViolation);
  assert.match(proto.violation.text, /overflows a double/);
});

/** Splits a buffer into 1-byte chunks. */
function bytewise(buf) {
  const out = [];
  for (let i = 0; i < buf.length; i++) out.push(buf.subarray(i, i + 1));
  return out;
}

const good = FRAMES.filter((v) => v.message !== undefined);
const bad = FRAMES.filter((v) => v.error !== undefined);

test('client protocol - every good frame vector comes back as its message, whole and byte by byte', () => {
  for (const v of good) {
    const bytes = Buffer.from(v.hex, 'hex');
    assert.deepStrictEqual(feed(openClient(), bytes), [v.message], v.name);
    const proto = openClient();
    const items = bytewise(bytes).flatMap((b) => feed(proto, b));
    assert.deepStrictEqual(items, [v.message], `${v.name} byte by byte`);
  }
});

for (const v of bad) {
  test(`client protocol - frame vector ${v.error}: ${v.name}`, () => {
    for (const chunks of [[Buffer.from(v.hex, 'hex')], bytewise(Buffer.from(v.hex, 'hex'))]) {
      const proto = openClient();
      const first = Buffer.from(good[0].hex, 'hex');
      const items = [first, ...chunks].flatMap((c) => feed(proto, c));
      assert.deepStrictEqual(items[0], good[0].message); // the good frame before it
      if (v.error === 'bad_message') {
        // a bad envelope: reported and skipped, the stream stays in sync
        assert.ok(items[1] instanceof InvalidMessage);
        assert.equal(items[1].error.code, 'bad_message');
        assert.equal(proto.state, ProtocolState.OPEN);
        assert.deepStrictEqual(feed(proto, first), [good[0].message]);
      } else {
        assert.equal(proto.state, ProtocolState.ERROR);
        assert.equal(proto.violation.code, v.error);
        assert.equal(proto.violation.error.code, v.error);
      }
      assert.equal(proto.framesQueued, 0); // the server is never sent an error frame
    }
  });
}

test('client protocol - a frame of §15 the server did not grant is a violation, as in Python (§15.1 item 4)', () => {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c', features: ['cancel', 'streams'] });
  const id = proto.connect();
  proto.dataToSend();
  const connected = { status: 'connected', protocol: 2, max_frame_size: 1 << 24, features: ['cancel'] }; // no streams
  feed(proto, encodeFrame(encodeMessage(buildMessage('response', 'app', 'system', connected, { reply_to: id }))));
  assert.equal(proto.state, ProtocolState.OPEN);
  const [event] = feed(proto, encodeFrame(encodeMessage(buildMessage('stream_item', 'app', 'ticks', 1, { reply_to: 'req-1' }))));
  assert.ok(event instanceof ProtocolViolation);
  assert.equal(event.code, 'bad_message');
  assert.equal(proto.live, false);
});
