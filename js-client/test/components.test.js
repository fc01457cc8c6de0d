'use strict';

// The pure components, on a fake clock: options, backoff, heartbeat.

const test = require('node:test');
const assert = require('node:assert/strict');
const { parseOptions } = require('../lib/options');
const { backoffDelay } = require('../lib/backoff');
const { Heartbeat, HeartbeatAction } = require('../lib/heartbeat');
const { DEFAULTS } = require('../lib/constants');

test('options - defaults', () => {
  const o = parseOptions();
  assert.deepEqual({ ...o }, { ...DEFAULTS });
  assert.equal(o.host, 'localhost');
  assert.equal(o.port, 8888);
  assert.equal(o.reconnectAttempts, Infinity);
  assert.equal(o.requestTimeout, 30000);
  assert.ok(Object.isFrozen(o));
});

test('options - bad values throw', () => {
  const bad = [
    [{ port: 0 }, TypeError],
    [{ port: 70000 }, TypeError],
    [{ port: '80' }, TypeError],
    [{ host: '' }, TypeError],
    [{ requestTimeout: 0 }, TypeError],
    [{ reconnectAttempts: -1 }, TypeError],
    [{ reconnectAttempts: 1.5 }, TypeError],
    [{ reconnect: 'yes' }, TypeError],
    [{ maxFrameSize: 0 }, TypeError],
    [{ token: 5 }, TypeError],
    [{ reconnectJitter: 2 }, TypeError],
    [{ heartbeatInterval: NaN }, TypeError],
    [{ nope: 1 }, TypeError],
    [{ reconnectDelay: 100, reconnectDelayMax: 10 }, RangeError],
    [{ highWaterMark: 10, lowWaterMark: 10 }, RangeError],
    [{ heartbeatInterval: 100, heartbeatTimeout: 100 }, RangeError]
  ];
  for (const [opts, cls] of bad) assert.throws(() => parseOptions(opts), cls, JSON.stringify(opts));
  assert.throws(() => parseOptions(null), TypeError);
});

test('options - undefined values keep the default', () => {
  assert.equal(parseOptions({ port: undefined }).port, 8888);
  assert.equal(parseOptions({ reconnectAttempts: Infinity, heartbeatInterval: 50 }).heartbeatInterval, 50);
});

test('backoff - doubles from the initial delay, capped, without jitter', () => {
  const p = { initial: 100, max: 1000, jitter: 0 };
  assert.deepEqual([1, 2, 3, 4, 5, 100].map((n) => backoffDelay(n, p)), [100, 200, 400, 800, 1000, 1000]);
});

test('backoff - jitter spreads around the base and never passes the cap', () => {
  const p = { initial: 100, max: 1000, jitter: 0.5 };
  assert.equal(backoffDelay(1, { ...p, random: () => 0 }), 50);
  assert.equal(backoffDelay(1, { ...p, random: () => 0.5 }), 100);
  assert.equal(backoffDelay(1, { ...p, random: () => 0.999999 }) < 150, true);
  assert.equal(backoffDelay(10, { ...p, random: () => 0.999 }), 1000);
});

test('heartbeat - quiet peer: ping after the interval, once, then dead at the timeout', () => {
  const hb = new Heartbeat(100, 200, 0);
  assert.equal(hb.poll(50), HeartbeatAction.NONE);
  assert.equal(hb.nextCheck(50), 50);
  assert.equal(hb.poll(100), HeartbeatAction.PING);
  assert.equal(hb.poll(150), HeartbeatAction.NONE);
  assert.equal(hb.nextCheck(150), 50);
  assert.equal(hb.poll(200), HeartbeatAction.DEAD);
});

test('heartbeat - any frame resets the silence', () => {
  const hb = new Heartbeat(100, 200, 0);
  assert.equal(hb.poll(100), HeartbeatAction.PING);
  hb.received(120);
  assert.equal(hb.poll(200), HeartbeatAction.NONE);
  assert.equal(hb.poll(220), HeartbeatAction.PING);
  assert.equal(hb.poll(319), HeartbeatAction.NONE);
  assert.equal(hb.poll(320), HeartbeatAction.DEAD);
});

test('heartbeat - rejects non-positive settings', () => {
  assert.throws(() => new Heartbeat(0, 10, 0), RangeError);
  assert.throws(() => new Heartbeat(10, -1, 0), RangeError);
});
