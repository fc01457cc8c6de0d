'use strict';

/**
 * Random ids for trace context (docs/tracing.md §6), the mirror of
 * ipc_client/trace_ids.py: span and trace ids drawn from
 * crypto.randomBytes 4 KiB at a time, since most messages need one.
 */

const crypto = require('node:crypto');

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
/** Random bytes are drawn in batches: 512 span ids per crypto.randomBytes call. */
const BATCH_BYTES = 4096;

let pool = '';
let poolAt = 0;

/**
 * A random 8-byte span id in hex.
 * @returns {string}
 */
function newSpanId() {
  for (;;) {
    if (poolAt >= pool.length) {
      pool = crypto.randomBytes(BATCH_BYTES).toString('hex');
      poolAt = 0;
    }
    const id = pool.slice(poolAt, poolAt + 16);
    poolAt += 16;
    if (id !== ZERO_SPAN) return id; // all zeros is invalid (W3C trace context §3.2.2.4)
  }
}

/**
 * A random 16-byte trace id in hex.
 * @returns {string}
 */
function newTraceId() {
  return newSpanId() + newSpanId();
}

module.exports = { newSpanId, newTraceId, ZERO_TRACE, ZERO_SPAN };
