'use strict';

// The pure components, on a fake clock: options, backoff, heartbeat.

const test = require('node:test');
const assert = require('node:assert/strict');
const { parseOptions } = require('../lib/options');
const { backoffDelay } = require('../lib/backoff');
const { Heartbeat, HeartbeatAction } = require('../lib/heartbeat');
const { DEFAULTS } = require('../lib/constants');
const { LEGACY_ALIASES, DEPRECATED_ALIASES } = require('../lib/legacy_options');

test('options - defaults', () => {
  const o = parseOptions();
  assert.deepEqual({ ...o }, { ...DEFAULTS });
  assert.equal(o.host, 'localhost');
  assert.equal(o.port, 8888);
  assert.equal(o.maxRetries, Infinity);
  assert.equal(o.queueMaxSize, 1000);
  assert.equal(o.queueMaxBytes, 8 * 1024 * 1024);
  assert.equal(o.queueOverflow, 'reject');
  assert.equal(o.onDisconnect, 'queue');
  assert.equal(o.circuitBreaker, null);
  assert.equal(o.requestTimeout, 30000);
  assert.ok(Object.isFrozen(o));
});

test('options - bad values throw', () => {
  const bad = [
    [{ port: 0 }, TypeError],
    [{ port: 70000 }, TypeError],
    [{ port: '80x' }, TypeError],
    [{ port: '0x50' }, TypeError],
    [{ port: '' }, TypeError],
    [{ requestTimeout: 'Infinity' }, TypeError],
    [{ connectTimeout: '-5' }, TypeError],
    [{ host: '' }, TypeError],
    [{ requestTimeout: 0 }, TypeError],
    [{ maxRetries: -1 }, TypeError],
    [{ maxRetries: 1.5 }, TypeError],
    [{ queueMaxSize: -1 }, TypeError],
    [{ queueOverflow: 'drop_newest' }, TypeError],
    [{ queuePath: '' }, TypeError],
    [{ onDisconnect: 'wait' }, TypeError],
    [{ circuitBreaker: { failureThreshold: 0 } }, TypeError],
    [{ circuitBreaker: { nope: 1 } }, TypeError],
    [{ circuitBreaker: 'on' }, TypeError],
    [{ reconnectAttempts: -3 }, TypeError],
    [{ connectionTimeout: 0 }, TypeError],
    [{ reconnectDelay: 'soon' }, TypeError],
    [{ waitOnFirstConnect: 'yes' }, TypeError],
    [{ reconnect: 'yes' }, TypeError],
    [{ maxFrameSize: 0 }, TypeError],
    [{ token: 5 }, TypeError],
    [{ jitter: 2 }, TypeError],
    [{ heartbeatInterval: NaN }, TypeError],
    [{ initialDelay: 100, maxDelay: 10 }, RangeError],
    [{ maxConcurrentHandlers: 0 }, TypeError],
    [{ maxConcurrentHandlers: 1.5 }, TypeError],
    [{ heartbeatInterval: 100, heartbeatTimeout: 100 }, RangeError]
  ];
  for (const [opts, cls] of bad) assert.throws(() => parseOptions(opts), cls, JSON.stringify(opts));
  assert.throws(() => parseOptions(null), TypeError);
});

test('options - a heartbeat under 10 ms is refused, as the server refuses one; a message shows NaN and Infinity as such', () => {
  for (const [name, value, shown] of [
    ['heartbeatInterval', 5, '5'],
    ['heartbeatInterval', 0.5, '0.5'],
    ['heartbeatTimeout', 9, '9'],
    ['heartbeatInterval', NaN, 'NaN'],
    ['heartbeatTimeout', Infinity, 'Infinity'],
    ['heartbeatInterval', -Infinity, '-Infinity']
  ]) {
    assert.throws(() => parseOptions({ [name]: value }), { name: 'TypeError', message: `option ${name} must be a number >= 10 or null, got ${shown}` });
  }
  assert.equal(parseOptions({ heartbeatInterval: 10, heartbeatTimeout: 20 }).heartbeatInterval, 10);
  assert.throws(() => parseOptions({ port: NaN }), { message: 'option port must be an integer >= 1, got NaN' }); // JSON's "null" before
  assert.throws(() => parseOptions({ jitter: 10n }), { message: /got 10n$/ });
});

test('options - undefined values keep the default', () => {
  assert.equal(parseOptions({ port: undefined }).port, 8888);
  assert.equal(parseOptions({ maxRetries: Infinity, heartbeatInterval: 50 }).heartbeatInterval, 50);
});

test('options - maxConcurrentHandlers: 1024 by default, any integer >= 1 or Infinity', () => {
  assert.equal(parseOptions().maxConcurrentHandlers, 1024);
  assert.equal(parseOptions({ maxConcurrentHandlers: 4 }).maxConcurrentHandlers, 4);
  assert.equal(parseOptions({ maxConcurrentHandlers: Infinity }).maxConcurrentHandlers, Infinity);
  assert.ok(!('highWaterMark' in parseOptions()) && !('lowWaterMark' in parseOptions()));
});

