'use strict';

// Deadlines past setTimeout's ceiling (2^31-1 ms, ~24.8 days; a longer
// setTimeout fires at once): a request carries its real `timeout_ms`
// (docs/protocol.md §6.5), so the server does not apply its default deadline
// to it, and the local timer waits in steps (lib/long_timer.js). Infinity
// still means no deadline here and none sent. Across languages:
// interop-tests/test_js_requests.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectionPool, ErrorCode, LoadBalancedClient } = require('..');
const { MAX_TIMER_MS } = require('../lib/constants');
const { setLongTimeout, clearLongTimeout } = require('../lib/long_timer');
const { performance } = require('node:perf_hooks');
const { Peer, peerAndClient, captureWarnings, settle, until } = require('./helpers');

const THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000;

/**
 * Mocks performance.now() and setTimeout together, so that the clock and
 * the timers jump ahead as one: the returned advance(ms).
 * @param {import('node:test').TestContext} t
 * @returns {(ms: number) => void}
 */
function jumpingClock(t) {
  const realNow = performance.now.bind(performance);
  let offset = 0;
  t.mock.method(performance, 'now', () => realNow() + offset);
  t.mock.timers.enable({ apis: ['setTimeout'] });
  return (ms) => {
    offset += ms;
    t.mock.timers.tick(ms);
  };
}

test('long timeouts - a request carries a timeout_ms past 2^31-1 ms, and is not timed out at once', async (t) => {
  const warnings = captureWarnings(t);
  let held = null;
  const { peer, client } = await peerAndClient(t, {
    onRequest: (msg, conn, reply) => {
      if (msg.channel_id === 'hold') held = reply;
      else reply(msg.timeout_ms ?? 'none');
    }
  });
  await client.connect();
  const sent = await client.request('echo', null, THIRTY_DAYS_MS);
  assert.ok(sent > THIRTY_DAYS_MS - 1000 && sent <= THIRTY_DAYS_MS, String(sent));
  assert.equal(await client.request('echo', null, 2 ** 31), 2 ** 31);
  assert.equal(await client.request('echo', null, Infinity), 'none'); // no deadline: the server's default applies
  const pending = client.request('hold', null, THIRTY_DAYS_MS);
  await settle();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(client.getConnectionInfo().pendingRequests, 1); // a setTimeout of 30 days would have fired at once
  held('late but in time');
  assert.equal(await pending, 'late but in time');
  assert.deepEqual(warnings.filter((w) => w.name === 'TimeoutOverflowWarning'), []);
  assert.equal(peer.received.filter((m) => m.message_type === 'request' && m.channel_id !== 'system').length, 4);
});

test('long timeouts - setLongTimeout waits in steps of at most 2^31-1 ms and fires once, at its deadline', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let clock = 0;
  const advance = (ms) => {
    clock += ms;
    t.mock.timers.tick(ms);
  };
  let fired = 0;
  const timer = setLongTimeout(() => fired++, 2 * MAX_TIMER_MS + 5, () => clock);
  advance(MAX_TIMER_MS);
  assert.equal(fired, 0);
  advance(MAX_TIMER_MS);
  assert.equal(fired, 0);
  advance(4);
  assert.equal(fired, 0);
  advance(1);
  assert.equal(fired, 1);
  advance(MAX_TIMER_MS);
  assert.equal(fired, 1);
  clearLongTimeout(timer); // after it fired: nothing
  // cancelled between two steps: never fires
  const cancelled = setLongTimeout(() => fired++, MAX_TIMER_MS + 10, () => clock);
  advance(MAX_TIMER_MS);
  clearLongTimeout(cancelled);
  advance(100);
  assert.equal(fired, 1);
  // a short one is a plain timer
  setLongTimeout(() => fired++, 10, () => clock);
  advance(10);
  assert.equal(fired, 2);
});

test('long timeouts - a deadline past 2^31-1 ms still times the call out locally, at its deadline', async (t) => {
  const { client } = await peerAndClient(t, { onRequest: () => {} }); // never answers
  await client.connect();
  const advance = jumpingClock(t); // from here on
  let outcome = null;
  client.request('hang', null, 2 ** 31 + 5000).then(
    () => (outcome = 'answered'),
    (err) => (outcome = err.code)
  );
  await settle();
  advance(MAX_TIMER_MS); // one step: re-armed for what is left
  await settle();
  assert.equal(outcome, null);
  assert.equal(client.getConnectionInfo().pendingRequests, 1);
  advance(4000);
  await settle();
  assert.equal(outcome, null);
  advance(1001);
  await settle();
  assert.equal(outcome, ErrorCode.TIMEOUT); // none at all before: it waited for ever
});

// Timers whose delay comes from a setting (docs/resilience.md §5): past
// 2^31-1 ms a plain setTimeout fires in 1 ms with a TimeoutOverflowWarning,
// so a heartbeat re-armed every ms (8% CPU idle, a warning each time), a
// reconnection delay or a health check interval that was no wait at all.

const OVER_MS = 3e9; // ~35 days
const overflowed = (warnings) => warnings.filter((w) => w.name === 'TimeoutOverflowWarning');

/**
 * until() for a test that mocks setTimeout: polls on immediates, bounded by the wall clock.
 * @param {() => boolean} pred
 * @param {string} what
 */
async function immediatelyUntil(pred, what) {
  const deadline = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await settle();
  }
}

