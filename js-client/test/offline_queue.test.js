'use strict';

// The offline queue on plain numbers: order, bounds, overflow policies, deadlines.

const test = require('node:test');
const assert = require('node:assert/strict');
const { OfflineQueue, Overflow } = require('../lib/offline_queue');

let ids = 0;
/** A queue entry. */
function entry(priority = 0, { bytes = 10, deadline = Infinity, name } = {}) {
  return { id: name ?? `m${++ids}`, priority, bytes, deadline };
}

/** Names of everything queued, in the order shift() returns them. */
function order(q) {
  return q.entries().map((e) => e.id);
}

test('offline queue - highest priority first, FIFO within a priority', () => {
  const q = new OfflineQueue();
  for (const [name, p] of [['a', 0], ['b', 5], ['c', 0], ['d', -1], ['e', 5], ['f', 1]]) q.push(entry(p, { name }));
  assert.deepEqual(order(q), ['b', 'e', 'f', 'a', 'c', 'd']);
  const out = [];
  for (let e = q.shift(); e !== undefined; e = q.shift()) out.push(e.id);
  assert.deepEqual(out, ['b', 'e', 'f', 'a', 'c', 'd']);
  assert.equal(q.size, 0);
  assert.equal(q.bytes, 0);
});

test('offline queue - unshift puts an entry back at the head of its priority', () => {
  const q = new OfflineQueue();
  for (const name of ['a', 'b', 'c']) q.push(entry(0, { name }));
  const first = q.shift();
  q.unshift(first);
  assert.deepEqual(order(q), ['a', 'b', 'c']);
});

test('offline queue - reject: a full queue refuses the new entry, by count and by bytes', () => {
  const q = new OfflineQueue({ maxSize: 2, maxBytes: 100 });
  assert.equal(q.push(entry(0, { name: 'a' })).accepted, true);
  assert.equal(q.push(entry(0, { name: 'b' })).accepted, true);
  assert.deepEqual(q.push(entry(9, { name: 'c' })), { accepted: false, evicted: [] });
  const byBytes = new OfflineQueue({ maxSize: 10, maxBytes: 25 });
  byBytes.push(entry(0, { bytes: 20 }));
  assert.equal(byBytes.push(entry(0, { bytes: 6 })).accepted, false);
  assert.equal(byBytes.push(entry(0, { bytes: 5 })).accepted, true);
  assert.equal(byBytes.bytes, 25);
  // An entry larger than the whole queue is refused under every policy.
  for (const overflow of Object.values(Overflow)) {
    assert.equal(new OfflineQueue({ maxBytes: 10, overflow }).push(entry(0, { bytes: 11 })).accepted, false);
  }
  // maxSize 0 disables queueing.
  assert.equal(new OfflineQueue({ maxSize: 0 }).push(entry()).accepted, false);
});

test('offline queue - drop_oldest evicts the oldest entries, whatever their priority', () => {
  const q = new OfflineQueue({ maxSize: 3, overflow: Overflow.DROP_OLDEST });
  for (const [name, p] of [['a', 9], ['b', 0], ['c', 1]]) q.push(entry(p, { name }));
  const { accepted, evicted } = q.push(entry(0, { name: 'd' }));
  assert.equal(accepted, true);
  assert.deepEqual(evicted.map((e) => e.id), ['a']);
  assert.deepEqual(order(q), ['c', 'b', 'd']);
  assert.equal(q.stats().dropped, 1);
  // By bytes: as many as needed go.
  const b = new OfflineQueue({ maxBytes: 30, overflow: Overflow.DROP_OLDEST });
  for (const name of ['x', 'y', 'z']) b.push(entry(0, { name, bytes: 10 }));
  assert.deepEqual(b.push(entry(0, { name: 'big', bytes: 25 })).evicted.map((e) => e.id), ['x', 'y', 'z']);
  assert.deepEqual(order(b), ['big']);
});

