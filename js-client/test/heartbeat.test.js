'use strict';

// The heartbeat keeps its promise (docs/protocol.md §9.2, docs/resilience.md
// §5), on an explicit clock, as the Python core's (tests/test_heartbeat_liveness.py):
// a peer is declared dead after heartbeatTimeout of silence, and only once a
// ping went first. A timeout under the interval in force pings at half the
// timeout.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Heartbeat, HeartbeatAction } = require('../lib/heartbeat');
const { encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { ClientProtocol } = require('../lib/protocol/client_protocol');

const { PING, DEAD } = HeartbeatAction;
const near = (actual, expected) => assert.ok(Math.abs(actual - expected) < 0.01, `${actual} != ${expected}`);

for (const [interval, timeout] of [
  [15000, 1000],
  [2000, 2000]
]) {
  test(`heartbeat - a timeout not over the interval pings at half the timeout (${interval}, ${timeout})`, () => {
    const hb = new Heartbeat(interval, timeout, 0);
    assert.deepEqual([hb.intervalMs, hb.timeoutMs], [timeout / 2, timeout]);
    near(hb.nextCheck(0), timeout / 2); // it was the interval: no ping, dead on waking
    assert.equal(hb.poll(timeout / 2), PING);
    near(hb.nextCheck(timeout / 2), timeout / 2);
    assert.equal(hb.poll(timeout), DEAD); // after the timeout of silence, a ping first
  });
}

test('heartbeat - a timeout under the interval keeps an answering peer', () => {
  const hb = new Heartbeat(15000, 1000, 0);
  let t = 0;
  for (let i = 0; i < 30; i++) {
    near(hb.nextCheck(t), 500);
    t += 500;
    assert.equal(hb.poll(t), PING);
    t += 10;
    hb.pongReceived(t);
  }
  near(hb.latencyMs, 10);
});

test('heartbeat - nextCheck wakes at the death when it comes before the next ping', () => {
  const hb = new Heartbeat(1000, 1500, 0);
  assert.equal(hb.poll(1000), PING);
  near(hb.nextCheck(1000), 500); // the death at 1500, not the next ping at 2000
  assert.equal(hb.poll(1500), DEAD);
});

test('heartbeat - the client protocol pings at half a timeout under the advertised interval', () => {
  const proto = new ClientProtocol({ appId: 'shop', connectionId: 'w', heartbeatTimeout: 1000 });
  const id = proto.connect();
  proto.dataToSend();
  const reply = { message_id: 'r1', app_id: 'shop', channel_id: 'system', message_type: 'response', timestamp: 0, reply_to: id };
  reply.payload = { status: 'connected', connection_id: 'w', protocol: 2, heartbeat_interval_ms: 15000 };
  for (const body of proto.receiveData(encodeFrame(encodeMessage(reply)), 0)) proto.receiveFrame(body);
  assert.equal(proto.startHeartbeat(0), true);
  assert.deepEqual([proto.heartbeat.intervalMs, proto.heartbeat.timeoutMs], [500, 1000]);
  assert.equal(proto.tick(500), PING);
});
