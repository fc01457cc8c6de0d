'use strict';

// The append-only queue file, in a temporary directory.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { QueueStore, encodeRecord } = require('../lib/queue_store');

/** A fresh file path in a temporary directory removed after the test. */
function tempFile(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-queue-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'sub', 'queue.bin');
}

/** A stored message. */
function stored(id, { priority = 0, expiresAt = 10_000 } = {}) {
  return { id, priority, expiresAt, message: { message_id: id, channel_id: 'c', payload: { id } } };
}

test('queue store - messages survive a new instance, removed ones do not', (t) => {
  const file = tempFile(t);
  const clock = { t: 1000 };
  const a = new QueueStore(file, { now: () => clock.t });
  assert.deepEqual(a.load(), []);
  a.add(stored('m1', { priority: 1 }));
  a.add(stored('m2'));
  a.add(stored('m3'));
  a.remove('m2');
  a.remove('unknown');
  const b = new QueueStore(file, { now: () => clock.t });
  assert.deepEqual(b.load(), [stored('m1', { priority: 1 }), stored('m3')]);
  assert.equal(b.size, 2);
});

test('queue store - expired messages are skipped on load', (t) => {
  const file = tempFile(t);
  const a = new QueueStore(file, { now: () => 0 });
  a.load();
  a.add(stored('old', { expiresAt: 500 }));
  a.add(stored('older', { expiresAt: 400 }));
  a.add(stored('new', { expiresAt: 5000 }));
  const b = new QueueStore(file, { now: () => 1000 });
  assert.deepEqual(b.load().map((m) => m.id), ['new']);
  // Two of three records were dead: the file was compacted to the live one.
  assert.equal(fs.readFileSync(file).length, encodeRecord({ op: 'add', id: 'new', priority: 0, expires_at: 5000, message: stored('new').message }).length);
});

test('queue store - compaction once more than half of the records are dead', (t) => {
  const file = tempFile(t);
  const s = new QueueStore(file, { now: () => 0 });
  s.load();
  for (let i = 0; i < 10; i++) s.add(stored(`m${i}`));
  const full = fs.statSync(file).size;
  for (let i = 0; i < 4; i++) s.remove(`m${i}`);
  // 14 records, 6 live: 8 dead > 6 live, so the file was rewritten at some point.
  assert.ok(fs.statSync(file).size < full, 'compacted');
  for (let i = 4; i < 10; i++) s.remove(`m${i}`);
  assert.equal(fs.statSync(file).size, 0);
  assert.deepEqual(new QueueStore(file).load(), []);
});

test('queue store - a torn last record (a crash mid-write) is cut off', (t) => {
  const file = tempFile(t);
  const s = new QueueStore(file, { now: () => 0 });
  s.load();
  s.add(stored('whole'));
  const torn = encodeRecord({ op: 'add', id: 'torn', priority: 0, expires_at: 10_000, message: {} });
  fs.appendFileSync(file, torn.subarray(0, torn.length - 3));
  const again = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(again.load().map((m) => m.id), ['whole']);
  again.add(stored('after'));
  assert.deepEqual(new QueueStore(file, { now: () => 0 }).load().map((m) => m.id), ['whole', 'after']);
});