test('backoff - doubles from the initial delay, capped, without jitter; n counts from 0 (the first retry)', () => {
  const p = { initial: 100, max: 1000, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3, 4, 99].map((n) => backoffDelay(n, p)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(backoffDelay(1, p), 200); // 0-based as Python's Backoff.delay(n): the second retry doubles
});

test('backoff - jitter spreads around the base and never passes the cap', () => {
  const p = { initial: 100, max: 1000, jitter: 0.5 };
  assert.equal(backoffDelay(0, { ...p, random: () => 0 }), 50);
  assert.equal(backoffDelay(0, { ...p, random: () => 0.5 }), 100);
  assert.equal(backoffDelay(0, { ...p, random: () => 0.999999 }) < 150, true);
  assert.equal(backoffDelay(9, { ...p, random: () => 0 }), 500); // at the cap: [max * (1 - jitter), max)
  assert.equal(backoffDelay(9, { ...p, random: () => 0.5 }), 750);
  assert.ok(backoffDelay(9, { ...p, random: () => 0.999 }) < 1000);
});

test('backoff - at the cap no pile-up at maxDelay: 0 of 10,000 draws equal it (clamping after the jitter gave about 5,000)', () => {
  for (const [initial, max, n] of [[1000, 1000, 0], [500, 30000, 6], [500, 30000, 60]]) {
    const ds = Array.from({ length: 10000 }, () => backoffDelay(n, { initial, max, jitter: 0.5 }));
    assert.equal(ds.filter((d) => d === max).length, 0, `initial ${initial} max ${max} n ${n}`);
    assert.ok(ds.every((d) => d >= max * 0.5 && d <= max));
    const low = ds.filter((d) => d < max * 0.75).length;
    assert.ok(low > 4500 && low < 5500, String(low)); // uniform over the range
  }
});

test('backoff - near the cap the range ends at maxDelay: 25 s under a 30 s cap draws from [12.5, 30) s', () => {
  const p = { initial: 25000, max: 30000, jitter: 0.5 };
  assert.equal(backoffDelay(0, { ...p, random: () => 0 }), 12500);
  assert.equal(backoffDelay(0, { ...p, random: () => 0.5 }), 21250);
  const ds = Array.from({ length: 10000 }, () => backoffDelay(0, p));
  assert.equal(ds.filter((d) => d === 30000).length, 0); // 2 in 5 when clamped after the jitter
  assert.ok(ds.every((d) => d >= 12500 && d <= 30000));
});

test('backoff - the 1.1.x document\'s reconnectAttempts 5, reconnectDelay 2000: 30 to 75 s of waits in all, the first 1 to 3 s (docs/legacy.md)', () => {
  const o = parseOptions({ reconnectAttempts: 5, reconnectDelay: 2000 });
  const waits = (random, options = o) =>
    Array.from({ length: options.maxRetries }, (_, n) => backoffDelay(n, { initial: options.initialDelay, max: options.maxDelay, multiplier: options.multiplier, jitter: options.jitter, random }));
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  assert.deepEqual(waits(() => 0.5), [2000, 4000, 8000, 16000, 22500]); // the last from [15, 30) s
  assert.deepEqual(waits(() => 0), [1000, 2000, 4000, 8000, 15000]);
  assert.equal(sum(waits(() => 0)), 30000);
  const most = waits(() => 0.999999);
  assert.ok(most[0] < 3000 && sum(most) < 75000, String(most));
  const fixed = parseOptions({ reconnectAttempts: 5, reconnectDelay: 2000, multiplier: 1, jitter: 0 });
  assert.deepEqual(waits(Math.random, fixed), [2000, 2000, 2000, 2000, 2000]); // 1.1.x's fixed pause
});

test('backoff - the unified defaults: 500 ms, x2 per attempt, capped at 30 s, jitter 0.5', () => {
  const o = parseOptions();
  assert.deepEqual(
    [o.initialDelay, o.multiplier, o.maxDelay, o.jitter],
    [500, 2, 30000, 0.5]
  );
  const p = { initial: o.initialDelay, max: o.maxDelay, multiplier: o.multiplier, jitter: 0 };
  assert.deepEqual([0, 1, 2, 6, 7].map((n) => backoffDelay(n, p)), [500, 1000, 2000, 30000, 30000]);
});

test('backoff - multiplier sets the growth factor', () => {
  const p = { initial: 100, max: 10000, multiplier: 3, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, p)), [100, 300, 900, 2700]);
  assert.equal(backoffDelay(4, { ...p, multiplier: 1 }), 100);
  assert.equal(parseOptions({ multiplier: 1.5 }).multiplier, 1.5);
  assert.throws(() => parseOptions({ multiplier: 0.5 }), TypeError);
  assert.throws(() => parseOptions({ multiplier: 'two' }), TypeError);
  assert.equal(parseOptions({ multiplier: '2' }).multiplier, 2);
});

