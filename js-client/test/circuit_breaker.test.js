'use strict';

// The circuit breaker on a fake clock (docs/resilience.md §6).

const test = require('node:test');
const assert = require('node:assert/strict');
const { CircuitBreaker, CircuitState, FAILURE_CODES, parseBreakerOptions } = require('../lib/circuit_breaker');
const { ErrorCode } = require('../lib/errors');

/** A breaker on a clock the test moves. */
function make(options = {}) {
  const clock = { t: 1000 };
  const changes = [];
  const breaker = new CircuitBreaker(parseBreakerOptions({ failureThreshold: 3, resetTimeout: 100, successThreshold: 2, ...options }), {
    now: () => clock.t,
    wall: () => clock.t,
    onChange: (state, snapshot) => changes.push([state, snapshot.state])
  });
  return { breaker, clock, changes };
}

const failure = { code: ErrorCode.TIMEOUT };

/** Runs one call through the breaker; returns whether it was let through. */
function call(breaker, error = null) {
  const permit = breaker.acquire();
  if (permit === null) return false;
  breaker.release(permit, error);
  return true;
}

test('breaker - opens after failureThreshold consecutive failures; a success resets the count', () => {
  const { breaker, changes } = make();
  call(breaker, failure);
  call(breaker, failure);
  call(breaker); // success: the count starts again
  call(breaker, failure);
  call(breaker, failure);
  assert.equal(breaker.state, CircuitState.CLOSED);
  call(breaker, failure);
  assert.equal(breaker.state, CircuitState.OPEN);
  assert.deepEqual(changes, [['open', 'open']]);
  assert.deepEqual(breaker.snapshot(), {
    key: '*',
    state: 'open',
    consecutiveFailures: 3,
    consecutiveSuccesses: 0,
    failures: 5,
    successes: 1,
    rejected: 0,
    openedAt: 1000
  });
});

test('breaker - OPEN rejects with retryAfter until resetTimeout, then HALF_OPEN lets halfOpenMaxCalls through', () => {
  const { breaker, clock, changes } = make({ halfOpenMaxCalls: 2 });
  for (let i = 0; i < 3; i++) call(breaker, failure);
  clock.t += 40;
  assert.equal(breaker.acquire(), null);
  assert.equal(breaker.retryAfter(), 60);
  assert.equal(breaker.snapshot().rejected, 1);
  clock.t += 60;
  assert.equal(breaker.state, CircuitState.OPEN); // until a call is admitted: a read moves nothing
  assert.equal(breaker.retryAfter(), 0);
  assert.deepEqual(changes.map(([s]) => s), ['open']);
  const a = breaker.acquire();
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  const b = breaker.acquire();
  assert.deepEqual([a.trial, b.trial], [true, true]);
  assert.equal(a.epoch, b.epoch);
  assert.equal(breaker.acquire(), null); // a third trial at once is refused
  breaker.release(a, null);
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  breaker.release(b, null);
  assert.equal(breaker.state, CircuitState.CLOSED);
  assert.deepEqual(changes.map(([s]) => s), ['open', 'half_open', 'closed']);
});

test('breaker - one failed trial reopens it for another resetTimeout', () => {
  const { breaker, clock } = make();
  for (let i = 0; i < 3; i++) call(breaker, failure);
  clock.t += 100;
  assert.equal(call(breaker), true);
  assert.equal(call(breaker, failure), true);
  assert.equal(breaker.state, CircuitState.OPEN);
  assert.equal(breaker.snapshot().openedAt, 1100);
  assert.equal(breaker.retryAfter(), 100);
});

test('breaker - errors that say the call was wrong are not counted', () => {
  const { breaker } = make({ failureThreshold: 1 });
  for (const code of ['handler_error', 'bad_message', 'too_large', 'forbidden', 'unauthorized', 'bad_frame']) {
    call(breaker, { code });
  }
  assert.equal(breaker.state, CircuitState.CLOSED);
  assert.equal(breaker.snapshot().failures, 0);
  assert.deepEqual(
    [...FAILURE_CODES].sort(),
    ['connection_lost', 'no_responders', 'not_connected', 'queue_full', 'responder_lost', 'shutting_down', 'slow_consumer', 'timeout']
  );
  call(breaker, { code: 'no_responders' });
  assert.equal(breaker.state, CircuitState.OPEN);
});

test('breaker - an uncounted error in HALF_OPEN is a successful trial: the service answered', () => {
  const { breaker, clock } = make({ failureThreshold: 1 });
  call(breaker, failure);
  clock.t += 100;
  call(breaker, { code: 'handler_error' });
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  assert.equal(breaker.snapshot().consecutiveSuccesses, 1);
  call(breaker, { code: 'bad_message' });
  assert.equal(breaker.state, CircuitState.CLOSED);
});

