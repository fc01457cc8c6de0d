'use strict';

// A responder's keyed runs (lib/keyed_runs.js, docs/resilience.md §3): a
// resend joins its key's run or gets the answer kept when nobody could be
// sent it, within bounds. Against a real server killed and restarted:
// interop-tests/test_js_idempotency_restart.py. The Python mirror:
// tests/test_idempotency_restart.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { KeyedRuns } = require('../lib/keyed_runs');
const { buildMessage } = require('../lib/envelope');

/** A connection as reply() uses it: what it was sent, and whether it is closed. */
function conn(closed = false) {
  return { closed, sent: [], send(msg) { this.sent.push(msg); } };
}

function keyed(key, payload = 1, { id = 'm', app = 'app' } = {}) {
  const msg = buildMessage('request', app, 'jobs.run', payload, { headers: { 'idempotency-key': key } });
  msg.message_id = id;
  return msg;
}

const host = { appId: 'app', options: { exposeStacks: false } };

test('keyed runs - a resend joins only the same request of the same app', () => {
  const runs = new KeyedRuns(host);
  const old = conn(true);
  const now = conn();
  const run = runs.start(old, keyed('k'));
  assert.notEqual(run, null);
  assert.equal(runs.start(now, keyed('k', 1, { id: 'm2' })), null); // joined
  const otherPayload = runs.start(now, keyed('k', 2, { id: 'm3' }));
  const otherApp = runs.start(now, keyed('k', 1, { id: 'm4', app: 'other' }));
  assert.equal(otherPayload.scope, null); // runs as usual, untracked
  assert.notEqual(otherApp.scope, null); // another app's key
  runs.finish(run, 'done');
  assert.deepEqual(now.sent.map((m) => [m.reply_to, m.payload]), [['m2', 'done']]);
  assert.equal(runs.kept, 0); // it was sent: nothing to keep
  assert.equal(runs.joined, 1);
});

test('keyed runs - an answer nobody got is kept within its bounds and window', () => {
  const runs = new KeyedRuns(host, { maxAnswers: 2, maxBytes: 10000 });
  for (const key of ['a', 'b', 'c']) runs.finish(runs.start(conn(true), keyed(key)), key);
  assert.equal(runs.kept, 2); // the oldest went first
  const now = conn();
  assert.notEqual(runs.start(now, keyed('a', 1, { id: 'ra' })), null); // dropped: runs again
  assert.equal(runs.start(now, keyed('c', 1, { id: 'rc' })), null);
  assert.deepEqual(now.sent.map((m) => [m.reply_to, m.payload]), [['rc', 'c']]);
  assert.equal(runs.replayed, 1);
  runs.finish(runs.start(conn(true), keyed('big')), 'x'.repeat(20000)); // over the byte cap: not kept
  assert.notEqual(runs.start(now, keyed('big', 1, { id: 'rb' })), null);
  const expired = new KeyedRuns(host, { windowMs: 0 });
  expired.finish(expired.start(conn(true), keyed('k')), 1);
  assert.notEqual(expired.start(now, keyed('k', 1, { id: 'late' })), null);
  assert.equal(expired.kept, 0);
});

test('keyed runs - a stopped run answers its joiners responder_lost and keeps nothing', () => {
  const runs = new KeyedRuns(host);
  const now = conn();
  const run = runs.start(conn(true), keyed('k'));
  assert.equal(runs.start(now, keyed('k', 1, { id: 'm2' })), null);
  runs.abandon(run);
  assert.deepEqual(now.sent.map((m) => [m.reply_to, m.error.code]), [['m2', 'responder_lost']]);
  assert.equal(runs.running, 0);
  assert.equal(runs.kept, 0);
});
