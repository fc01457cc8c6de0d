'use strict';

// The append-only queue file, in a temporary directory.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { QueueStore, encodeRecord } = require('../lib/queue_store');
const { QueueFileError, QueueFileInUseError } = require('..');

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
  a.close();
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
  a.close();
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
  s.close();
  assert.deepEqual(new QueueStore(file).load(), []);
});

test('queue store - a torn last record (a crash mid-write) is cut off', (t) => {
  const file = tempFile(t);
  const s = new QueueStore(file, { now: () => 0 });
  s.load();
  s.add(stored('whole'));
  const torn = encodeRecord({ op: 'add', id: 'torn', priority: 0, expires_at: 10_000, message: {} });
  fs.appendFileSync(file, torn.subarray(0, torn.length - 3));
  s.close();
  const again = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(again.load().map((m) => m.id), ['whole']);
  assert.equal(again.corrupt, 0); // a torn tail is no corruption
  again.add(stored('after'));
  again.close();
  assert.deepEqual(new QueueStore(file, { now: () => 0 }).load().map((m) => m.id), ['whole', 'after']);
});

test('queue store - one owner per file: a second store fails naming the file; close() gives it back; a dead owner\'s lock is taken over', (t) => {
  const file = tempFile(t);
  const a = new QueueStore(file, { now: () => 0 });
  a.load();
  assert.equal(fs.readFileSync(`${file}.lock`, 'utf8'), String(process.pid));
  a.add(stored('a1'));
  const b = new QueueStore(file, { now: () => 0 });
  assert.throws(() => b.load(), (err) => err instanceof QueueFileInUseError && err.code === 'queue_file' && err.reason === 'EQUEUELOCKED' && err.message.includes(file) && err.message.includes(String(process.pid)));
  a.close();
  assert.equal(fs.existsSync(`${file}.lock`), false);
  assert.deepEqual(b.load().map((m) => m.id), ['a1']);
  b.close();
  // a lock left by a process that is gone
  const child = require('node:child_process').spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  const deadPid = Number(child.stdout.toString());
  fs.writeFileSync(`${file}.lock`, String(deadPid));
  const c = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(c.load().map((m) => m.id), ['a1']);
  assert.equal(fs.readFileSync(`${file}.lock`, 'utf8'), String(process.pid));
  c.close();
});