test('README - the options table lists every option with its default', () => {
  const fs = require('node:fs');
  const path = require('node:path');
  const text = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const section = text.slice(text.indexOf('## Options'), text.indexOf('\n## ', text.indexOf('## Options') + 1));
  const rows = new Map();
  const legacy = new Map();
  const deprecated = new Map();
  for (const m of section.matchAll(/^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|/gm)) {
    if (m[2].trim() === 'legacy name') legacy.set(m[1], m[3].trim());
    else if (m[2].trim() === 'deprecated name') deprecated.set(m[1], m[3].trim());
    else rows.set(m[1], m[2].trim());
  }
  assert.deepEqual([...deprecated.keys()].sort(), Object.keys(DEPRECATED_ALIASES).sort());
  for (const [name, meaning] of deprecated) assert.ok(meaning.startsWith(`of \`${DEPRECATED_ALIASES[name]}\``), name);
  assert.deepEqual([...rows.keys()].sort(), Object.keys(DEFAULTS).sort());
  assert.deepEqual([...legacy.keys()].sort(), Object.keys(LEGACY_ALIASES).sort());
  for (const [name, meaning] of legacy) assert.ok(meaning.startsWith(`of \`${LEGACY_ALIASES[name]}\``), name);
  const shown = (v) => (v === null ? '`null`' : typeof v === 'string' ? `\`'${v}'\`` : `\`${v}\``);
  for (const [name, value] of Object.entries(DEFAULTS)) {
    if (name === 'connectionId') continue; // generated
    assert.equal(rows.get(name), shown(value), name);
  }
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

const { Metrics } = require('../lib/metrics');
const { State, TRANSITIONS, transition } = require('../lib/state');

test('state - the transition table of docs/resilience.md §2; anything else throws', () => {
  assert.deepEqual(Object.values(State).sort(), ['connected', 'connecting', 'disconnected', 'disconnecting', 'reconnecting']);
  assert.equal(transition('disconnected', 'connecting'), 'connecting');
  assert.equal(transition('connected', 'reconnecting'), 'reconnecting');
  assert.equal(transition('reconnecting', 'connected'), 'connected');
  assert.equal(transition('connecting', 'reconnecting'), 'reconnecting'); // waitOnFirstConnect
  assert.equal(transition('disconnecting', 'disconnected'), 'disconnected');
  for (const [from, to] of [['disconnected', 'connected'], ['disconnected', 'reconnecting'], ['disconnecting', 'connecting'], ['nowhere', 'connected']]) {
    assert.throws(() => transition(from, to), /invalid transition/, `${from} -> ${to}`);
  }
  for (const targets of Object.values(TRANSITIONS)) for (const s of targets) assert.ok(Object.values(State).includes(s));
});

test('metrics - rates start at 1, averages at 0', () => {
  const m = new Metrics({ now: () => 0 });
  const s = m.snapshot();
  assert.equal(s.connectionSuccessRate, 1);
  assert.equal(s.messageDeliveryRate, 1);
  assert.equal(s.averageReconnectionTimeMs, 0);
  assert.equal(s.averageConnectionDurationMs, 0);
  assert.equal(s.activeConnections, 0);
});

test('metrics - averages are in ms to 3 decimals, as in Python', () => {
  const clock = { t: 0 };
  const m = new Metrics({ now: () => clock.t });
  m.attempt();
  m.opened();
  clock.t = 100 / 3;
  m.closed(true);
  clock.t = 100 / 3 + 2 / 3;
  m.attempt();
  m.opened();
  m.reconnected(); // after 0.666... ms
  const s = m.snapshot();
  assert.equal(s.averageReconnectionTimeMs, 0.667);
  assert.equal(s.averageConnectionDurationMs, 16.667); // (33.333... + 0) / 2
});

test('metrics - connections, reconnections and deliveries on a fake clock', () => {
  const clock = { t: 0 };
  const m = new Metrics({ now: () => clock.t });
  m.attempt();
  m.opened(); // t=0
  clock.t = 100;
  m.closed(true); // lived 100 ms, lost at 100
  m.attempt(); // fails
  clock.t = 150;
  m.closed(true); // a failed restore does not move the loss time
  m.attempt();
  m.opened();
  clock.t = 400;
  assert.equal(m.reconnected(), 300);
  for (let i = 0; i < 3; i++) m.delivered();
  m.failed();
  m.sent();
  clock.t = 500; // the current connection (opened at 150) has lived 350 ms
  const s = m.snapshot({ queued: 2, queuedBytes: 40, queueDropped: 1 });
  assert.deepEqual(s, {
    connectionAttempts: 3,
    connectionSuccesses: 2,
    connectionSuccessRate: 2 / 3,
    reconnections: 1,
    averageReconnectionTimeMs: 300,
    messagesSent: 1,
    messagesDelivered: 3,
    messagesFailed: 1,
    messageDeliveryRate: 0.75,
    activeConnections: 1,
    averageConnectionDurationMs: (100 + 350) / 2,
    cacheHits: 0,
    cacheMisses: 0,
    cacheSize: 0,
    requestsCoalesced: 0,
    iteratorDropped: 0,
    heldDropped: 0,
    queued: 2,
    queuedBytes: 40,
    queueDropped: 1
  });
  m.closed(false);
  assert.equal(m.snapshot().activeConnections, 0);
  assert.equal(m.reconnected(), 0); // an intended close is no loss to measure
});
