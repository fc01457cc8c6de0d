'use strict';

// Times reported in epoch ms (getConnectionHealth()'s lastHeartbeat and
// lastReceived, a breaker's openedAt) after the wall clock steps (NTP, an
// administrator, a resumed virtual machine): they are converted from
// monotonic stamps when read (lib/clock.js), so they stay the real instant
// on the wall clock of the read, as in the Python client. The step is made
// by replacing Date.now in this process, restored after each test.

const test = require('node:test');
const assert = require('node:assert/strict');
const { peerAndClient, waitFor } = require('./helpers');
const { ErrorCode } = require('..');

const HOUR_MS = 3_600_000;
const BOUND_MS = 5000; // generous for a loaded machine; the fault was the size of the step

/**
 * Replaces Date.now with the real clock plus a step the test sets.
 * @param {import('node:test').TestContext} t
 * @returns {{step: number}}
 */
function steppedWallClock(t) {
  const realNow = Date.now;
  const clock = { step: 0 };
  Date.now = () => realNow() + clock.step;
  t.after(() => {
    Date.now = realNow;
  });
  return clock;
}

/**
 * Asserts that epoch-ms times are in the recent past of the wall clock now
 * (all of them checked, all the ones off named).
 * @param {Record<string, number|null>} times
 */
function recent(times) {
  const now = Date.now();
  const off = Object.entries(times)
    .filter(([, value]) => typeof value !== 'number' || value > now + 1 || now - value >= BOUND_MS)
    .map(([name, value]) => `${name} ${typeof value === 'number' ? `${((value - now) / 1000).toFixed(3)} s from Date.now()` : String(value)}`);
  assert.deepEqual(off, []);
}

for (const step of [HOUR_MS, -HOUR_MS]) {
  test(`wall clock - after a step of ${step / 1000} s, lastHeartbeat, lastReceived and openedAt stay the real instant`, async (t) => {
    const onRequest = (msg, conn, reply) => reply(null, { error: { code: 'no_responders', message: 'nobody' } });
    const { client, peer } = await peerAndClient(t, { heartbeatIntervalMs: 100, onRequest }, { circuitBreaker: { failureThreshold: 1, resetTimeout: 60_000 } });
    const clock = steppedWallClock(t);
    await client.connect();
    await waitFor(client, 'heartbeat', 2000);
    await assert.rejects(client.sendRequest('down', 1, 2000), { code: ErrorCode.NO_RESPONDERS });
    assert.equal(client.circuitBreakers().down.state, 'open');

    clock.step = step; // read at once: every stamp was taken before the step
    const health = client.getConnectionHealth();
    recent({ lastHeartbeat: health.lastHeartbeat, lastReceived: health.lastReceived, openedAt: client.circuitBreakers().down.openedAt });

    const lost = waitFor(client, 'disconnected', 2000);
    peer.drop(); // a closed connection keeps its last frame's time
    await lost;
    recent({ 'lastReceived of the closed connection': client.getConnectionHealth().lastReceived });
  });
}