test('long timeouts - a heartbeat interval past 2^31-1 ms, advertised or an option, arms one timer, not one every ms', async (t) => {
  const warnings = captureWarnings(t);
  for (const [peerOptions, clientOptions] of [
    [{ heartbeatIntervalMs: OVER_MS }, {}],
    [{}, { heartbeatInterval: OVER_MS }]
  ]) {
    const { client } = await peerAndClient(t, peerOptions, clientOptions);
    await client.connect();
    const conn = client._conn;
    let polls = 0;
    const poll = conn._onHeartbeat;
    conn._onHeartbeat = function () {
      polls++;
      return poll.call(this);
    };
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(polls, 0); // every ms before
    assert.equal(client.getConnectionInfo().heartbeatIntervalMs, OVER_MS);
    assert.ok(client.getConnectionHealth().healthy);
  }
  assert.deepEqual(overflowed(warnings), []);
});

test('long timeouts - a heartbeat past 2^31-1 ms still pings at its interval, re-checked at the ceiling', async (t) => {
  const advance = jumpingClock(t); // before connect(): the heartbeat's timer is a mocked one
  const { peer, client } = await peerAndClient(t, {}, { heartbeatInterval: OVER_MS, heartbeatTimeout: 3 * OVER_MS });
  await client.connect();
  const pings = () => peer.received.filter((m) => m.channel_id === 'system' && m.payload?.action === 'ping').length;
  advance(MAX_TIMER_MS); // one step: nothing due yet, re-armed for the rest
  await settle();
  assert.equal(pings(), 0);
  advance(OVER_MS - MAX_TIMER_MS + 5);
  await immediatelyUntil(() => pings() === 1, 'the heartbeat ping');
  assert.equal(client.state, 'connected');
});

test('long timeouts - a reconnection delay past 2^31-1 ms waits, where it retried at once', async (t) => {
  const warnings = captureWarnings(t);
  const { peer, client } = await peerAndClient(t, {}, { initialDelay: OVER_MS, maxDelay: OVER_MS, jitter: 0 });
  await client.connect();
  const delays = [];
  client.on('reconnecting', ({ delay }) => delays.push(delay));
  peer.drop();
  await until(() => delays.length === 1, 2000, 'reconnecting');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(delays, [OVER_MS]);
  assert.equal(client.state, 'reconnecting');
  assert.equal(peer.received.filter((m) => m.payload?.action === 'connect').length, 1); // no second connect yet
  assert.deepEqual(overflowed(warnings), []);
});

test('long timeouts - a handshake timeout past 2^31-1 ms still times out, at its deadline', async (t) => {
  const advance = jumpingClock(t);
  const { peer, client } = await peerAndClient(t, { onConnect: () => true }, { connectTimeout: OVER_MS, reconnect: false }); // never answered
  let outcome = null;
  client.connect().then(
    () => (outcome = 'connected'),
    (err) => (outcome = err)
  );
  await immediatelyUntil(() => peer.received.some((m) => m.payload?.action === 'connect'), 'the connect');
  advance(MAX_TIMER_MS);
  await settle();
  assert.equal(outcome, null);
  advance(OVER_MS - MAX_TIMER_MS + 5);
  await immediatelyUntil(() => outcome !== null, 'the handshake timeout');
  assert.equal(outcome.code, ErrorCode.NOT_CONNECTED, String(outcome)); // no timer at all before: it waited for ever
  assert.match(outcome.message, /^no handshake with 127\.0\.0\.1:\d+ within 3000000000 ms$/);
  assert.equal(outcome.cause.code, ErrorCode.TIMEOUT);
});

test('long timeouts - drain() with a timeout past 2^31-1 ms withdraws without a timer that overflows', async (t) => {
  const warnings = captureWarnings(t);
  const { client } = await peerAndClient(t);
  await client.connect();
  await client.serve('svc', () => 1);
  assert.equal(await client.drain({ timeout: OVER_MS }), true);
  assert.deepEqual(overflowed(warnings), []);
});

test('long timeouts - a health check interval past 2^31-1 ms checks once per interval, not every ms', async (t) => {
  const warnings = captureWarnings(t);
  const peer = new Peer();
  await peer.listen();
  t.after(() => peer.close());
  const lb = new LoadBalancedClient('app', [`127.0.0.1:${peer.port}`], { healthCheckInterval: OVER_MS });
  t.after(() => lb.close());
  await lb.start();
  const pings = () => peer.received.filter((m) => m.channel_id === 'system' && m.payload?.action === 'ping').length;
  const before = pings();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(pings(), before); // a round of checks every ms before
  assert.deepEqual(overflowed(warnings), []);
});

test('long timeouts - a pool whose idleTimeout and acquire wait pass 2^31-1 ms arms one timer each, not one every ms', async (t) => {
  const warnings = captureWarnings(t);
  const peer = new Peer({ onRequest: (msg, conn, reply) => reply(msg.payload) });
  const port = await peer.listen();
  const pool = new ConnectionPool('app', { host: '127.0.0.1', port, minConnections: 0, maxConnections: 1, idleTimeout: OVER_MS });
  t.after(async () => {
    await pool.close();
    await peer.close();
  });
  const held = await pool.acquire();
  const waiting = pool.acquire({ timeout: OVER_MS }); // waits for the held member
  let settles = 0;
  const settle_ = pool._settle;
  pool._settle = function (...args) {
    settles++;
    return settle_.apply(this, args);
  };
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(settles, 0); // the waiter's timer woke the pool every ms before
  pool.release(held);
  const again = await waiting; // the member comes back idle, its idle timer armed
  pool.release(again);
  settles = 0;
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(settles <= 1, `${settles} wake-ups`); // the idle timer fired every ms before
  assert.deepEqual(overflowed(warnings), []);
});
