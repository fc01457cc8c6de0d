'use strict';

// The pool's bookkeeping on plain data (lib/pool_plan.js): no sockets, no
// clock, no timers. Mirrors tests/test_pool_plan.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const { planPool, pickIdle, pickShared, DEAD, IDLE, TIMEOUT, OPEN_FAILED } = require('../lib/pool_plan');

const M = (name, fields = {}) => ({ name, usable: true, leased: false, shared: 0, idleSince: 0, ...fields });
const W = (name, fields = {}) => ({ name, shared: false, deadline: Infinity, ...fields });
const lease = (name, deadline = Infinity) => W(name, { shared: true, deadline });
const settings = (minConnections, maxConnections, more = {}) => ({ minConnections, maxConnections, ...more });

const WAIT = settings(0, 2, { leaseGrowth: 'wait' });
const BACKGROUND = settings(0, 2, { leaseGrowth: 'background' });

const names = (pairs) => pairs.map(([a, b]) => [a.name, typeof b === 'string' ? b : b.name]);
const assigned = (plan) => names(plan.assign);

// -- acquire: idle members, FIFO, growth up to maxConnections

test('pool plan - an acquire gets the most recently freed idle member', () => {
  const members = [M('a', { idleSince: 1 }), M('b', { idleSince: 3 }), M('c', { idleSince: 2 })];
  const plan = planPool(members, [W('w')], WAIT, 10);
  assert.deepEqual(assigned(plan), [['b', 'w']]);
  assert.deepEqual([plan.open, plan.close, plan.fail], [0, [], []]);
});

test('pool plan - waiters are served first come, first served', () => {
  const members = [M('a', { idleSince: 1 }), M('b', { idleSince: 2 })];
  const plan = planPool(members, [W('first'), W('second'), W('third')], settings(0, 2), 10);
  assert.deepEqual(assigned(plan), [['b', 'first'], ['a', 'second']]); // third waits: the pool is full
  assert.deepEqual([plan.open, plan.fail], [0, []]);
});

test('pool plan - held and shared members are not handed to an acquire', () => {
  const plan = planPool([M('held', { leased: true }), M('shared', { shared: 2 })], [W('w')], settings(0, 3), 0);
  assert.deepEqual([plan.assign, plan.open], [[], 1]); // an acquire never shares
});

test('pool plan - opens one member per waiter up to max, counting opens in flight', () => {
  const s = settings(0, 4);
  const waiters = ['a', 'b', 'c', 'd', 'e'].map((n) => W(n));
  assert.equal(planPool([], waiters, s, 0).open, 4);
  assert.equal(planPool([], waiters, s, 0, { opening: 3 }).open, 1); // three already cover a, b, c
  assert.equal(planPool([M('x', { leased: true })], waiters, s, 0, { opening: 3 }).open, 0); // full
  assert.equal(planPool([], waiters.slice(0, 2), s, 0, { opening: 2 }).open, 0); // both covered
});

test('pool plan - a full pool opens nothing and the waiter waits for a release', () => {
  const plan = planPool([M('a', { leased: true }), M('b', { leased: true })], [W('w')], WAIT, 0);
  assert.deepEqual([plan.assign, plan.fail, plan.open, plan.close], [[], [], 0, []]);
});

// -- failed opens

test('pool plan - a failed open fails the oldest waiter waiting for a new member', () => {
  const plan = planPool([M('idle')], [W('served'), W('first'), W('second')], settings(0, 3), 0, { opening: 1, failedOpens: 1 });
  assert.deepEqual(assigned(plan), [['idle', 'served']]); // it had a member to take: not the one failed
  assert.deepEqual(names(plan.fail), [['first', OPEN_FAILED]]);
  assert.equal(plan.open, 0); // second is covered by the open still in flight
  assert.equal(plan.unclaimed, 0);
});

test('pool plan - each failed open fails one waiter and the freed slot serves the next', () => {
  const plan = planPool([], [W('a'), W('b')], settings(0, 1), 0, { failedOpens: 1 });
  assert.deepEqual(names(plan.fail), [['a', OPEN_FAILED]]);
  assert.equal(plan.open, 1); // b gets an attempt of its own in the freed slot (and fails fast too)
});

test('pool plan - a failed open nobody waited on is unclaimed', () => {
  const plan = planPool([M('a', { leased: true })], [], WAIT, 0, { failedOpens: 2 });
  assert.deepEqual([plan.unclaimed, plan.fail], [2, []]);
});

test('pool plan - a lease whose open failed shares a busy member instead of failing', () => {
  const plan = planPool([M('busy', { shared: 1 })], [lease('l')], WAIT, 0, { failedOpens: 1 });
  assert.deepEqual([assigned(plan), plan.fail], [[['busy', 'l']], []]);
});