test('offline queue - drop_lowest_priority evicts the oldest of the lowest priority, or refuses a lower newcomer', () => {
  const q = new OfflineQueue({ maxSize: 3, overflow: Overflow.DROP_LOWEST_PRIORITY });
  for (const [name, p] of [['a', 1], ['b', 0], ['c', 0]]) q.push(entry(p, { name }));
  const r = q.push(entry(5, { name: 'd' }));
  assert.deepEqual(r.evicted.map((e) => e.id), ['b']);
  assert.deepEqual(order(q), ['d', 'a', 'c']);
  // Same priority as the lowest: the oldest of that priority goes.
  assert.deepEqual(q.push(entry(0, { name: 'e' })).evicted.map((e) => e.id), ['c']);
  // Lower than everything queued: the newcomer is refused, nothing moves.
  assert.deepEqual(q.push(entry(-1, { name: 'f' })), { accepted: false, evicted: [] });
  assert.deepEqual(order(q), ['d', 'a', 'e']);
});

test('offline queue - a refusal after partial eviction leaves the queue as it was', () => {
  const q = new OfflineQueue({ maxSize: 10, maxBytes: 30, overflow: Overflow.DROP_LOWEST_PRIORITY });
  q.push(entry(0, { name: 'low', bytes: 10 }));
  q.push(entry(5, { name: 'high', bytes: 20 }));
  // Needs 25 bytes: evicting 'low' is not enough and 'high' outranks the newcomer.
  assert.deepEqual(q.push(entry(1, { name: 'new', bytes: 25 })), { accepted: false, evicted: [] });
  assert.deepEqual(order(q), ['high', 'low']);
  assert.equal(q.bytes, 30);
  assert.equal(q.stats().dropped, 0);
});

test('offline queue - deadlines: nextDeadline() and expire(now)', () => {
  const q = new OfflineQueue();
  assert.equal(q.nextDeadline(), null);
  q.push(entry(0, { name: 'forever' }));
  assert.equal(q.nextDeadline(), null);
  q.push(entry(1, { name: 'late', deadline: 300 }));
  q.push(entry(0, { name: 'soon', deadline: 100 }));
  q.push(entry(0, { name: 'mid', deadline: 200 }));
  assert.equal(q.nextDeadline(), 100);
  assert.deepEqual(q.expire(99), []);
  assert.deepEqual(q.expire(200).map((e) => e.id), ['soon', 'mid']);
  assert.equal(q.nextDeadline(), 300);
  assert.deepEqual(order(q), ['late', 'forever']);
  assert.equal(q.stats().dropped, 2);
});

test('offline queue - remove(), removeWhere() and stats()', () => {
  const q = new OfflineQueue({ maxSize: 5, maxBytes: 1000 });
  q.push(entry(2, { name: 'a', bytes: 7 }));
  q.push(entry(0, { name: 'b', bytes: 3 }));
  q.push(entry(2, { name: 'c', bytes: 5 }));
  assert.deepEqual(q.stats(), { size: 3, bytes: 15, maxSize: 5, maxBytes: 1000, dropped: 0, byPriority: { 0: 1, 2: 2 } });
  assert.equal(q.remove('c').id, 'c');
  assert.equal(q.remove('nope'), undefined);
  assert.deepEqual(q.removeWhere((e) => e.priority === 0).map((e) => e.id), ['b']);
  assert.deepEqual(q.stats(), { size: 1, bytes: 7, maxSize: 5, maxBytes: 1000, dropped: 1, byPriority: { 2: 1 } });
  assert.deepEqual(q.removeWhere(() => true, false).map((e) => e.id), ['a']); // taken out to be put back: not dropped
  assert.deepEqual(q.stats(), { size: 0, bytes: 0, maxSize: 5, maxBytes: 1000, dropped: 1, byPriority: {} });
  assert.throws(() => new OfflineQueue({ overflow: 'drop_newest' }), TypeError);
});
