'use strict';

// A queue file (`queuePath`) that cannot be opened or written
// (docs/resilience.md §4, "When the file fails"): a QueueFileError naming
// the path from the constructor, a one-way call refused when its message
// cannot be written (nothing queued, nothing evicted), and a failed remove
// reported once on 'error', the replay and the expiry going on. The
// failures are real ones: files that are not queue files, a regular file
// where the directory should be, a directory where the file should be.
// The Python mirror is tests/test_queue_file_failures.py.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { IPCClient, ErrorCode, QueueFileError } = require('..');
const { nextReceived, until, waitFor } = require('./helpers');
const { proxiedClient: setup, goOffline, record, appMessages } = require('./proxied');

/** A temporary directory removed after the test. */
function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-queue-fail-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The payloads a load of the file would find (read past the client's lock). */
function livePayloads(file) {
  const data = fs.readFileSync(file);
  const live = new Map();
  for (let at = 0; at + 4 <= data.length; at += 4 + data.readUInt32BE(at)) {
    const record = JSON.parse(data.toString('utf8', at + 4, at + 4 + data.readUInt32BE(at)));
    if (record.op === 'add') live.set(record.id, record.message.payload);
    else live.delete(record.id);
  }
  return [...live.values()];
}

/** Puts a directory where the file is (every write to it fails); returns how to put the file back. */
function breakFile(file) {
  fs.renameSync(file, `${file}.saved`);
  fs.mkdirSync(file);
  return () => {
    fs.rmdirSync(file);
    fs.renameSync(`${file}.saved`, file);
  };
}

test('queue file - a queuePath that cannot be opened throws QueueFileError naming it, the file left alone and the lock given back', (t) => {
  const dir = tempDir(t);
  const text = path.join(dir, 'notes.txt');
  fs.writeFileSync(text, 'not a queue\n'.repeat(20));
  const sqlite = path.join(dir, 'outbox.db'); // what the Python client writes
  fs.writeFileSync(sqlite, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(84)]));
  fs.mkdirSync(path.join(dir, 'a_dir'));
  fs.writeFileSync(path.join(dir, 'a_file'), 'x');
  for (const file of [text, sqlite, path.join(dir, 'a_dir'), path.join(dir, 'a_file', 'outbox.bin')]) {
    assert.throws(
      () => new IPCClient('app', { port: 1, queuePath: file }),
      (err) => err instanceof QueueFileError && err.code === ErrorCode.QUEUE_FILE && err.path === file && err.message.includes('queuePath') && err.message.includes(file)
    );
    assert.equal(fs.existsSync(`${file}.lock`), false, `${file}: lock given back`);
  }
  assert.equal(fs.readFileSync(text, 'utf8'), 'not a queue\n'.repeat(20)); // refused, not rewritten
  assert.equal(fs.statSync(sqlite).size, 100);
});

test('queue file - a missing directory is created', async (t) => {
  const file = path.join(tempDir(t), 'state', 'client', 'outbox.bin');
  const client = new IPCClient('app', { port: 1, queuePath: file });
  assert.equal(fs.existsSync(path.dirname(file)), true);
  await client.disconnect();
});

test('queue file - a write the file refuses fails the call and leaves the queue as it was', async (t) => {
  const queuePath = path.join(tempDir(t), 'outbox.bin');
  const { peer, proxy, client } = await setup(t, {}, { queuePath, queueMaxSize: 1, queueOverflow: 'drop_oldest' });
  const log = record(client, ['queue_dropped', 'error']);
  await client.connect();
  await goOffline(client, proxy);
  await client.publish('audit', 'kept', { timeout: 60_000 });
  const repair = breakFile(queuePath);
  await assert.rejects(client.publish('audit', 'x'.repeat(50_000), { timeout: 60_000 }), (err) => {
    assert.ok(err instanceof QueueFileError && err.path === queuePath && err.message.includes('queuePath'), err);
    assert.equal(err.cause.code, 'EISDIR');
    return true;
  }); // it would have evicted "kept" to make room
  const { size, dropped } = client.queueStats();
  assert.deepEqual([size, dropped, log], [1, 0, []]); // "kept" was not evicted
  repair();
  assert.deepEqual(livePayloads(queuePath), ['kept']);
  const from = peer.received.length;
  const kept = nextReceived(peer, (m) => m.payload === 'kept');
  proxy.refuse(false);
  await kept;
  await until(() => client.queueStats().size === 0 && fs.statSync(queuePath).size === 0, 5000, 'the file emptied');
  const after = nextReceived(peer, (m) => m.payload === 'after');
  await client.publish('audit', 'after');
  await after;
  assert.deepEqual(appMessages(peer, from), [['publish', 'audit', 'kept'], ['publish', 'audit', 'after']]); // the refused one was never sent
});

