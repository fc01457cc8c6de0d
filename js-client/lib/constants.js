'use strict';

/**
 * Protocol constants and the client's default options.
 *
 * Every duration is in milliseconds and every size in bytes; the names of the
 * protocol constants carry their unit. `DEFAULTS` is the single place where a
 * default lives: `parseOptions()` merges it with the caller's options.
 */

const PROTOCOL_VERSION = 2;
// One version: the package's own (tests/test_packaging.py checks it equals Python's).
const CLIENT_VERSION = require('../package.json').version;
const CLIENT_NAME = `ipc-bridge-node/${CLIENT_VERSION}`;

const SYSTEM_CHANNEL = 'system';
const SERVICES_CHANNEL = '$sys.services';
const RESERVED_PREFIXES = Object.freeze(['system', '$sys']);
const MAX_CHANNEL_LENGTH = 512;
/** The longest appId, connectionId and user a connect may name, in code points (docs/protocol.md §3 item 12). */
const MAX_CONNECT_ID_LENGTH = 256;

const HEADER_SIZE_BYTES = 4;
const MAX_FRAME_LIMIT_BYTES = 2 ** 32 - 1; // what a uint32 length prefix can express
const DEFAULT_MAX_FRAME_SIZE_BYTES = 16 * 1024 * 1024; // docs/protocol.md §1 and §12
/** The shortest heartbeat interval (and timeout) accepted, as the server's (docs/protocol.md §9.5). */
const MIN_HEARTBEAT_INTERVAL_MS = 10;
/** setTimeout's ceiling (a longer one fires at once): a call's longer deadline waits in steps (lib/long_timer.js). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The seven fields of protocol version 1, always written, in canonical order (§1.2). */
const V1_FIELDS = Object.freeze([
  'message_id',
  'app_id',
  'channel_id',
  'message_type',
  'payload',
  'timestamp',
  'reply_to'
]);

const MESSAGE_TYPES = Object.freeze([
  'request',
  'response',
  'notification',
  'publish',
  'subscribe',
  'unsubscribe',
  // Streams and cancellation, when negotiated (docs/protocol.md §15).
  'stream_item',
  'stream_end',
  'credit',
  'cancel'
]);

const DEFAULTS = Object.freeze({
  host: 'localhost',
  port: 8888,
  /** Time allowed for TCP connect plus the handshake. */
  connectTimeout: 10_000,
  /** Reconnect automatically after an unexpected disconnection. */
  reconnect: true,
  /** Consecutive failed attempts before giving up ('reconnect_failed'); Infinity never gives up. */
  maxRetries: Infinity,
  /** First backoff delay; grows by `multiplier` per attempt up to `maxDelay`. */
  initialDelay: 500,
  /** Cap on any backoff delay. */
  maxDelay: 30_000,
  /** Growth factor of the backoff delay per attempt. */
  multiplier: 2,
  /** Random spread applied to each delay: 0.5 means delay * [0.5, 1.5). */
  jitter: 0.5,
  /** Ping after this much silence; null uses the server's advertised value (§9). */
  heartbeatInterval: null,
  /** Declare the connection dead after this much silence; null = 2 x interval. */
  heartbeatTimeout: null,
  /** Default deadline of a call, time spent in the offline queue included. */
  requestTimeout: 30_000,
  /** Offline queue capacity in messages; 0 disables queueing (calls fail fast). */
  queueMaxSize: 1000,
  /** Offline queue capacity in bytes of encoded frames. */
  queueMaxBytes: 8 * 1024 * 1024,
  /** What a full offline queue does: 'reject', 'drop_oldest' or 'drop_lowest_priority'. */
  queueOverflow: 'reject',
  /** Append-only file that persists queued one-way messages across restarts; null = memory only. */
  queuePath: null,
  /** Default per-call policy while not connected: 'queue' or 'fail'. */
  onDisconnect: 'queue',
  /** Circuit breaker on sendRequest: null (off), true (defaults) or CircuitBreakerOptions. */
  circuitBreaker: null,
  /** Local cap on frame size; null uses the server's advertised max_frame_size. */
  maxFrameSize: null,
  /** Shared secret sent in the handshake when the server requires one (§3.3); with `user`, that user's token. */
  token: null,
  /** The user to connect as, on a server with a users file (docs/security.md §3). */
  user: null,
  /**
   * TLS (docs/security.md §2): null or false for plaintext, true for Node's
   * CA store, or a tls.ConnectionOptions (`ca`, `cert` and `key` for mutual
   * TLS, `servername`; `rejectUnauthorized` stays true unless set).
   */
  tls: null,
  /** Proposed connection id; the server may make it unique. */
  connectionId: null,
  /**
   * Async handlers (responders, subscriptions) running at once; further
   * inbound requests and publishes wait in arrival order. The socket keeps
   * being read (responses and pings never wait), and a waiting request
   * whose deadline passes, or that the server cancels, is dropped unrun.
   */
  maxConcurrentHandlers: 1024,
  /**
   * Inbound messages held waiting for a handler slot, at most (Infinity: no
   * bound). Past it a request is answered `limit_exceeded` and a publish is
   * dropped (`heldDropped`, a SlowConsumerError on 'error' per episode).
   */
  maxHeldMessages: 65536,
  /** Send stack traces of responder errors in error.remote_stack (§6.3). */
  exposeStacks: false,
  /** Answers the response cache holds (per-call `cacheTtl`), least recently used out first; 0 turns it off. */
  cacheMaxEntries: 1000,
  /**
   * When the attempt of connect() fails, keep trying with the reconnect
   * policy (backoff, jitter, maxRetries) instead of rejecting at once; an
   * `unauthorized` answer still stops (nats.js's option of the same name).
   */
  waitOnFirstConnect: false
});

module.exports = {
  PROTOCOL_VERSION,
  CLIENT_VERSION,
  CLIENT_NAME,
  SYSTEM_CHANNEL,
  SERVICES_CHANNEL,
  RESERVED_PREFIXES,
  MAX_CHANNEL_LENGTH,
  MAX_CONNECT_ID_LENGTH,
  HEADER_SIZE_BYTES,
  MAX_FRAME_LIMIT_BYTES,
  DEFAULT_MAX_FRAME_SIZE_BYTES,
  MAX_TIMER_MS,
  MIN_HEARTBEAT_INTERVAL_MS,
  V1_FIELDS,
  MESSAGE_TYPES,
  DEFAULTS
};
