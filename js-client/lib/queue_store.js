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
 * An append-only file of queued messages.
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
  }

  /**
   * Number of live messages.
   * @returns {number}
   */
  get size() {
    return this._live.size;
  }

  /**
   * Reads the file: the unexpired messages in the order they were added.
   * Expired and removed messages are dropped from the file (compaction)
   * when they make up more than half of it; a torn last record is cut off.
   * How many had expired is left in `expired`.
   * @returns {StoredMessage[]}
   */
  load() {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
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
    while (offset + HEADER_BYTES <= data.length) {
      const length = data.readUInt32BE(offset);
      const end = offset + HEADER_BYTES + length;
      if (length === 0 || length > MAX_RECORD_BYTES || end > data.length) break;
      let record;
      try {
        record = JSON.parse(data.toString('utf8', offset + HEADER_BYTES, end));
      } catch {
        break;
      }
      if (record && record.op === 'add' && typeof record.id === 'string') {
        adds.set(record.id, { record, bytes: data.subarray(offset, end) });
      } else if (record && record.op === 'remove') {
        adds.delete(record.id);
      }
      records++;
      offset = end;
    }
    const t = this._now();
    const out = [];
    this._live.clear();
    this.expired = 0;
    for (const [id, { record, bytes }] of adds) {
      if (!(record.expires_at > t)) {
        this.expired++;
        continue;
      }
      this._live.set(id, Buffer.from(bytes));
      out.push({ id, priority: record.priority, expiresAt: record.expires_at, message: record.message });
    }
    this._records = records;
    if (offset < data.length || this._dead() > this._live.size) this.compact();
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
   * Records that a message left the queue (sent or dropped). Unknown ids are ignored.
   * @param {string} id
   */
  remove(id) {
    if (!this._live.delete(id)) return;
    this._append(encodeRecord({ op: 'remove', id }));
    if (this._dead() > this._live.size) this.compact();
  }

  /**
   * Rewrites the file with the live records only.
   */
  compact() {
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, Buffer.concat([...this._live.values()]));
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
