'use strict';

/**
 * What of a received trace context a handler's calls pass on
 * (docs/tracing.md §1).
 *
 * One rule in both clients (ipc_client/trace_state.py mirrors it), with
 * OpenTelemetry or without, so the SDKs' own parsers (which differ:
 * Python's drops a whole `tracestate` for one bad member, Node's keeps the
 * valid ones) only ever see what already passes them unchanged.
 *
 * W3C Trace Context: a vendor receiving `tracestate` MUST send it on, MAY
 * drop invalid members and duplicate keys, keeps at most 32 members, and
 * when it shortens one for its size removes whole members, those over 128
 * characters first, then from the right, and SHOULD pass on at least 512
 * characters. Flags it does not understand it MUST set to zero: these
 * clients follow Level 1, which defines only `sampled`.
 */

const MAX_MEMBERS = 32;
/** Characters passed on, at most (the W3C's "at least 512"). */
const MAX_TRACESTATE = 512;
const LONG_MEMBER = 128; // removed first when shortening
// The Level-1 key and value grammar, which both OpenTelemetry APIs check.
const MEMBER_RE = new RegExp(
  '^(?:[a-z][_0-9a-z\\-*/]{0,255}|[a-z0-9][_0-9a-z\\-*/]{0,240}@[a-z][_0-9a-z\\-*/]{0,13})' +
    '=[\\x20-\\x2b\\x2d-\\x3c\\x3e-\\x7e]{0,255}[\\x21-\\x2b\\x2d-\\x3c\\x3e-\\x7e]$'
);

/**
 * `01` when `flags` (two hex digits) has the sampled bit, else `00`: every
 * other bit, the Level-2 random one included, is sent as zero.
 * @param {string} flags
 * @returns {string}
 */
function passedFlags(flags) {
  return parseInt(flags, 16) & 1 ? '01' : '00';
}

/**
 * The valid members of a received `tracestate`, in order, a repeated key's
 * first (leftmost, the latest) only, at most 32, cut to 512 characters by
 * whole members; null when nothing is left.
 * @param {unknown} value
 * @returns {string|null}
 */
function passedTracestate(value) {
  if (typeof value !== 'string') return null;
  const members = [];
  const keys = new Set();
  for (const raw of value.split(',')) {
    const member = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    if (member === '' || !MEMBER_RE.test(member)) continue; // empty, or off the grammar: dropped alone
    const key = member.slice(0, member.indexOf('='));
    if (keys.has(key)) continue;
    keys.add(key);
    members.push(member);
    if (members.length === MAX_MEMBERS) break; // the right-most ones go
  }
  let size = members.reduce((n, m) => n + m.length + 1, -1);
  while (size > MAX_TRACESTATE) {
    let at = members.length - 1;
    for (let i = members.length - 1; i >= 0; i--) {
      if (members[i].length > LONG_MEMBER) {
        at = i;
        break;
      }
    }
    size -= members.splice(at, 1)[0].length + 1;
  }
  return members.length > 0 ? members.join(',') : null;
}

module.exports = { MAX_MEMBERS, MAX_TRACESTATE, passedFlags, passedTracestate };