test('pool plan - background leases fail together when their one open fails', () => {
  const waiters = [lease('l1'), W('acq'), lease('l2')];
  const plan = planPool([M('held', { leased: true })], waiters, settings(0, 3, { leaseGrowth: 'background' }), 0, { opening: 1, failedOpens: 1 });
  assert.deepEqual(names(plan.fail), [['l1', OPEN_FAILED], ['l2', OPEN_FAILED]]);
  assert.equal(plan.open, 0); // the acquire is covered by the open still in flight
});

// -- dead members

test('pool plan - dead members nobody holds are closed and their slots reused', () => {
  const plan = planPool([M('dead', { usable: false }), M('heldDead', { usable: false, leased: true })], [W('w')], WAIT, 0);
  assert.deepEqual(names(plan.close), [['dead', DEAD]]); // the held one waits for its release
  assert.deepEqual([plan.assign, plan.open], [[], 1]); // the dead one's slot; the held one still counts
});

test('pool plan - a dead member below minConnections is to be refilled', () => {
  const plan = planPool([M('dead', { usable: false }), M('ok')], [], settings(2, 4), 0);
  assert.deepEqual([names(plan.close), plan.refill], [[['dead', DEAD]], 1]);
  assert.equal(planPool([], [], settings(2, 4), 0, { opening: 2 }).refill, 0); // opens in flight count
});

// -- idle members

test('pool plan - idle members above min are closed oldest first, down to min', () => {
  const old = M('old', { idleSince: 5 });
  const older = M('older', { idleSince: 1 });
  const recent = M('recent', { idleSince: 95 });
  const busy = M('busy', { shared: 1 });
  const plan = planPool([old, older, recent, busy], [], settings(1, 5, { idleTimeout: 10 }), 100);
  assert.deepEqual(names(plan.close), [['older', IDLE], ['old', IDLE]]); // recent is not idle long enough
  const tight = planPool([old, older, busy], [], settings(2, 5, { idleTimeout: 10 }), 100);
  assert.deepEqual(names(tight.close), [['older', IDLE]]); // down to minConnections, not below
  assert.equal(plan.refill, 0);
});

test('pool plan - idle members are kept without idleTimeout, or when pinned', () => {
  const a = M('a');
  const b = M('b');
  assert.deepEqual(planPool([a, b], [], settings(0, 2), 1e9).close, []);
  assert.deepEqual(planPool([a, b], [], settings(0, 2, { idleTimeout: Infinity }), 1e9).close, []);
  const plan = planPool([a, b], [], settings(0, 2, { idleTimeout: 1 }), 100, { keep: a });
  assert.deepEqual(names(plan.close), [['b', IDLE]]);
});

test('pool plan - a member handed out by the plan is not closed for idleness', () => {
  const plan = planPool([M('a')], [W('w')], settings(0, 2, { idleTimeout: 1 }), 100);
  assert.deepEqual([assigned(plan), plan.close], [[['a', 'w']], []]);
});

test('pool plan - the members may be a Set', () => {
  const plan = planPool(new Set([M('a', { idleSince: 1 }), M('b', { idleSince: 2 })]), [W('w')], settings(0, 2, { idleTimeout: 1 }), 100);
  assert.deepEqual([assigned(plan), names(plan.close)], [[['b', 'w']], [['a', IDLE]]]);
});

// -- acquire timeout

test('pool plan - waiters past their deadline fail with timeout', () => {
  const plan = planPool([M('held', { leased: true })], [W('late', { deadline: 5 }), W('onTime', { deadline: 50 })], settings(0, 1), 5);
  assert.deepEqual(names(plan.fail), [['late', TIMEOUT]]);
  assert.deepEqual([plan.assign, plan.open], [[], 0]);
});

test('pool plan - a waiter past its deadline still takes a free member', () => {
  // A zero timeout takes an idle member; only waiting is what times out.
  const plan = planPool([M('a')], [W('late', { deadline: 1 }), W('next')], WAIT, 2);
  assert.deepEqual([assigned(plan), plan.fail, plan.open], [[['a', 'late']], [], 1]);
});

test('pool plan - a waiter past its deadline neither opens nor keeps an open from the next', () => {
  const alone = planPool([], [W('late', { deadline: 1 })], WAIT, 2);
  assert.deepEqual([names(alone.fail), alone.open], [[['late', TIMEOUT]], 0]);
  const plan = planPool([], [W('late', { deadline: 1 }), W('next')], WAIT, 2, { opening: 1 });
  assert.deepEqual([names(plan.fail), plan.open], [[['late', TIMEOUT]], 0]); // the open in flight is next's
});

test('pool plan - a late background lease covered by the leases\' open times out', () => {
  const plan = planPool([], [lease('l1'), lease('l2', 1)], settings(0, 2, { leaseGrowth: 'background' }), 2);
  assert.deepEqual([names(plan.fail), plan.open], [[['l2', TIMEOUT]], 1]);
});

// -- lease (Python: a lease waits for growth)

