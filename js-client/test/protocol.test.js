'use strict';

// The base protocol connection (lib/protocol/protocol.js) on bytes alone:
// the state table, sticky error, the send queue, violations, ping/pong and
// heartbeats on a fake clock (docs/protocol.md §1, §6.4, §9), as
// tests/test_protocol_base.py checks the Python base. The role used is the
// client's (the only one Node has), opened by a scripted connect reply.

const test = require('node:test');
const assert = require('node:assert/strict');
const { FrameDecoder, encodeFrame } = require('../lib/framing');
const { buildMessage, decodeMessage, encodeMessage } = require('../lib/envelope');
const { HeartbeatAction } = require('../lib/heartbeat');
const {
  Protocol,
  ProtocolState,
  TRANSITIONS,
  ProtocolStateError,
  PingReceived,
  PongReceived,
  MessageRefused,
  ProtocolViolation
} = require('../lib/protocol/protocol');
const { ClientProtocol, Connected } = require('../lib/protocol/client_protocol');

const { HANDSHAKE, OPEN, CLOSING, CLOSED, ERROR } = ProtocolState;

/** @returns {Buffer} the frame of a message. */
function frameOf(msg, legacy = false) {
  return encodeFrame(encodeMessage(msg, { legacy }));
}

/** What a pump does with one read: every frame, in order, while live. */
function feed(proto, data, now) {
  const items = [];
  for (const body of proto.receiveData(data, now)) {
    if (!proto.live) break;
    items.push(proto.receiveFrame(body));
  }
  return items;
}

/** The messages queued to send. */
function sent(proto) {
  const decoder = new FrameDecoder({ maxFrameSize: null });
  return proto.dataToSend().flatMap((f) => decoder.feed(f)).map((b) => decodeMessage(b));
}

/** A client protocol through its handshake, on the fake clock `now`. */
function opened({ heartbeatIntervalMs = 0, heartbeatInterval = null, now = 0, legacy = false } = {}) {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'c1', heartbeatInterval });
  const id = proto.connect();
  proto.dataToSend();
  const payload = legacy
    ? { status: 'connected', connection_id: 'c1' }
    : { status: 'connected', connection_id: 'c1', protocol: 2, server: 't', heartbeat_interval_ms: heartbeatIntervalMs, max_frame_size: 1 << 24 };
  const [event] = feed(proto, frameOf(buildMessage('response', 'app', 'system', payload, { reply_to: legacy ? null : id })), now);
  assert.ok(event instanceof Connected);
  proto.startHeartbeat(now);
  return proto;
}

test('protocol - the table is the documented one', () => {
  const table = Object.fromEntries(Object.entries(TRANSITIONS).map(([s, t]) => [s, [...t].sort()]));
  assert.deepEqual(table, {
    handshake: ['closed', 'closing', 'error', 'open'],
    open: ['closed', 'closing', 'error'],
    closing: ['closed'],
    closed: [],
    error: []
  });
});

test('protocol - every allowed move is made by the API', () => {
  const moves = new Set();
  const track = (p, act) => {
    const before = p.state;
    act();
    moves.add(`${before}>${p.state}`);
  };
  let p = new ClientProtocol({ appId: 'app', connectionId: 'c' });
  const id = p.connect();
  const reply = frameOf(buildMessage('response', 'app', 'system', { status: 'connected', protocol: 2 }, { reply_to: id }));
  track(p, () => feed(p, reply)); // handshake -> open
  track(p, () => p.close()); // open -> closing
  track(p, () => p.connectionLost()); // closing -> closed
  p = new ClientProtocol({ appId: 'app', connectionId: 'c' });
  track(p, () => p.close()); // handshake -> closing
  p = new ClientProtocol({ appId: 'app', connectionId: 'c' });
  track(p, () => p.connectionLost()); // handshake -> closed
  p = new ClientProtocol({ appId: 'app', connectionId: 'c' });
  track(p, () => p.fail('bad_message', 'no')); // handshake -> error
  p = opened();
  track(p, () => p.connectionLost()); // open -> closed
  p = opened();
  track(p, () => p.fail('bad_message', 'no')); // open -> error
  const expected = Object.entries(TRANSITIONS).flatMap(([a, targets]) => targets.map((b) => `${a}>${b}`));
  assert.deepEqual([...moves].sort(), expected.sort());
});

test('protocol - a move the table forbids raises; nothing is read once closing', () => {
  const p = opened();
  assert.throws(() => p._move(HANDSHAKE), ProtocolStateError);
  p.close();
  assert.equal(p.state, CLOSING);
  assert.throws(() => p.receiveFrame(frameOf(buildMessage('publish', 'app', 'x', 1)).subarray(4)), ProtocolStateError);
  assert.deepEqual(p.receiveData(frameOf(buildMessage('publish', 'app', 'x', 1))), []);
});