test('queue store - a lock file that names no live process is free: empty (as a Python client of 2.0 left it) or not a pid', (t) => {
  const file = tempFile(t);
  fs.mkdirSync(path.dirname(file));
  // Not a pid either: digits other than ASCII, or a number past pid_t (2 ** 31 - 1), which read as a live process for good.
  for (const left of ['', '\n', 'not a pid', '0', '²', '١٢', '99999999999999999999', 'py:99999999999999999999', '2147483648']) {
    fs.writeFileSync(`${file}.lock`, left);
    const store = new QueueStore(file, { now: () => 0 });
    assert.deepEqual(store.load(), [], JSON.stringify(left));
    assert.equal(fs.readFileSync(`${file}.lock`, 'utf8'), String(process.pid));
    store.close();
    assert.equal(fs.existsSync(`${file}.lock`), false);
  }
  // one that names a live process (a Python client's pid) is held: a QueueFileError, its reason EQUEUELOCKED
  fs.writeFileSync(`${file}.lock`, String(process.ppid));
  const err = (() => {
    try {
      new QueueStore(file, { now: () => 0 }).load();
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof QueueFileInUseError && err instanceof QueueFileError, err);
  assert.deepEqual([err.name, err.code, err.reason, err.path], ['QueueFileInUseError', 'queue_file', 'EQUEUELOCKED', file]);
  assert.match(err.message, new RegExp(`in use by process ${process.ppid} `));
  assert.equal(fs.readFileSync(`${file}.lock`, 'utf8'), String(process.ppid)); // left to its owner
});

test('queue store - a takeover mutex naming no pid a process can have is broken at once', (t) => {
  const file = tempFile(t);
  fs.mkdirSync(path.dirname(file));
  for (const left of ['²', '99999999999999999999', 'py:99999999999999999999', '2147483648']) {
    fs.writeFileSync(`${file}.lock`, '');
    fs.writeFileSync(`${file}.lock.takeover`, left); // read as a live taker: 2 s, then "in use"
    const store = new QueueStore(file, { now: () => 0 });
    assert.deepEqual(store.load(), [], left);
    store.close();
    assert.deepEqual(fs.readdirSync(path.dirname(file)), [], left); // lock, mutex and temporary files all gone
  }
});

test('queue store - a lock naming this process is free unless this process took it; Python\'s py:PID is read as a pid', (t) => {
  // A container's pid 1, killed and restarted as pid 1, found its own pid in the lock its crashed run left and was refused for good.
  const file = tempFile(t);
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(`${file}.lock`, String(process.pid));
  const crashed = new Date(Date.now() - process.uptime() * 1000 - 60_000); // written before this process started
  fs.utimesSync(`${file}.lock`, crashed, crashed);
  const a = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(a.load(), []);
  // taken by this process: a second store in it is refused
  assert.throws(() => new QueueStore(file, { now: () => 0 }).load(), (err) => err instanceof QueueFileInUseError && err.message.includes(`process ${process.pid} `));
  a.close();
  assert.equal(fs.existsSync(`${file}.lock`), false);
  // a Python client's lock names its pid as py:PID: held while that process lives, free once it is dead
  fs.writeFileSync(`${file}.lock`, `py:${process.ppid}`);
  assert.throws(() => new QueueStore(file, { now: () => 0 }).load(), (err) => err instanceof QueueFileInUseError && err.message.includes(`process ${process.ppid} `));
  const child = require('node:child_process').spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  const deadPid = Number(child.stdout.toString());
  fs.writeFileSync(`${file}.lock`, `py:${deadPid}`);
  fs.writeFileSync(`${file}.lock.takeover`, String(deadPid)); // and a taker that died holding the takeover mutex
  const b = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(b.load(), []);
  assert.equal(fs.readFileSync(`${file}.lock`, 'utf8'), String(process.pid));
  b.close();
  assert.deepEqual(fs.readdirSync(path.dirname(file)), []); // lock, mutex and temporary files all gone
});

test('queue store - a lock another instance of the module in this process took is held: a worker thread, a second copy of the package', (t) => {
  const file = tempFile(t);
  fs.mkdirSync(path.dirname(file));
  const a = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(a.load(), []);
  t.after(() => a.close());
  // A second copy of the lock module: its own set of held locks, empty (as a worker thread's is).
  const lockModule = require.resolve('../lib/queue_lock');
  const own = require.cache[lockModule];
  delete require.cache[lockModule];
  const copy = require('../lib/queue_lock');
  require.cache[lockModule] = own;
  assert.notEqual(copy.lockQueueFile, require('../lib/queue_lock').lockQueueFile);
  const fail = (what, err) => new QueueFileError(what, { path: file, cause: err });
  assert.throws(() => copy.lockQueueFile(file, `${file}.lock`, fail), (err) => err.reason === 'EQUEUELOCKED' && err.message.includes(`process ${process.pid} `));
  assert.equal(fs.readFileSync(`${file}.lock`, 'utf8'), String(process.pid)); // still a's
});

test('queue store - a takeover mutex older than any live takeover is broken whatever its pid names (reused)', (t) => {
  const file = tempFile(t);
  fs.mkdirSync(path.dirname(file));
  const child = require('node:child_process').spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  fs.writeFileSync(`${file}.lock`, child.stdout.toString()); // a dead owner: stale
  fs.writeFileSync(`${file}.lock.takeover`, String(process.ppid)); // a live process, but a mutex a minute old
  const old = new Date(Date.now() - 60_000);
  fs.utimesSync(`${file}.lock.takeover`, old, old);
  const store = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(store.load(), []);
  assert.equal(fs.readFileSync(`${file}.lock`, 'utf8'), String(process.pid));
  store.close();
  assert.deepEqual(fs.readdirSync(path.dirname(file)), []);
});

test('queue store - expired messages are written off at load: each is counted once across restarts', (t) => {
  const file = tempFile(t);
  const a = new QueueStore(file, { now: () => 0 });
  a.load();
  for (let i = 0; i < 10; i++) a.add(stored(`l${i}`, { expiresAt: 1e12 }));
  for (let i = 0; i < 3; i++) a.add(stored(`e${i}`, { expiresAt: 2000 }));
  a.close();
  const counts = [];
  for (let run = 0; run < 3; run++) {
    const r = new QueueStore(file, { now: () => 5000 });
    assert.equal(r.load().length, 10);
    counts.push(r.expired);
    r.close();
  }
  assert.deepEqual(counts, [3, 0, 0]);
});

test('queue store - an unreadable stretch in the middle is skipped and counted; the records after it are kept', (t) => {
  const file = tempFile(t);
  const a = new QueueStore(file, { now: () => 0 });
  a.load();
  a.add(stored('before'));
  a.close();
  const victim = encodeRecord({ op: 'add', id: 'victim', priority: 0, expires_at: 10_000, message: {} });
  victim.fill(0x7b, 4, 12); // a sane length, a body that is no JSON
  const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]); // a length prefix that is nonsense
  fs.appendFileSync(file, Buffer.concat([victim, garbage]));
  const b = new QueueStore(file, { now: () => 0 });
  b.load();
  b.add(stored('after'));
  b.close();
  fs.appendFileSync(file, garbage);
  fs.appendFileSync(file, encodeRecord({ op: 'add', id: 'last', priority: 0, expires_at: 10_000, message: {} }));
  const c = new QueueStore(file, { now: () => 0 });
  assert.deepEqual(c.load().map((m) => m.id), ['before', 'after', 'last']);
  assert.equal(c.corrupt, 1);
  c.close();
  const d = new QueueStore(file, { now: () => 0 });
  assert.equal(d.load().length, 3);
  assert.equal(d.corrupt, 0); // compacted: reported once
  d.close();
});

