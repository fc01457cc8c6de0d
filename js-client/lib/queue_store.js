'use strict';

/**
 * Persistence of queued one-way messages (docs/resilience.md §4,
 * "Persistence"): an append-only file of length-prefixed records, so a
 * message accepted while offline survives a restart of the process.
 *
 * Each record is a 4-byte big-endian length and a UTF-8 JSON object:
 * `{"op":"add","id","priority","expires_at","message"}` or
 * `{"op":"remove","id"}`. Appending never rewrites what is there, so a
 * crash loses at most the record being written; a torn tail is cut off on
 * load. Once more than half of the records are dead (removed, or adds whose
 * remove follows), the file is rewritten with the live ones through a
 * temporary file and a rename, which is atomic on POSIX file systems.
 *
 * Synchronous file calls on purpose: a one-way call completes only once its
 * message is on disk, and they are made only while the client is offline.
 */

const fs = require('node:fs');
const path = require('node:path');

const HEADER_BYTES = 4;
/** A record longer than this is corruption, not data (the frame limit is 4 GiB, a queue record far less). */
const MAX_RECORD_BYTES = 256 * 1024 * 1024;

/**
 * @typedef {object} StoredMessage
 * @property {string} id the message id.
 * @property {number} priority
 * @property {number} expiresAt wall-clock expiry, epoch ms.
 * @property {object} message the envelope to send.
 */

/**
 * Encodes one record.
 * @param {object} record
 * @returns {Buffer}
 * @private
 */
function encodeRecord(record) {
  const body = Buffer.from(JSON.stringify(record), 'utf8');
  const out = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, HEADER_BYTES);
  return out;
}

/**
 * Whether a process is alive (EPERM: it is, under another user).
 * @param {number} pid
 * @returns {boolean}
 * @private
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
 * Parses one record body: an add or a remove, else null.
 * @param {Buffer} data
 * @param {number} start
 * @param {number} end
 * @returns {object|null}
 * @private
 */
function parseRecord(data, start, end) {
  let record;
  try {
    record = JSON.parse(data.toString('utf8', start, end));
  } catch {
    return null;
  }
  if (record === null || typeof record !== 'object' || typeof record.id !== 'string') return null;
  return record.op === 'add' || record.op === 'remove' ? record : null;
}

/**
 * The offset of the next readable record at or after `from`, or -1.
 * @param {Buffer} data
 * @param {number} from
 * @returns {number}
 * @private
 */
function resync(data, from) {
  for (let at = from; at + HEADER_BYTES <= data.length; at++) {
    const length = data.readUInt32BE(at);
    const end = at + HEADER_BYTES + length;
    if (length === 0 || length > MAX_RECORD_BYTES || end > data.length) continue;
    if (parseRecord(data, at + HEADER_BYTES, end) !== null) return at;
  }
  return -1;
}

/**
 * An append-only file of queued messages, owned by one store at a time:
 * load() takes `${file}.lock` (holding the owner's pid), close() gives it
 * back. A lock left by a dead process is taken over.
 */
class QueueStore {
  /**
   * @param {string} file the file; its directory is created if missing.
   * @param {{now?: () => number}} [options] wall clock in epoch ms (injectable for tests).
   */
  constructor(file, { now = Date.now } = {}) {
    this.file = path.resolve(file);
    this._now = now;
    this._live = new Map(); // id -> encoded add record
    this._records = 0; // records in the file, live or dead
    /** Messages the last load() found expired (never sent: the caller counts them as dropped). */
    this.expired = 0;
    /** Unreadable stretches the last load() skipped in the middle of the file (each lost at least one record). */
    this.corrupt = 0;
    this.lockFile = `${this.file}.lock`;
    this._locked = false;
  }

