'use strict';

// Deadlines past setTimeout's ceiling (2^31-1 ms, ~24.8 days; a longer
// setTimeout fires at once): a request carries its real `timeout_ms`
// (docs/protocol.md §6.5), so the server does not apply its default deadline
// to it, and the local timer waits in steps (lib/long_timer.js). Infinity
// still means no deadline here and none sent. Across languages:
// interop-tests/test_js_requests.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { ErrorCode } = require('..');
const { MAX_TIMER_MS } = require('../lib/constants');
const { setLongTimeout, clearLongTimeout } = require('../lib/long_timer');
const { performance } = require('node:perf_hooks');
const { peerAndClient, captureWarnings, settle } = require('./helpers');

const THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000;

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
  // the clock and the timers jump ahead together, from here on
  const realNow = performance.now.bind(performance);
  let offset = 0;
  t.mock.method(performance, 'now', () => realNow() + offset);
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const advance = (ms) => {
    offset += ms;
    t.mock.timers.tick(ms);
  };
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
