'use strict';

/**
 * Streams and cancellation, sans-I/O (docs/protocol.md §15): the features a
 * connection negotiates, the rules its frames obey, the frames themselves,
 * and the credit counts both ends keep. The Node twin of
 * ipc_protocol/streams.py, with the same names (camelCase) and counts:
 *
 * - Credit is a producer's count of the items it may still send: the
 *   request's `window`, plus every `credit` granted, minus the items sent,
 *   never past MAX_WINDOW (HTTP/2's 31-bit window, RFC 9113 §6.9.1).
 * - Window is a consumer's: it grants, in one frame, the items its
 *   application took since its last grant once they reach half the window,
 *   so at most `size` items are ever in flight or buffered.
 */

const { buildMessage } = require('../envelope');
const { ErrorCode } = require('../errors');
const { LAME_DUCK, GOAWAY } = require('./restarts'); // the lame-duck and goaway notices (§13), independent too

const CANCEL = 'cancel';
const STREAMS = 'streams';
const BINARY = 'binary'; // attachments (§16), independent of the other two
/** What this implementation speaks, in the order a server names them (§15.1, §16.1). */
const FEATURES = Object.freeze([CANCEL, STREAMS, BINARY, LAME_DUCK, GOAWAY]);
const MAX_WINDOW = 2 ** 31 - 1;
/** Items a consumer grants when it opens a stream. */
const DEFAULT_WINDOW = 64;
/**
 * A producer lets its loop run other work (a macrotask turn) after this many
 * items sent in a row, or after this long, even when its iterator never
 * waits: however large the window, a stream never holds up the loop it runs on (§15.6).
 */
const SLICE_ITEMS = 256;
const SLICE_MS = 5;

const STREAM_TYPES = new Set(['stream_item', 'stream_end', 'credit']);
/** The message types of §15.2: a protocol checks them (flowProblem) before anyone routes them. */
const FLOW_TYPES = new Set([...STREAM_TYPES, 'cancel']);

/**
 * The features both sides speak, in `supported`'s order; `streams` only with
 * `cancel` (a consumer ends a stream early with a cancel).
 * @param {Iterable<string>} offered
 * @param {Iterable<string>} [supported]
 * @returns {string[]}
 */
function negotiate(offered, supported = FEATURES) {
  const wanted = new Set(offered);
  const granted = [...supported].filter((f) => wanted.has(f));
  if (granted.includes(STREAMS) && !granted.includes(CANCEL)) granted.splice(granted.indexOf(STREAMS), 1);
  return granted;
}

/**
 * Why `msg` (a frame of §15, or a request with `window`) may not be taken on
 * a connection granted `features`; null when it may.
 * @param {object} msg
 * @param {Set<string>} features
 * @returns {string|null}
 */
function flowProblem(msg, features) {
  const type = msg.message_type;
  if (type === 'request' || type === 'notification') {
    if (msg.window === undefined) return null;
    if (type === 'notification') return 'a notification cannot open a stream (window is for requests)';
    return features.has(STREAMS) ? null : 'streams were not negotiated in the handshake (features)';
  }
  if (STREAM_TYPES.has(type)) {
    if (!features.has(STREAMS)) return `${type}: streams were not negotiated in the handshake (features)`;
  } else if (type === 'cancel') {
    if (!features.has(CANCEL)) return 'cancel was not negotiated in the handshake (features)';
  } else {
    return null;
  }
  if (msg.reply_to === null) return `${type} without reply_to: it must name its request`;
  if (type === 'credit' && msg.window === undefined) return 'credit without window: it must say how many items it grants';
  return null;
}

/**
 * One item of the stream answering `request`.
 * @param {string} appId
 * @param {object} request
 * @param {unknown} payload
 * @returns {object}
 */
function streamItem(appId, request, payload) {
  return buildMessage('stream_item', appId, request.channel_id, payload, { reply_to: request.message_id });
}

/**
 * The normal end of the stream answering `request`.
 * @param {string} appId
 * @param {object} request
 * @returns {object}
 */
function streamEnd(appId, request) {
  return buildMessage('stream_end', appId, request.channel_id, null, { reply_to: request.message_id });
}

/**
 * `grant` more items for the stream of `requestId`.
 * @returns {object}
 */
function credit(appId, channel, requestId, grant) {
  return buildMessage('credit', appId, channel, null, { reply_to: requestId, window: grant });
}

/**
 * The requester gives up on `requestId`; `reason` is an error code.
 * @returns {object}
 */
function cancel(appId, channel, requestId, reason = ErrorCode.CANCELLED) {
  return buildMessage('cancel', appId, channel, { reason }, { reply_to: requestId });
}

/**
 * The `reason` a cancel carries (`cancelled` when it says none).
 * @param {object} msg
 * @returns {string}
 */
function cancelReason(msg) {
  const reason = msg.payload !== null && typeof msg.payload === 'object' ? msg.payload.reason : undefined;
  return typeof reason === 'string' && reason.length > 0 ? reason : ErrorCode.CANCELLED;
}

/** The items a producer may still send (§15.3 item 2). */
class Credit {
  /** @param {number} window */
  constructor(window) {
    this.available = window;
  }

  /**
   * Adds `n`; false (and nothing added) past MAX_WINDOW.
   * @param {number} n
   * @returns {boolean}
   */
  grant(n) {
    if (this.available + n > MAX_WINDOW) return false;
    this.available += n;
    return true;
  }

  /**
   * Spends one for an item; false when none is left (the item may not go).
   * @returns {boolean}
   */
  take() {
    if (this.available <= 0) return false;
    this.available -= 1;
    return true;
  }
}

/** A consumer's flow control: the grants its application's pace earns. */
class Window {
  /** @param {number} [size] */
  constructor(size = DEFAULT_WINDOW) {
    if (!Number.isInteger(size) || size < 1 || size > MAX_WINDOW) {
      throw new RangeError(`window must be an integer from 1 to ${MAX_WINDOW}, got ${String(size)}`);
    }
    this.size = size;
    this._taken = 0;
    this._every = Math.max(1, Math.floor(size / 2));
  }

  /**
   * The application took one item: the grant to send now (0: none yet).
   * @returns {number}
   */
  taken() {
    this._taken += 1;
    if (this._taken < this._every) return 0;
    const grant = this._taken;
    this._taken = 0;
    return grant;
  }
}

module.exports = {
  CANCEL,
  STREAMS,
  BINARY,
  FEATURES,
  FLOW_TYPES,
  MAX_WINDOW,
  DEFAULT_WINDOW,
  SLICE_ITEMS,
  SLICE_MS,
  Credit,
  Window,
  negotiate,
  flowProblem,
  streamItem,
  streamEnd,
  credit,
  cancel,
  cancelReason
};