  /**
   * Takes the file's lock; a no-op when this store holds it.
   * @throws {Error} another live process (or store) holds it; `code` 'EQUEUELOCKED'.
   */
  lock() {
    if (this._locked) return;
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = fs.openSync(this.lockFile, 'wx');
        try {
          fs.writeSync(fd, String(process.pid));
        } finally {
          fs.closeSync(fd);
        }
        this._locked = true;
        return;
      } catch (err) {
        if (err.code !== 'EEXIST') throw err;
      }
      let text;
      try {
        text = fs.readFileSync(this.lockFile, 'utf8').trim();
      } catch (err) {
        if (err.code === 'ENOENT') continue; // released meanwhile
        throw err;
      }
      const pid = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(pid > 0) || isAlive(pid)) {
        const err = new Error(
          `queue file ${this.file} is in use by ${pid > 0 ? `process ${pid}` : 'another process'} (lock file ${this.lockFile}): a persisted queue belongs to one client`
        );
        err.code = 'EQUEUELOCKED';
        throw err;
      }
      try {
        fs.unlinkSync(this.lockFile); // its owner died: take it over
      } catch (err) {
        if (err.code !== 'ENOENT') throw err;
      }
    }
    const err = new Error(`could not take the lock ${this.lockFile} of queue file ${this.file}`);
    err.code = 'EQUEUELOCKED';
    throw err;
  }

  /**
   * Gives the lock back (the file stays for the next owner).
   */
  close() {
    if (!this._locked) return;
    this._locked = false;
    try {
      fs.unlinkSync(this.lockFile);
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
    }
  }

  /**
   * Whether this store holds the file's lock.
   * @returns {boolean}
   */
  get locked() {
    return this._locked;
  }

  /**
   * Number of live messages.
   * @returns {number}
   */
  get size() {
    return this._live.size;
  }

  /**
   * Takes the lock, then reads the file: the unexpired messages in the
   * order they were added. Expired messages are dropped from the file at
   * once (so each is counted once, in `expired`); removed ones when they
   * make up more than half of it. A torn last record is cut off; an
   * unreadable stretch in the middle is skipped up to the next readable
   * record and counted in `corrupt`.
   * @returns {StoredMessage[]}
   * @throws {Error} the file is locked by another owner (see lock()).
   */
  load() {
    this.lock();
    let data;
    try {
      data = fs.readFileSync(this.file);
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
      data = Buffer.alloc(0);
    }
    const adds = new Map();
    let offset = 0;
    let records = 0;
    let corrupt = 0;
    while (offset + HEADER_BYTES <= data.length) {
      const length = data.readUInt32BE(offset);
      const end = offset + HEADER_BYTES + length;
      const record = length === 0 || length > MAX_RECORD_BYTES || end > data.length ? null : parseRecord(data, offset + HEADER_BYTES, end);
      if (record === null) {
        const next = resync(data, offset + 1);
        if (next < 0) {
          // nothing readable after it: a torn last record (a crash mid-write), unless its length was nonsense
          if (length === 0 || length > MAX_RECORD_BYTES || end <= data.length) corrupt++;
          break;
        }
        corrupt++;
        offset = next;
        continue;
      }
      if (record.op === 'add') {
        adds.set(record.id, { record, bytes: data.subarray(offset, end) });
      } else {
        adds.delete(record.id);
      }
      records++;
      offset = end;
    }
    const t = this._now();
    const out = [];
    this._live.clear();
    this.expired = 0;
    this.corrupt = corrupt;
    for (const [id, { record, bytes }] of adds) {
      if (!(record.expires_at > t)) {
        this.expired++;
        continue;
      }
      this._live.set(id, Buffer.from(bytes));
      out.push({ id, priority: record.priority, expiresAt: record.expires_at, message: record.message });
    }
    this._records = records;
    if (offset < data.length || corrupt > 0 || this.expired > 0 || this._dead() > this._live.size) this.compact();
    return out;
  }

  /**
   * Appends a message; on return it is on disk (in the OS's hands).
   * @param {StoredMessage} entry
   */
  add({ id, priority, expiresAt, message }) {
    const bytes = encodeRecord({ op: 'add', id, priority, expires_at: expiresAt, message });
    this._append(bytes);
    this._live.set(id, bytes);
  }

  /**
   * Records that a message left the queue (sent or dropped). Unknown ids
   * are ignored, and so is every id once close() gave the file away (the
   * message stays for the next owner: at least once).
   * @param {string} id
   */
  remove(id) {
    if (!this._locked) return;
    if (!this._live.delete(id)) return;
    this._append(encodeRecord({ op: 'remove', id }));
    if (this._dead() > this._live.size) this.compact();
  }

  /**
   * Rewrites the file with the live records only.
   */
  compact() {
    const tmp = `${this.file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, Buffer.concat([...this._live.values()]));
      fs.fsyncSync(fd); // on disk before the rename makes it the file
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
    this._records = this._live.size;
  }

  /**
   * Records in the file that no longer hold a live message.
   * @returns {number}
   * @private
   */
  _dead() {
    return this._records - this._live.size;
  }

  /**
   * @param {Buffer} bytes
   * @private
   */
  _append(bytes) {
    fs.appendFileSync(this.file, bytes);
    this._records++;
  }
}

module.exports = { QueueStore, encodeRecord };
