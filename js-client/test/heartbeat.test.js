'use strict';

// The heartbeat keeps its promise (docs/protocol.md §9.2, docs/resilience.md
// §5), on an explicit clock, as the Python core's (tests/test_heartbeat_liveness.py):
// a peer is declared dead after heartbeatTimeout of silence, and only once a
// ping went first. A timeout under the interval in force pings at half the
// timeout; a check that wakes more than a period late (our own loop
// stalled) pings before it blames the peer.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Heartbeat, HeartbeatAction, checkPeriod } = require('../lib/heartbeat');
const { encodeMessage } = require('../lib/envelope');
const { encodeFrame } = require('../lib/framing');
const { ClientProtocol } = require('../lib/protocol/client_protocol');

const { PING, DEAD, NONE } = HeartbeatAction;
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

/** Ping at 1000 and arm the check for the death at 2000 (interval 1000, timeout 2000). */
function asleepUntilTheDeath(hb) {
  near(hb.nextCheck(0), 1000);
  assert.equal(hb.poll(1000), PING);
  near(hb.nextCheck(1000), 1000);
  return 2000;
}

test('heartbeat - a check that wakes late pings first and gives an interval to answer', () => {
  const hb = new Heartbeat(1000, 2000, 0);
  asleepUntilTheDeath(hb);
  assert.equal(hb.poll(5000), PING); // the loop was blocked 3 s: not the peer's silence (it was DEAD)
  near(hb.nextCheck(5000), 1000);
  hb.pongReceived(5010);
  assert.equal(hb.poll(6000), NONE);
});

test('heartbeat - a peer silent after the stall is dead an interval later', () => {
  const hb = new Heartbeat(1000, 2000, 0);
  asleepUntilTheDeath(hb);
  assert.equal(hb.poll(5000), PING);
  hb.nextCheck(5000);
  assert.equal(hb.poll(6000), DEAD);
});

test('heartbeat - an excused stall leaves the last frame as it was (the error reports the real silence)', () => {
  // The "nothing received for" error reads lastReceived: after an excuse it
  // said 2000 ms where the peer had been silent 6000 ms.
  const hb = new Heartbeat(1000, 2000, 0);
  asleepUntilTheDeath(hb);
  assert.equal(hb.poll(5000), PING); // excused: counted from 4000
  assert.equal(hb.lastReceived, 0);
  near(hb.silentSince, 4000);
  hb.nextCheck(5000);
  assert.equal(hb.poll(6000), DEAD);
  assert.equal(6000 - hb.lastReceived, 6000);
  hb.received(6500);
  assert.deepEqual([hb.lastReceived, hb.silentSince], [6500, 6500]);
});

test('heartbeat - a stall is excused once a silence: a loop late at every check still declares a dead peer dead', () => {
  let hb = new Heartbeat(1000, 2000, 0);
  asleepUntilTheDeath(hb);
  assert.equal(hb.poll(5000), PING);
  hb.nextCheck(5000); // due at 6000
  assert.equal(hb.poll(9000), DEAD); // late again, in the same silence
  hb = new Heartbeat(1000, 2000, 0);
  asleepUntilTheDeath(hb);
  assert.equal(hb.poll(5000), PING);
  hb.received(5500); // a frame: a new silence
  hb.nextCheck(5500);
  assert.equal(hb.poll(6500), PING);
  hb.nextCheck(6500); // due at 7500
  assert.equal(hb.poll(12000), PING); // a new stall, excused
});

test('heartbeat - a check late by a period or less is no stall', () => {
  const hb = new Heartbeat(1000, 2000, 0);
  const due = asleepUntilTheDeath(hb);
  assert.equal(hb.poll(due + checkPeriod(1000)), DEAD);
});

test('heartbeat - a poll without nextCheck is never excused', () => {
  const hb = new Heartbeat(1000, 2000, 0);
  assert.equal(hb.poll(1000), PING);
  assert.equal(hb.poll(5000), DEAD);
});

test('heartbeat - a late check with a recent frame excuses nothing', () => {
  const hb = new Heartbeat(1000, 2000, 0);
  asleepUntilTheDeath(hb);
  hb.received(4990); // read as the loop came back
  assert.equal(hb.poll(5000), NONE);
  assert.equal(hb.lastReceived, 4990);
});

test("heartbeat - the stall bound is the server sweep's period (ipc_server/heartbeat_sweep.py)", () => {
  assert.deepEqual([10, 400, 1000, 15000].map(checkPeriod), [2.5, 100, 250, 250]);
});