test('protocol - error is sticky: nothing more is read or sent', () => {
  const p = opened();
  assert.ok(p.fail('bad_message', 'no') instanceof ProtocolViolation);
  p.close();
  p.connectionLost();
  assert.equal(p.state, ERROR);
  assert.equal(p.fail('bad_message', 'again'), null);
  assert.deepEqual(p.receiveData(frameOf(buildMessage('publish', 'app', 'x', 1))), []);
  assert.equal(p.send(buildMessage('publish', 'app', 'x', 1)), 0);
  assert.equal(p.sendFrame(Buffer.from([0, 0, 0, 1, 0x78])), 0);
});

test('protocol - send counts what is queued, dataToSend empties it; closing keeps what was queued', () => {
  const p = opened();
  assert.equal(p.send(buildMessage('publish', 'app', 'a', 1)), 1);
  assert.equal(p.sendFrame(frameOf(buildMessage('publish', 'app', 'b', 2))), 2);
  assert.equal(p.framesQueued, 2);
  p.close();
  assert.equal(p.send(buildMessage('publish', 'app', 'c', 3)), 0);
  assert.deepEqual(sent(p).map((m) => m.channel_id), ['a', 'b']);
  assert.deepEqual(p.dataToSend(), []);
  p.send(buildMessage('publish', 'app', 'd', 4));
  p.connectionLost();
  assert.equal(p.state, CLOSED);
  assert.equal(p.framesQueued, 0);
});

test('protocol - a version-1 peer gets only the version-1 fields; encode() queues nothing', () => {
  const p = opened({ legacy: true });
  const msg = buildMessage('request', 'app', 'svc', 1, { timeout_ms: 50, headers: { a: 'b' } });
  const frame = p.encode(msg);
  assert.equal(p.framesQueued, 0);
  assert.deepEqual(frame, frameOf(msg, true));
  assert.ok(!('timeout_ms' in JSON.parse(frame.subarray(4).toString())));
});

test('protocol - an unencodable message throws before anything is queued', () => {
  const p = opened();
  assert.throws(() => p.send(buildMessage('publish', 'app', 'x', NaN)), { code: 'bad_message' });
  assert.equal(p.framesQueued, 0);
});

test('protocol - an ordinary message comes back as itself', () => {
  const p = opened();
  const msg = buildMessage('publish', 'app', 'news', { a: 1 });
  assert.deepEqual(feed(p, frameOf(msg)), [msg]);
});

test('protocol - refuse() answers every type but a notification, in the refused message\'s app', () => {
  const p = opened();
  for (const type of ['request', 'subscribe', 'publish', 'notification']) {
    const msg = buildMessage(type, 'other', 'jobs', null);
    const refused = p.refuse(msg, 'forbidden', 'no');
    assert.equal(refused.message, msg);
    const answers = sent(p);
    if (type === 'notification') assert.deepEqual(answers, []);
    else {
      assert.equal(answers.length, 1, type);
      assert.equal(answers[0].reply_to, msg.message_id);
      assert.equal(answers[0].app_id, 'other');
      assert.deepEqual(answers[0].error, { code: 'forbidden', message: 'no' });
    }
  }
});

test('protocol - frames before a bad length prefix are read, then the violation (however TCP split them)', () => {
  for (const [bad, code] of [[Buffer.from([0, 0, 0, 0]), 'bad_frame'], [Buffer.from([0x7f, 0xff, 0xff, 0xff]), 'too_large']]) {
    const p = opened();
    const a = buildMessage('publish', 'app', 'a', 1);
    const b = buildMessage('publish', 'app', 'b', 2);
    const items = feed(p, Buffer.concat([frameOf(a), frameOf(b), bad]));
    assert.deepEqual(items.slice(0, 2), [a, b]);
    assert.equal(items.length, 3);
    assert.ok(items[2] instanceof ProtocolViolation, code);
    assert.equal(items[2].code, code);
    assert.equal(p.state, ERROR);
    const alone = opened();
    assert.deepEqual(feed(alone, bad), []);
    assert.equal(alone.state, ERROR);
  }
});

