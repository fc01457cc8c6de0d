'use strict';

// Streams and cancellation in the sans-I/O core, on bytes alone
// (docs/protocol.md §15): the twin of tests/test_streams_core.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { FrameDecoder, encodeFrame } = require('../lib/framing');
const { buildMessage, decodeMessage, encodeMessage } = require('../lib/envelope');
const { ClientProtocol, Connected } = require('../lib/protocol/client_protocol');
const { ProtocolViolation } = require('../lib/protocol/protocol');
const streams = require('../lib/protocol/streams');

const { Credit, Window, MAX_WINDOW, DEFAULT_WINDOW, FEATURES, negotiate, flowProblem } = streams;

/** The bodies a protocol queued, parsed. */
function sent(proto) {
  const decoder = new FrameDecoder({ maxFrameSize: 1 << 24 });
  return proto.dataToSend().flatMap((f) => decoder.feed(f).map((b) => JSON.parse(Buffer.from(b).toString())));
}

/** Feeds one message; returns what receiveFrame gave. */
function feed(proto, msg) {
  const [body] = proto.receiveData(encodeFrame(encodeMessage(msg)), 0);
  return proto.receiveFrame(body);
}

/** A client protocol, open, having offered `offered` and been granted `granted`. */
function clientOpen(offered, granted) {
  const proto = new ClientProtocol({ appId: 'app', connectionId: 'w', features: offered });
  const id = proto.connect();
  const [hello] = sent(proto);
  assert.equal('features' in hello.payload, offered !== null);
  const payload = { status: 'connected', connection_id: 'w', protocol: 2, max_frame_size: 1024 };
  if (granted !== null) payload.features = granted;
  assert.ok(feed(proto, buildMessage('response', 'app', 'system', payload, { reply_to: id })) instanceof Connected);
  return proto;
}

/** A frame of type `type` with the given fields. */
function frame(type, fields = {}) {
  return Object.assign(buildMessage(type, 'app', 'ticks', fields.payload ?? null, { message_id: 'f1' }), fields);
}

test('streams core - negotiate keeps the server order and needs cancel for streams', () => {
  assert.deepEqual(negotiate(['streams', 'cancel', 'compression']), ['cancel', 'streams']);
  assert.deepEqual(negotiate(['streams']), []);
  assert.deepEqual(negotiate(['cancel']), ['cancel']);
  assert.deepEqual([...FEATURES], ['cancel', 'streams', 'binary', 'lame_duck', 'goaway']);
});

test('streams core - the client asks and keeps what was granted', () => {
  assert.deepEqual([...clientOpen(['cancel', 'streams'], ['cancel', 'streams']).features], ['cancel', 'streams']);
  assert.deepEqual([...clientOpen(['cancel', 'streams'], ['cancel']).features], ['cancel']);
  assert.deepEqual([...clientOpen(['cancel', 'streams'], null).features], []); // a server older than §15
  assert.deepEqual([...clientOpen(['cancel', 'streams'], ['streams', 'other']).features], []);
  assert.deepEqual([...clientOpen(null, ['cancel', 'streams']).features], []); // never asked: never taken
});

test('streams core - the rules of the frames', () => {
  const all = new Set(FEATURES);
  const cases = [
    [frame('request'), new Set(), null],
    [frame('request', { window: 8 }), new Set(), 'streams were not negotiated'],
    [frame('request', { window: 8 }), all, null],
    [frame('notification', { window: 8 }), all, 'notification cannot open a stream'],
    [frame('stream_item', { reply_to: 's' }), new Set(['cancel']), 'streams were not negotiated'],
    [frame('stream_item', { reply_to: 's' }), all, null],
    [frame('stream_item'), all, 'without reply_to'],
    [frame('stream_end', { reply_to: 's' }), all, null],
    [frame('credit', { reply_to: 's' }), all, 'credit without window'],
    [frame('credit', { reply_to: 's', window: 4 }), all, null],
    [frame('cancel', { reply_to: 's' }), new Set(), 'cancel was not negotiated'],
    [frame('cancel', { reply_to: 's' }), new Set(['cancel']), null],
    [frame('cancel'), new Set(['cancel']), 'without reply_to'],
    [frame('publish'), new Set(), null]
  ];
  for (const [msg, features, problem] of cases) {
    const found = flowProblem(msg, features);
    if (problem === null) assert.equal(found, null, msg.message_type);
    else assert.ok(found !== null && found.includes(problem), `${msg.message_type}: ${found}`);
  }
});

