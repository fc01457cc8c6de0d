'use strict';

/**
 * The single-owner lock of a queue file, shared with the Python client
 * (ipc_client/queue_lock.py), so neither opens a file the other holds: two
 * owners would send every message twice (docs/resilience.md §4).
 *
 * `${queuePath}.lock` names its owner: `PID` (Node) or `py:PID` (Python,
 * which also holds `flock` on it; Node cannot, and reads `py:PID` as a pid).
 * It is held while that process is alive; a lock file with no pid (empty, as
 * a 2.0.0 Python client left it) or a dead one is free. A lock naming this
 * process is held only if this process took it (`held`): a restarted
 * container's pid 1 finds its own pid in the lock its crashed run left.
 * A new lock file is made with the pid already in it (a temporary file
 * linked into place); the owner removes it when it gives it back.
 *
 * A stale lock is never removed blindly: the check and the replacement run
 * under `${lock}.takeover` (made exclusively, naming its holder's pid, so
 * one left by a process that died is broken), and the taker re-reads the
 * lock under it and gives up if the file or its content changed since it
 * judged it stale. Python takes over under the same file.
 */

const fs = require('node:fs');
const { QueueFileError } = require('./errors');

/** Lock files this process (this module instance) holds. */
const held = new Set();
/** How long a live takeover may hold the mutex before a taker gives up, ms: it is held for microseconds. */
const MUTEX_WAIT_MS = 2000;
/** A mutex older than this was left by a taker that died, whatever process its pid now names (reused). */
const MUTEX_STALE_MS = 10_000;
/** The largest pid (pid_t is a 32-bit int): a larger number names no process, as Python's MAX_PID. */
const MAX_PID = 2 ** 31 - 1;
const pause = new Int32Array(new SharedArrayBuffer(4));

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
  if (!(Number.isInteger(pid) && pid > 0 && pid <= MAX_PID)) return false; // process.kill throws ERR_INVALID_ARG_TYPE, which read as alive
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code !== 'ESRCH';
  }
}

/**
 * Makes `file` with this process's pid in it, in one step.
 * @param {string} file
 * @returns {boolean} false: there is one already.
 */