test('breaker - a result that arrives after the state changed does not move it', () => {
  const { breaker, clock } = make({ failureThreshold: 1 });
  const early = breaker.acquire(); // let through while CLOSED
  call(breaker, failure); // opens
  breaker.release(early, null); // its success arrives late
  assert.equal(breaker.state, CircuitState.OPEN);
  clock.t += 100;
  const trial = breaker.acquire();
  breaker.release(early, failure);
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  breaker.release(trial, null);
  assert.equal(breaker.snapshot().consecutiveSuccesses, 1);
});

test('breaker - custom isFailure, resetTimeout 0, and option validation', () => {
  const { breaker, changes } = make({ failureThreshold: 1, resetTimeout: 0, isFailure: (err) => err.code === 'handler_error' });
  call(breaker, failure);
  assert.equal(breaker.state, CircuitState.CLOSED);
  call(breaker, { code: 'handler_error' });
  assert.deepEqual(changes.map(([s, snap]) => [s, snap]), [['open', 'open']]);
  assert.equal(breaker.state, CircuitState.OPEN); // until the next call...
  assert.equal(breaker.acquire().trial, true); // ...which resetTimeout 0 lets through at once, as a trial
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  assert.deepEqual(parseBreakerOptions(true).failureThreshold, 5);
  assert.equal(parseBreakerOptions({}).resetTimeout, 30000);
  for (const bad of [{ failureThreshold: 0 }, { resetTimeout: -1 }, { scope: 'app' }, { fallback: 1 }, { extra: 1 }, 'yes']) {
    assert.throws(() => parseBreakerOptions(bad), TypeError, JSON.stringify(bad));
  }
});

test('breaker - a trial permit of an earlier HALF_OPEN is stale: it frees no slot and counts only in the totals', () => {
  const { breaker, clock } = make({ failureThreshold: 1, successThreshold: 2, halfOpenMaxCalls: 2 });
  call(breaker, failure); // OPEN
  clock.t += 100;
  const a = breaker.acquire();
  const b = breaker.acquire();
  assert.ok(a && b && a.trial && b.trial);
  breaker.release(a, failure); // reopens
  clock.t += 100; // HALF_OPEN again
  const c = breaker.acquire();
  const d = breaker.acquire();
  assert.ok(c && d);
  const totals = breaker.snapshot();
  breaker.release(b, null); // the stale trial succeeds
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  assert.equal(breaker.snapshot().consecutiveSuccesses, 0);
  assert.equal(breaker.snapshot().successes, totals.successes + 1); // still in the totals, as in Python
  assert.equal(breaker.acquire(), null); // c and d still hold both slots
  breaker.release(b, failure); // a stale failure does not reopen it either
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  breaker.release(c, null);
  breaker.release(d, null);
  assert.equal(breaker.state, CircuitState.CLOSED);
});

test('breaker - cancel() gives a trial slot back without counting; snapshots carry the key', () => {
  const clock = { t: 0 };
  const breaker = new CircuitBreaker(parseBreakerOptions({ failureThreshold: 1, resetTimeout: 10, successThreshold: 1 }), { now: () => clock.t, wall: () => clock.t, key: 'svc' });
  assert.equal(breaker.snapshot().key, 'svc');
  assert.equal(new CircuitBreaker().snapshot().key, '*');
  call(breaker, failure);
  clock.t += 10;
  const trial = breaker.acquire();
  assert.equal(breaker.acquire(), null);
  const before = breaker.snapshot();
  breaker.cancel(trial);
  assert.equal(breaker.state, CircuitState.HALF_OPEN);
  const after = breaker.snapshot();
  assert.equal(after.successes, before.successes);
  assert.equal(after.failures, before.failures);
  assert.ok(breaker.acquire() !== null);
});

test('breaker - openedAt is read on the wall clock of the snapshot: a wall-clock step moves neither it nor retryAfter', () => {
  const clock = { t: 1000 }; // monotonic
  const wall = { t: 1_700_000_000_000 };
  const breaker = new CircuitBreaker(parseBreakerOptions({ failureThreshold: 1, resetTimeout: 100 }), { now: () => clock.t, wall: () => wall.t });
  call(breaker, failure);
  clock.t += 30;
  wall.t += 30;
  assert.equal(breaker.snapshot().openedAt, 1_700_000_000_000);
  for (const step of [3_600_000, -7_200_000]) {
    wall.t += step; // the wall clock steps; the monotonic one does not
    assert.equal(breaker.snapshot().openedAt, wall.t - 30);
    assert.equal(breaker.retryAfter(), 70);
  }
});