test('streams core - an ungranted frame from the server is a violation, as in Python', () => {
  // Skipped, it would leave the call it answers waiting for its deadline.
  const proto = clientOpen(['cancel', 'streams'], null);
  const event = feed(proto, frame('stream_item', { reply_to: 's' }));
  assert.ok(event instanceof ProtocolViolation);
  assert.equal(event.code, 'bad_message');
  assert.equal(proto.live, false);
  const granted = clientOpen(['cancel', 'streams'], ['cancel', 'streams']);
  const item = feed(granted, frame('stream_item', { reply_to: 's', payload: 1 }));
  assert.equal(item.message_type, 'stream_item');
  assert.equal(item.payload, 1);
});

test('streams core - the frames answer their request', () => {
  const request = buildMessage('request', 'app', 'ticks', null, { message_id: 'q1', window: 8 });
  const item = streams.streamItem('app', request, { n: 1 });
  assert.deepEqual([item.message_type, item.reply_to, item.channel_id], ['stream_item', 'q1', 'ticks']);
  assert.equal(streams.streamEnd('app', request).message_type, 'stream_end');
  const grant = streams.credit('app', 'ticks', 'q1', 5);
  assert.deepEqual([grant.message_type, grant.window, grant.reply_to], ['credit', 5, 'q1']);
  const stop = streams.cancel('app', 'ticks', 'q1', 'timeout');
  assert.equal(streams.cancelReason(stop), 'timeout');
  assert.equal(streams.cancelReason(frame('cancel', { reply_to: 'q1' })), 'cancelled');
  const body = encodeMessage({ ...request, timeout_ms: 3000, idle_timeout_ms: 1500 });
  assert.ok(body.endsWith('"timeout_ms":3000,"window":8,"idle_timeout_ms":1500}'), body);
  const back = decodeMessage(Buffer.from(body));
  assert.deepEqual([back.window, back.idle_timeout_ms], [8, 1500]);
  const legacy = JSON.parse(encodeMessage(request, { legacy: true }));
  assert.equal('window' in legacy, false);
});

test('streams core - bad windows are bad_message both ways', () => {
  for (const window of [0, -1, MAX_WINDOW + 1, 1.5, '8', true]) {
    assert.throws(() => encodeMessage({ ...frame('credit', { reply_to: 's' }), window }), { code: 'bad_message' }, String(window));
  }
  assert.throws(() => encodeMessage({ ...frame('request'), idle_timeout_ms: 0 }), { code: 'bad_message' });
});

test('streams core - credit is spent by items and capped', () => {
  const c = new Credit(2);
  assert.ok(c.take() && c.take() && !c.take());
  assert.ok(c.grant(3));
  assert.equal(c.available, 3);
  assert.equal(c.grant(MAX_WINDOW), false);
  assert.ok(c.grant(MAX_WINDOW - 3));
  assert.equal(c.available, MAX_WINDOW);
});

test('streams core - a window grants half at a time and never more than its size', () => {
  const w = new Window(8);
  const grants = Array.from({ length: 16 }, () => w.taken());
  assert.deepEqual(grants, [0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4]);
  const one = new Window(1);
  assert.deepEqual([one.taken(), one.taken()], [1, 1]);
  let outstanding = 5;
  const five = new Window(5);
  for (let i = 0; i < 100; i++) {
    outstanding -= 1;
    outstanding += five.taken();
    assert.ok(outstanding >= 0 && outstanding <= 5);
  }
  assert.equal(new Window().size, DEFAULT_WINDOW);
  for (const size of [0, -1, MAX_WINDOW + 1, 1.5, '8']) assert.throws(() => new Window(size), RangeError);
});