test('queue store - close() makes a last try at the remove records it owes, as Python\'s close() does', (t) => {
  // They used to be dropped: the messages sent meanwhile went out again at the next start.
  const file = tempFile(t);
  const clock = () => 1000;
  const a = new QueueStore(file, { now: clock });
  a.load();
  for (const id of ['m1', 'm2', 'm3']) a.add(stored(id));
  fs.renameSync(file, `${file}.saved`);
  fs.mkdirSync(file); // every write fails: the remove record is owed
  assert.throws(() => a.remove('m1'), QueueFileError);
  fs.rmdirSync(file);
  fs.renameSync(`${file}.saved`, file);
  a.close();
  assert.equal(a.locked, false);
  const b = new QueueStore(file, { now: clock });
  assert.deepEqual(b.load(), [stored('m2'), stored('m3')]);
  // A last try that fails too leaves the file for the next owner and still gives the lock back.
  b.remove('m2');
  fs.renameSync(file, `${file}.saved`);
  fs.mkdirSync(file);
  assert.throws(() => b.remove('m3'), QueueFileError);
  b.close();
  assert.equal(fs.existsSync(`${file}.lock`), false);
  fs.rmdirSync(file);
  fs.renameSync(`${file}.saved`, file);
  assert.deepEqual(new QueueStore(file, { now: clock }).load(), [stored('m3')]); // sent again: at least once
});

test('queue store - a lock file that cannot be removed does not hide why load() failed', (t) => {
  // A failure to remove it (not ENOENT) was thrown as a plain Error in place of the QueueFileError.
  const file = tempFile(t);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, 'not a queue\n'.repeat(20));
  const lockFile = `${file}.lock`;
  const unlink = fs.unlinkSync;
  t.mock.method(fs, 'unlinkSync', (p) => {
    if (p === lockFile) throw Object.assign(new Error(`EBUSY: resource busy or locked, unlink '${p}'`), { code: 'EBUSY' });
    return unlink(p);
  });
  const store = new QueueStore(file);
  assert.throws(
    () => store.load(),
    (err) => err instanceof QueueFileError && err.path === file && err.message.includes('is not a queue file')
  );
  assert.equal(store.locked, false);
});