function create(file) {
  const tmp = `${file}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
  fs.writeFileSync(tmp, String(process.pid), { flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if (err.code === 'EEXIST') return false;
    if (!['EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP'].includes(err.code)) throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  try {
    fs.writeFileSync(file, String(process.pid), { flag: 'wx' }); // no hard links here: create, then write
    return true;
  } catch (err) {
    if (err.code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * What a lock file says, read through one descriptor: its inode and text;
 * undefined when it is gone.
 * @param {string} file
 * @returns {{ino: number, dev: number, text: string}|undefined}
 */
function read(file) {
  let fd;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { ino, dev } = fs.fstatSync(fd);
    return { ino, dev, text: fs.readFileSync(fd, 'utf8').trim() };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The pid a lock file's text names (`PID` or Python's `py:PID`, 1 to
 * MAX_PID), null when none: a lock naming 99999999999999999999 kept the
 * queue file "in use by process 100000000000000000000" for good.
 * @param {string} text
 * @returns {number|null}
 */
function pidOf(text) {
  const m = /^(?:py:)?([0-9]+)$/.exec(text);
  const pid = m ? Number(m[1]) : 0;
  return pid > 0 && pid <= MAX_PID ? pid : null;
}

/**
 * The live process holding a lock file that names `pid`, or null: a lock
 * naming this process is held only if this process took it.
 * @param {string} lockFile
 * @param {number|null} pid
 * @returns {number|null}
 */
function liveHolder(lockFile, pid) {
  if (pid === null) return null;
  if (pid === process.pid) return held.has(lockFile) || writtenSinceStart(lockFile) ? pid : null;
  return isAlive(pid) ? pid : null;
}

/**
 * Whether `file` was written since this process started. A lock naming this
 * process that this module did not take was then taken by another instance
 * of it in this process (a worker thread, a second copy of the package),
 * which holds it; one older than the process is a crashed run's.
 * @param {string} file
 * @returns {boolean}
 */
function writtenSinceStart(file) {
  try {
    return fs.statSync(file).mtimeMs >= Date.now() - process.uptime() * 1000;
  } catch {
    return false;
  }
}

/**
 * Whether a takeover mutex was left by a taker that died: its pid names no
 * live process, or it is older than any live takeover (its pid reused).
 * @param {string} mutex
 * @param {string} text
 * @returns {boolean}
 */
function abandoned(mutex, text) {
  if (liveHolder(mutex, pidOf(text)) === null) return true;
  try {
    return fs.statSync(mutex).mtimeMs < Date.now() - MUTEX_STALE_MS;
  } catch {
    return false;
  }
}

/**
 * Takes `${lockFile}.takeover`, breaking one whose holder died.
 * @param {string} mutex
 * @returns {boolean} false: a live taker kept it past MUTEX_WAIT_MS.
 */
function takeMutex(mutex) {
  const deadline = Date.now() + MUTEX_WAIT_MS;
  while (!create(mutex)) {
    const seen = read(mutex);
    if (seen !== undefined && abandoned(mutex, seen.text)) {
      breakMutex(mutex, seen);
      continue;
    }
    if (Date.now() > deadline) return false;
    Atomics.wait(pause, 0, 0, 1);
  }
  return true;
}

/**
 * Removes a mutex left by a dead process: moved aside first, so that one
 * made meanwhile by a live taker is put back rather than deleted.
 * @param {string} mutex
 * @param {{ino: number, dev: number}} seen
 */
function breakMutex(mutex, seen) {
  const aside = `${mutex}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.stale`;
  try {
    fs.renameSync(mutex, aside);
  } catch (err) {
    if (err.code === 'ENOENT') return;
    throw err;
  }
  const moved = fs.statSync(aside);
  if (moved.ino !== seen.ino || moved.dev !== seen.dev) {
    try {
      fs.linkSync(aside, mutex);
    } catch {
      // another taker made one meanwhile: it holds the mutex
    }
  }
  fs.rmSync(aside, { force: true });
}

/**
 * Gives the mutex back if it is still ours.
 * @param {string} mutex
 */
function dropMutex(mutex) {
  try {
    if (pidOf(read(mutex)?.text ?? '') === process.pid) fs.unlinkSync(mutex);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
}

/**
 * Replaces a stale lock file with ours, under the mutex, if it is still the
 * one judged stale (same inode, same text: a Python client takes over in place).
 * @param {string} lockFile
 * @param {{ino: number, dev: number, text: string}} seen
 * @returns {boolean|null} true: ours; false: it changed, look again; null: the mutex stayed taken.
 */
function takeOver(lockFile, seen) {
  const mutex = `${lockFile}.takeover`;
  if (!takeMutex(mutex)) return null;
  try {
    const now = read(lockFile);
    if (now === undefined || now.ino !== seen.ino || now.dev !== seen.dev || now.text !== seen.text) return false;
    const tmp = `${lockFile}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
    fs.writeFileSync(tmp, String(process.pid), { flag: 'wx' });
    try {
      fs.renameSync(tmp, lockFile); // atomic: the path never goes missing, so no one creates one meanwhile
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    return true;
  } finally {
    dropMutex(mutex);
  }
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
    let seen;
    try {
      if (create(lockFile)) {
        held.add(lockFile);
        return;
      }
      seen = read(lockFile);
    } catch (err) {
      throw fail(`cannot create its lock file ${lockFile}`, err);
    }
    if (seen === undefined) continue; // given back meanwhile
    const pid = liveHolder(lockFile, pidOf(seen.text));
    if (pid !== null) throw inUse(file, lockFile, pid);
    let took;
    try {
      took = takeOver(lockFile, seen); // no live owner (empty, or its process died)
    } catch (err) {
      throw fail(`cannot take over its lock file ${lockFile}`, err);
    }
    if (took === null) break;
    if (took) {
      held.add(lockFile);
      return;
    }
  }
  throw inUse(file, lockFile, null);
}

/**
 * Gives the lock back: removes the lock file if it still names this process;
 * one that cannot be removed (its directory gone read-only) is emptied, as
 * queue_lock.py does: empty, it names no holder, so it is free. Never throws.
 * @param {string} lockFile
 * @returns {Error|null} why the lock, still naming this process, could be neither removed nor emptied.
 */
function unlockQueueFile(lockFile) {
  if (!held.delete(lockFile)) return null;
  try {
    if (pidOf(read(lockFile)?.text ?? '') === process.pid) fs.unlinkSync(lockFile);
    return null;
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    try {
      fs.truncateSync(lockFile, 0);
      return null;
    } catch {
      return err;
    }
  }
}

/**
 * @param {string} file
 * @param {string} lockFile
 * @param {number|null} pid
 * @returns {QueueFileInUseError}
 */
function inUse(file, lockFile, pid) {
  const by = pid !== null ? `process ${pid}` : `another client (taking it over: ${lockFile}.takeover)`;
  return new QueueFileInUseError(
    `queuePath ${JSON.stringify(file)} is in use by ${by} (lock file ${lockFile}): a persisted queue belongs to one client`,
    { path: file }
  );
}

module.exports = { QueueFileInUseError, lockQueueFile, unlockQueueFile, isAlive };