test('protocol - a ping request is answered by the core; a ping notification gets no answer', () => {
  const p = opened();
  const ping = buildMessage('request', 'app', 'system', { action: 'ping' });
  const [event] = feed(p, frameOf(ping));
  assert.ok(event instanceof PingReceived);
  assert.equal(event.message.message_id, ping.message_id);
  const [pong] = sent(p);
  assert.deepEqual([pong.message_type, pong.reply_to, pong.payload], ['response', ping.message_id, { status: 'pong' }]);
  const [again] = feed(p, frameOf(buildMessage('notification', 'app', 'system', { action: 'ping' })));
  assert.ok(again instanceof PingReceived);
  assert.equal(p.framesQueued, 0);
});

test('protocol - other system messages are the pump\'s', () => {
  const p = opened();
  const stats = buildMessage('request', 'app', 'system', { action: 'get_time' });
  assert.deepEqual(feed(p, frameOf(stats)), [stats]);
  const unasked = buildMessage('response', 'app', 'system', { status: 'pong' }, { reply_to: 'nobody' });
  assert.deepEqual(feed(p, frameOf(unasked)), [unasked]); // a pong nobody asked for
});

test('protocol - heartbeats on a fake clock: ping after the interval, pong with its latency, dead after the timeout', () => {
  const p = opened({ heartbeatIntervalMs: 100, now: 0 });
  assert.deepEqual([p.heartbeat.intervalMs, p.heartbeat.timeoutMs], [100, 200]);
  assert.equal(p.tick(50), HeartbeatAction.NONE);
  assert.equal(p.tick(100), HeartbeatAction.PING);
  const [ping] = sent(p);
  assert.deepEqual([ping.channel_id, ping.payload], ['system', { action: 'ping' }]);
  assert.equal(p.tick(120), HeartbeatAction.NONE); // once per interval of silence
  const [pong] = feed(p, frameOf(buildMessage('response', 'app', 'system', { status: 'pong' }, { reply_to: ping.message_id })), 130);
  assert.ok(pong instanceof PongReceived);
  assert.equal(pong.latencyMs, 30);
  assert.equal(p.tick(229), HeartbeatAction.NONE);
  assert.equal(p.tick(230), HeartbeatAction.PING);
  assert.equal(p.tick(330), HeartbeatAction.DEAD);
});

test('protocol - any byte proves the peer alive', () => {
  const p = opened({ heartbeatIntervalMs: 100, now: 0 });
  const half = frameOf(buildMessage('publish', 'app', 'x', 1)).subarray(0, 3);
  assert.deepEqual(p.receiveData(half, 90), []);
  assert.equal(p.lastReceived, 90);
  assert.equal(p.tick(150), HeartbeatAction.NONE);
  assert.equal(p.tick(190), HeartbeatAction.PING);
});

test('protocol - a role that sends error frames queues the typed one on a violation (§6.4)', () => {
  class Open extends Protocol {
    _receiveBeforeOpen(frame) {
      const msg = decodeMessage(frame);
      this.appId = msg.app_id;
      this._move(OPEN);
      return msg;
    }
  }
  const p = new Open();
  feed(p, frameOf(buildMessage('publish', 'app', 'hello', 1)));
  assert.equal(p.state, OPEN);
  const bad = Buffer.from('{"message_id":"m9","app_id":"app","channel_id":"c","message_type":"nope"}');
  const [violation] = feed(p, Buffer.concat([Buffer.from([0, 0, 0, bad.length]), bad]));
  assert.ok(violation instanceof ProtocolViolation);
  assert.equal(violation.code, 'bad_message');
  assert.equal(p.state, ERROR);
  const [frame] = sent(p);
  assert.deepEqual([frame.channel_id, frame.reply_to, frame.error.code], ['system', 'm9', 'bad_message']);
  const refused = new Open();
  feed(refused, frameOf(buildMessage('publish', 'app', 'hello', 1)));
  const req = buildMessage('request', 'app', 'x', 1);
  const r = refused.refuse(req, 'forbidden', 'no');
  assert.ok(r instanceof MessageRefused);
  assert.deepEqual(sent(refused).map((m) => [m.reply_to, m.error.code]), [[req.message_id, 'forbidden']]);
});

test('protocol - the frame limit is checked on the prefix', () => {
  const p = opened();
  p.maxFrameSize = 10;
  const good = frameOf(buildMessage('publish', 'app', 'x', 1));
  assert.deepEqual(feed(p, Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.alloc(11)])), []);
  assert.equal(p.violation.code, 'too_large');
  assert.equal(p.state, ERROR);
  const q = opened();
  const items = feed(q, Buffer.concat([good, Buffer.from([0, 0, 0, 0])]));
  assert.equal(items.length, 2);
  assert.equal(items[0].channel_id, 'x');
  assert.equal(q.violation.code, 'bad_frame');
});