test('pool plan - a lease takes an idle member before sharing a busy one', () => {
  assert.deepEqual(assigned(planPool([M('busy', { shared: 3 }), M('idle')], [lease('l')], WAIT, 0)), [['idle', 'l']]);
});

test('pool plan - wait: a lease that finds every member busy waits for a new one while there is room', () => {
  const busy = M('busy', { shared: 1 });
  const plan = planPool([busy], [lease('l')], WAIT, 0);
  assert.deepEqual([plan.assign, plan.open], [[], 1]);
  const covered = planPool([busy], [lease('l1'), lease('l2')], WAIT, 0, { opening: 1 });
  assert.deepEqual(assigned(covered), [['busy', 'l2']]); // l1 waits for the open; the pool is full for l2
});

test('pool plan - wait: a lease in a full pool shares the least busy member', () => {
  assert.deepEqual(assigned(planPool([M('a', { shared: 3 }), M('b', { shared: 2 })], [lease('l')], WAIT, 0)), [['b', 'l']]);
});

test('pool plan - a member given to a waiting lease goes to every later lease, not to acquires', () => {
  const plan = planPool([M('freed')], [lease('l1'), W('acq'), lease('l2')], settings(0, 1), 0);
  assert.deepEqual(assigned(plan), [['freed', 'l1'], ['freed', 'l2']]);
  assert.equal(plan.open, 0); // the acquire waits for the member to be free again
});

test('pool plan - an acquire ahead of leases gets the member alone', () => {
  const plan = planPool([M('freed')], [W('acq'), lease('l1'), lease('l2')], settings(0, 1), 0);
  assert.deepEqual(assigned(plan), [['freed', 'acq']]);
});

test('pool plan - leases are never given a member held by an acquire', () => {
  const plan = planPool([M('held', { leased: true })], [lease('l')], settings(0, 1), 0);
  assert.deepEqual([plan.assign, plan.open], [[], 0]);
});

// -- lease (Node: growth in the background, leaseThreshold)

test('pool plan - background: leases pack a member up to the threshold', () => {
  const s = settings(0, 3, { leaseThreshold: 3, leaseGrowth: 'background' });
  const plan = planPool([M('busy', { shared: 2 }), M('idle')], [lease('l')], s, 0);
  assert.deepEqual([assigned(plan), plan.open], [[['busy', 'l']], 0]);
});

test('pool plan - background: a lease at the threshold shares the busiest and opens one more', () => {
  const busy = M('busy', { shared: 1 });
  const plan = planPool([busy], [lease('l')], BACKGROUND, 0);
  assert.deepEqual([assigned(plan), plan.open], [[['busy', 'l']], 1]);
  const roomy = settings(0, 3, { leaseGrowth: 'background' });
  assert.equal(planPool([busy], [lease('l')], roomy, 0, { opening: 1 }).open, 0); // one at a time, room or not
  assert.equal(planPool([busy, M('b2', { shared: 1 })], [lease('l')], BACKGROUND, 0).open, 0); // full
});

test('pool plan - background: leases with nothing usable share one new member', () => {
  const s = settings(0, 5, { leaseGrowth: 'background' });
  const plan = planPool([], [lease('l1'), lease('l2'), lease('l3')], s, 0);
  assert.deepEqual([plan.open, plan.assign], [1, []]);
  assert.equal(planPool([], [lease('l1'), W('a'), lease('l2')], s, 0).open, 2); // one for the leases, one for the acquire
});

// -- the helpers and purity

test('pool plan - the pick helpers read the load the plan adds', () => {
  const a = M('a', { idleSince: 1 });
  const b = M('b', { idleSince: 2 });
  assert.equal(pickIdle([a, b]), b);
  assert.equal(pickIdle([a, b], new Map([[b, 1]])), a);
  assert.equal(pickIdle([a, b], undefined, new Set([a, b])), null);
  const c = M('c', { shared: 1 });
  assert.deepEqual(pickShared([c, a], 2), [c, c]);
  assert.deepEqual(pickShared([c, a], 1), [a, c]);
  assert.deepEqual(pickShared([c], 1), [null, c]);
});

for (const leaseGrowth of ['wait', 'background']) {
  test(`pool plan - the plan does not modify what it is given (${leaseGrowth})`, () => {
    const members = [M('a', { shared: 1 }), M('b', { idleSince: 1 }), M('dead', { usable: false }), M('old', { idleSince: -100 })];
    const waiters = [lease('l'), W('w'), W('late', { deadline: 0 })];
    const before = structuredClone({ members, waiters });
    const plan = planPool(members, waiters, settings(1, 4, { idleTimeout: 1, leaseGrowth }), 5, { opening: 1 });
    assert.ok(plan.assign.length > 0 && plan.fail.length > 0 && plan.close.length > 0);
    assert.deepEqual({ members, waiters }, before);
  });
}
