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
 *
 * Every failure of the file is a QueueFileError naming the path (its cause
 * the fs error): a directory that cannot be made, a file that is not a
 * queue file (refused, left untouched), a read, a write (an append cut short
 * is cut off again, so the file stays readable). A remove record that could
 * not be written goes out with the next write that works, so a message sent
 * meanwhile is not sent again by a later load.
 */

const fs = require('node:fs');
const path = require('node:path');
const { QueueFileError } = require('./errors');
const { lockQueueFile, unlockQueueFile } = require('./queue_lock');
const { HEADER_BYTES, MAX_RECORD_BYTES, encodeRecord, parseRecord, isQueueData, resync } = require('./queue_records');

/**
 * @typedef {object} StoredMessage
 * @property {string} id the message id.
 * @property {number} priority
 * @property {number} expiresAt wall-clock expiry, epoch ms.
 * @property {object} message the envelope to send.
 */

/**
 * An append-only file of queued messages, owned by one store at a time:
 * load() takes `${file}.lock` (holding the owner's pid, as a Python client's
 * does: lib/queue_lock.js), close() gives it back. A lock that names no live
 * process is taken over.
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
    this._size = 0; // bytes in the file as this store wrote it: an append cut short is cut back to it
    this._unremoved = new Set(); // ids whose remove record could not be written yet
  }

  /**
   * A QueueFileError naming the option and the file.
   * @param {string} what
   * @param {unknown} [cause]
   * @returns {QueueFileError}
   * @private
   */
  _error(what, cause) {
    const text = `queuePath ${JSON.stringify(this.file)}${what.startsWith('is ') ? ' ' : ': '}${what}`;
    return new QueueFileError(cause === undefined ? text : `${text}: ${cause && cause.message}`, { path: this.file, cause });
  }

  /**
   * Takes the file's lock; a no-op when this store holds it.
   * @throws {QueueFileInUseError} another live process (or store), Python or Node, holds it.
   * @throws {QueueFileError} the directory or the lock file cannot be made.
   */
  lock() {
    if (this._locked) return;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
    } catch (err) {
      throw this._error('cannot create its directory', err);
    }
    lockQueueFile(this.file, this.lockFile, (what, cause) => this._error(what, cause));
    this._locked = true;
  }

  /**
   * Gives the lock back (the file stays for the next owner), after a last
   * try at the remove records still owed, as Python's close() makes one at
   * its deletes: what stays owed is sent again by the next start (at least once).
   * @returns {QueueFileError|null} the lock file, still naming this process, could be neither removed nor emptied.
   */
  close() {
    if (!this._locked) return null;
    if (this._unremoved.size > 0) {
      try {
        this._append(Buffer.alloc(0));
      } catch {
        // reported when the remove failed; the next owner sends those messages again
      }
    }
    return this._release();
  }

  /**
   * Gives the lock back, writing nothing.
   * @returns {QueueFileError|null} see close().
   * @private
   */
  _release() {
    this._locked = false;
    const err = unlockQueueFile(this.lockFile);
    return err === null ? null : this._error(`cannot give back its lock file ${this.lockFile} (it still names this process)`, err);
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
   * On any failure the lock is given back.
   * @returns {StoredMessage[]}
   * @throws {QueueFileInUseError} the file is locked by another owner (see lock()).
   * @throws {QueueFileError} it cannot be read or rewritten, or is not a queue file.
   */
  load() {
    this.lock();
    try {
      return this._load();
    } catch (err) {
      const failure = err instanceof QueueFileError ? err : this._error('cannot read', err);
      this._release(); // a lock file that cannot be removed: why the load failed is the error to report
      throw failure;
    }
  }

  /**
   * load() once the lock is held.
   * @returns {StoredMessage[]}
   * @private
   */
  _load() {
    let data;
    try {
      data = fs.readFileSync(this.file);
    } catch (err) {
      if (err.code !== 'ENOENT') throw this._error('cannot read', err);
      data = Buffer.alloc(0);
    }
    if (!isQueueData(data)) throw this._error(`is not a queue file (${data.length} bytes that are no queue records; left as they are)`);
    this._unremoved.clear();
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
    this._size = data.length;
    if (offset < data.length || corrupt > 0 || this.expired > 0 || this._dead() > this._live.size) this.compact();
    return out;
  }

  /**
   * Appends a message; on return it is on disk (in the OS's hands).
   * @param {StoredMessage} entry
   * @throws {QueueFileError} it could not be written (nothing of it stays in the file).
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
   * @throws {QueueFileError} the record could not be written: it goes out with the next write that works.
   */
  remove(id) {
    if (!this._locked) return;
    if (!this._live.delete(id)) return;
    this._unremoved.add(id);
    this._append(Buffer.alloc(0));
    if (this._dead() > this._live.size) this.compact();
  }

  /**
   * Rewrites the file with the live records only.
   * @throws {QueueFileError} the file stays as it was.
   */
  compact() {
    const tmp = `${this.file}.tmp`;
    const data = Buffer.concat([...this._live.values()]);
    try {
      const fd = fs.openSync(tmp, 'w');
      try {
        fs.writeSync(fd, data);
        fs.fsyncSync(fd); // on disk before the rename makes it the file
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, this.file);
    } catch (err) {
      fs.rmSync(tmp, { force: true, recursive: false, maxRetries: 0 });
      throw this._error('cannot write', err);
    }
    this._records = this._live.size;
    this._size = data.length;
    this._unremoved.clear(); // their adds are gone with the rest
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
   * Appends `bytes` (one record, or none) after the remove records still owed.
   * @param {Buffer} bytes
   * @private
   */
  _append(bytes) {
    const owed = [...this._unremoved].map((id) => encodeRecord({ op: 'remove', id }));
    const all = owed.length === 0 ? bytes : Buffer.concat([...owed, bytes]);
    try {
      fs.appendFileSync(this.file, all);
    } catch (err) {
      try {
        fs.truncateSync(this.file, this._size); // a write cut short (a full disk): its start would read as corruption
      } catch {
        // not the file any more (a directory in its place...): nothing of ours to cut
      }
      throw this._error('cannot write', err);
    }
    this._size += all.length;
    this._records += owed.length + (bytes.length > 0 ? 1 : 0);
    this._unremoved.clear();
  }
}

module.exports = { QueueStore, encodeRecord };