test('queue file - a remove the file refuses is reported once, the replay and the expiry go on, the next write does it', async (t) => {
  const queuePath = path.join(tempDir(t), 'outbox.bin');
  const { peer, proxy, client } = await setup(t, {}, { queuePath });
  const errors = record(client, ['error']);
  await client.connect();
  await goOffline(client, proxy);
  for (let i = 0; i < 3; i++) await client.publish('audit', i, { timeout: 60_000 });
  await client.publish('audit', 'late', { timeout: 50 });
  const expired = waitFor(client, 'queue_dropped', 2000);
  const repair = breakFile(queuePath);
  assert.equal((await expired)[0].reason, 'expired'); // reported although its remove failed (no crash)
  const from = peer.received.length;
  const last = nextReceived(peer, (m) => m.payload === 2);
  proxy.refuse(false);
  await last;
  await until(() => client.queueStats().size === 0, 5000, 'the replay');
  assert.deepEqual(appMessages(peer, from), [0, 1, 2].map((i) => ['publish', 'audit', i])); // the replay went on
  assert.equal(errors.length, 1); // four failed removes, one report
  const [, err] = errors[0];
  assert.ok(err instanceof QueueFileError && err.path === queuePath, err);
  repair();
  assert.deepEqual(livePayloads(queuePath), [0, 1, 2, 'late']); // still on disk: a load now would send them again
  await goOffline(client, proxy);
  await client.publish('audit', 'next', { timeout: 60_000 }); // a write that works carries the removes owed
  assert.deepEqual(livePayloads(queuePath), ['next']);
});

test('queue file - disconnect() ends disconnected when the lock cannot be removed: emptied, or reported on error', async (t) => {
  // A lock that can be neither removed nor emptied (a directory in its place):
  // disconnect() rejected with the raw EISDIR and the client stayed in
  // 'disconnecting', a second disconnect() returning nothing.
  const dir = tempDir(t);
  const file = path.join(dir, 'outbox.bin');
  const client = new IPCClient('app', { port: 1, waitOnFirstConnect: true, queuePath: file, initialDelay: 20, maxDelay: 50 });
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const connecting = client.connect().catch((err) => err);
  await client.publish('audit', 1);
  fs.renameSync(`${file}.lock`, `${file}.lock.saved`);
  fs.mkdirSync(`${file}.lock`);
  await client.disconnect();
  assert.equal(client.getConnectionInfo().state, 'disconnected');
  assert.equal((await connecting).code, ErrorCode.NOT_CONNECTED);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof QueueFileError, String(errors[0]));
  assert.equal(errors[0].path, file);
  assert.match(errors[0].message, /cannot give back its lock file .*outbox\.bin\.lock \(it still names this process\): EISDIR/);
});

test('queue file - a lock whose directory went read-only is emptied at disconnect(), as Python does', async (t) => {
  // Run as an unprivileged user (root removes files from a read-only directory).
  const asRoot = process.getuid && process.getuid() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipc-queue-ro-'));
  t.after(() => {
    fs.chmodSync(dir, 0o700);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  if (asRoot) fs.chownSync(dir, 65534, 65534);
  const child = `
    const fs = require('node:fs');
    const { IPCClient } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
    const c = new IPCClient('app', { port: 1, waitOnFirstConnect: true, queuePath: process.argv[1] + '/q', initialDelay: 20, maxDelay: 50 });
    const errors = [];
    c.on('error', (e) => errors.push(e.message));
    c.connect().catch(() => {});
    c.publish('audit', 1).then(async () => {
      fs.chmodSync(process.argv[1], 0o555);
      let outcome = 'resolved';
      await c.disconnect().catch((e) => { outcome = 'rejected ' + e.message; });
      console.log(JSON.stringify({ outcome, state: c.getConnectionInfo().state, errors }));
    });`;
  const argv = [process.execPath, '-e', child, dir];
  const { execFileSync } = require('node:child_process');
  let out;
  try {
    out = execFileSync(asRoot ? 'setpriv' : argv[0], asRoot ? ['--reuid=65534', '--regid=65534', '--clear-groups', ...argv] : argv.slice(1), { timeout: 20000 });
  } catch (err) {
    if (asRoot && err.code === 'ENOENT') return t.skip('no setpriv to run as an unprivileged user');
    throw err;
  }
  assert.deepEqual(JSON.parse(out.toString()), { outcome: 'resolved', state: 'disconnected', errors: [] });
  assert.equal(fs.readFileSync(path.join(dir, 'q.lock'), 'utf8'), ''); // emptied: it names no holder, so it is free
});
