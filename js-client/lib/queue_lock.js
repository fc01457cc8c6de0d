'use strict';

/**
 * The single-owner lock of a queue file, shared with the Python client
 * (ipc_client/queue_lock.py), so neither opens a file the other holds: two
 * owners would send every message twice (docs/resilience.md §4).
 *
 * `${queuePath}.lock` holds its owner's pid: it is held while that process
 * is alive; a lock file with no pid (empty, as an older Python client left
 * it) or a dead one is free and taken over. A new lock file is made with
 * the pid already in it (a temporary file linked into place), so a reader
 * never sees one half-made; the owner removes it when it gives it back.
 * Python also holds `flock` on it, which Node cannot take: Node relies on
 * the pid, which Python writes too.
 */

const fs = require('node:fs');
const { QueueFileError } = require('./errors');

/**
 * Another client, Python or Node, in this process or another, owns the
 * queue file: a QueueFileError (code `queue_file`), `reason`
 * 'EQUEUELOCKED' (its `code` before it was a QueueFileError), as Python's
 * QueueFileInUse.
 */
class QueueFileInUseError extends QueueFileError {
  /**
   * @param {string} message
   * @param {{path: string}} info
   */
  constructor(message, { path }) {
    super(message, { path });
    this.reason = 'EQUEUELOCKED';
  }
}

/**
 * Whether a process is alive (EPERM: it is, under another user).
 * @param {number} pid
 * @returns {boolean}
 */
function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code !== 'ESRCH';
  }
}

/**
 * Makes the lock file with this process's pid in it, in one step.
 * @param {string} lockFile
 * @returns {boolean} false: there is one already.
 */
function create(lockFile) {
  const tmp = `${lockFile}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
  fs.writeFileSync(tmp, String(process.pid), { flag: 'wx' });
  try {
    fs.linkSync(tmp, lockFile);
    return true;
  } catch (err) {
    if (err.code === 'EEXIST') return false;
    if (!['EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP'].includes(err.code)) throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  try {
    fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' }); // no hard links here: create, then write
    return true;
  } catch (err) {
    if (err.code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * The pid a lock file names: null when it names none, undefined when it is gone.
 * @param {string} lockFile
 * @returns {number|null|undefined}
 */
function holder(lockFile) {
  let text;
  try {
    text = fs.readFileSync(lockFile, 'utf8').trim();
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
  return /^\d+$/.test(text) && Number(text) > 0 ? Number(text) : null;
}

/**
 * Takes `lockFile` for `file`.
 * @param {string} file the queue file (absolute).
 * @param {string} lockFile
 * @param {(what: string, cause: unknown) => QueueFileError} fail the store's error for a file that fails.
 * @throws {QueueFileInUseError} a live process holds it.
 * @throws {QueueFileError} the lock file cannot be made, read or taken over.
 */
function lockQueueFile(file, lockFile, fail) {
  for (let attempt = 0; attempt < 5; attempt++) {
    let pid;
    try {
      if (create(lockFile)) return;
      pid = holder(lockFile);
    } catch (err) {
      throw fail(`cannot create its lock file ${lockFile}`, err);
    }
    if (pid === undefined) continue; // given back meanwhile
    if (pid !== null && isAlive(pid)) throw inUse(file, lockFile, pid);
    try {
      fs.unlinkSync(lockFile); // no live owner (empty, or its process died): take it over
    } catch (err) {
      if (err.code !== 'ENOENT') throw fail(`cannot take over its lock file ${lockFile}`, err);
    }
  }
  throw inUse(file, lockFile, null);
}

/**
 * Gives the lock back: removes the lock file if it still names this process.
 * @param {string} lockFile
 */
function unlockQueueFile(lockFile) {
  try {
    if (holder(lockFile) === process.pid) fs.unlinkSync(lockFile);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
}

/**
 * @param {string} file
 * @param {string} lockFile
 * @param {number|null} pid
 * @returns {QueueFileInUseError}
 */
function inUse(file, lockFile, pid) {
  const by = pid !== null ? `process ${pid}` : 'another client';
  return new QueueFileInUseError(
    `queuePath ${JSON.stringify(file)} is in use by ${by} (lock file ${lockFile}): a persisted queue belongs to one client`,
    { path: file }
  );
}

module.exports = { QueueFileInUseError, lockQueueFile, unlockQueueFile, isAlive };
