'use strict';

/**
 * The record format of the queue file (lib/queue_store.js): a 4-byte
 * big-endian length and a UTF-8 JSON object, `add` or `remove`. Pure
 * functions on buffers, so the reading rules (a torn tail, an unreadable
 * stretch, a file that is no queue file) are tested on bytes alone.
 */

const HEADER_BYTES = 4;
/** A record longer than this is corruption, not data (the frame limit is 4 GiB, a queue record far less). */
const MAX_RECORD_BYTES = 256 * 1024 * 1024;
/** How every record's body begins (encodeRecord() writes `op` first): what tells a queue file from another file. */
const RECORD_START = Buffer.from('{"op":"');

/**
 * Encodes one record.
 * @param {object} record
 * @returns {Buffer}
 */
function encodeRecord(record) {
  const body = Buffer.from(JSON.stringify(record), 'utf8');
  const out = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, HEADER_BYTES);
  return out;
}

/**
 * Parses one record body: an add or a remove, else null.
 * @param {Buffer} data
 * @param {number} start
 * @param {number} end
 * @returns {object|null}
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
 * Whether `data` can be a queue file: empty, or starting with a record (a
 * torn one too, cut short by a crash). Another file is refused, not rewritten.
 * @param {Buffer} data
 * @returns {boolean}
 */
function isQueueData(data) {
  if (data.length === 0) return true;
  if (data[0] > MAX_RECORD_BYTES / 2 ** 24) return false; // a length prefix over the limit
  if (data.length >= HEADER_BYTES && data.readUInt32BE(0) === 0) return false;
  const body = data.subarray(HEADER_BYTES, HEADER_BYTES + RECORD_START.length);
  return RECORD_START.subarray(0, body.length).equals(body);
}

/**
 * The offset of the next readable record at or after `from`, or -1.
 * @param {Buffer} data
 * @param {number} from
 * @returns {number}
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

module.exports = { HEADER_BYTES, MAX_RECORD_BYTES, encodeRecord, parseRecord, isQueueData, resync };
