// Type declarations for ipc-bridge-client (the public API of index.js).

import { EventEmitter } from 'node:events';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';

/** The shared error codes (interop-tests/spec/error_codes.json, docs/protocol.md §11). */
export declare const ErrorCode: Readonly<{
  BAD_FRAME: 'bad_frame';
  TOO_LARGE: 'too_large';
  BAD_MESSAGE: 'bad_message';
  UNAUTHORIZED: 'unauthorized';
  FORBIDDEN: 'forbidden';
  NO_RESPONDERS: 'no_responders';
  TIMEOUT: 'timeout';
  RESPONDER_LOST: 'responder_lost';
  HANDLER_ERROR: 'handler_error';
  SLOW_CONSUMER: 'slow_consumer';
  SHUTTING_DOWN: 'shutting_down';
  TOO_MANY_CONNECTIONS: 'too_many_connections';
  LIMIT_EXCEEDED: 'limit_exceeded';
  BAD_REQUEST: 'bad_request';
  IDEMPOTENCY_CONFLICT: 'idempotency_conflict';
  NOT_CONNECTED: 'not_connected';
  CONNECTION_LOST: 'connection_lost';
  CIRCUIT_OPEN: 'circuit_open';
  QUEUE_FULL: 'queue_full';
  QUEUE_FILE: 'queue_file';
  ALREADY_SERVING: 'already_serving';
  CANCELLED: 'cancelled';
}>;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error the client raises; match on `.code`. */
export declare class IpcError extends Error {
  constructor(code: string, message?: string, options?: { cause?: unknown });
  readonly code: ErrorCodeValue | string;
}
export declare class ProtocolError extends IpcError {}
export declare class FrameError extends ProtocolError {
  constructor(message: string, options?: { cause?: unknown });
  readonly code: 'bad_frame';
}
/**
 * A frame over the size limit, refused here (before sending, or on a
 * received frame's length prefix): `size` and `limit` are set. A server's
 * `too_large` answer (docs/protocol.md §12.3) is a RemoteError that is
 * `instanceof FrameTooLargeError` too, as Python's `TooLarge` is a
 * `FrameTooLarge`: it has neither (its message gives them, in the server's
 * words); `instanceof RemoteError` tells the two apart.
 */
export declare class FrameTooLargeError extends ProtocolError {
  constructor(size: number, limit: number);
  readonly code: 'too_large';
  /** The frame's body length in bytes; absent on a server's `too_large` answer. */
  readonly size?: number;
  /** The limit in force in bytes; absent on a server's `too_large` answer. */
  readonly limit?: number;
}
export declare class MessageError extends ProtocolError {
  constructor(message: string, options?: { cause?: unknown });
  readonly code: 'bad_message';
}
export declare class NotConnectedError extends IpcError {
  constructor(message?: string, options?: { cause?: unknown });
  readonly code: 'not_connected';
}
export declare class ConnectionLostError extends IpcError {
  constructor(message?: string, options?: { cause?: unknown });
  readonly code: 'connection_lost';
}
export declare class RequestTimeoutError extends IpcError {
  constructor(message?: string, options?: { remote?: boolean });
  readonly code: 'timeout';
  /** True when the server gave up (a `timeout` error response), false for a local deadline. */
  readonly remote: boolean;
}
export declare class CircuitOpenError extends IpcError {
  constructor(message?: string, options?: { retryAfter?: number });
  readonly code: 'circuit_open';
  /** Milliseconds until the breaker lets a trial call through. */
  readonly retryAfter: number;
}
export declare class QueueFullError extends IpcError {
  constructor(message?: string);
  readonly code: 'queue_full';
}
/**
 * The offline queue's file (`queuePath`) cannot be opened, read or written,
 * or is not a queue file (docs/resilience.md §4): thrown by the constructor
 * and connect() when the file cannot be opened, and by a one-way call that
 * could not be written to it (the message is not queued); a later failure to
 * delete a sent message from it is reported once on 'error'.
 */
export declare class QueueFileError extends IpcError {
  constructor(message: string, info: { path: string; cause?: unknown });
  readonly code: 'queue_file';
  /** The queue file's absolute path. */
  readonly path: string;
}
/**
 * Another client, Python or Node, in this process or another, owns the queue
 * file (its `${queuePath}.lock` names a live process, `PID` or Python's
 * `py:PID`, other than this one, or this one holding it): thrown by the
 * constructor and connect(). A QueueFileError (code `queue_file`), as
 * Python's QueueFileInUse; `reason` is 'EQUEUELOCKED', its `code` before it
 * was one (docs/resilience.md §4).
 */
export declare class QueueFileInUseError extends QueueFileError {
  constructor(message: string, info: { path: string });
  readonly reason: 'EQUEUELOCKED';
}
/** serve() of a channel (or pattern) this client already serves; unserve() it first. */
export declare class AlreadyServingError extends IpcError {
  constructor(channel: string);
  readonly code: 'already_serving';
  /** The channel or pattern already served. */
  readonly channel: string;
}
/** The call's `signal` aborted (docs/protocol.md §15.4); `name` is 'AbortError', `cause` the signal's reason. */
export declare class AbortError extends IpcError {
  constructor(message?: string, options?: { cause?: unknown });
  readonly code: 'cancelled';
  readonly name: 'AbortError';
}

export interface RemoteErrorInfo {
  remoteType?: string | null;
  remoteStack?: string | null;
  details?: unknown;
  /** Becomes the error's own `cause` when given (undefined included). */
  cause?: unknown;
}

/** An error response from the server or a responder (docs/protocol.md §6). */
export declare class RemoteError extends IpcError {
  constructor(code: string, message?: string, info?: RemoteErrorInfo);
  /** The exception type on the remote side, e.g. `ValueError`, `TypeError`. */
  readonly remoteType: string | null;
  /** The remote stack trace, when the remote side shares it. */
  readonly remoteStack: string | null;
  /** Optional JSON details sent with the error. */
  readonly details: unknown;
}
export declare class NoRespondersError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class ResponderLostError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class HandlerError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class UnauthorizedError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class ForbiddenError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class SlowConsumerError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class ShuttingDownError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class TooManyConnectionsError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
export declare class LimitExceededError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}
/** One field error of a `bad_request` (docs/typed-contracts.md). */
export interface FieldError {
  loc: Array<string | number>;
  msg: string;
  type: string;
}
/** A typed handler refused the request's payload; `.details` is `{errors}`. */
export declare class BadRequestError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
  readonly errors: FieldError[];
}
/** The idempotency key was used, within the server's window, for another request: nothing ran. */
export declare class IdempotencyConflictError extends RemoteError {
  constructor(message?: string, info?: RemoteErrorInfo);
}

/**
 * What an event passes as its error ('error', 'disconnected', a pool's
 * 'connection_lost', a load-balanced client's 'server_down'...): an
 * IpcError (match on `.code`), or an Error as it was thrown or raised (a
 * handler's or listener's own Error, a socket's, with Node's `code` such as
 * `ECONNRESET`). Never anything but
 * an Error: a handler or listener that throws something else (`throw
 * 'text'`, a rejection with undefined) is reported as a HandlerError (code
 * `handler_error`, the value's text as message, its `typeof` as
 * remoteType, the value as `cause`).
 */
export type ReportedError = IpcError | (Error & { code?: unknown });

/** The `error` object of an error response (docs/protocol.md §2). */
export interface WireError {
  code: string;
  message: string;
  details?: unknown;
  remote_type?: string;
  remote_stack?: string;
}

export type MessageType = 'request' | 'response' | 'notification' | 'publish' | 'subscribe' | 'unsubscribe';

/**
 * Bytes a payload may hold anywhere (the payload itself, object values,
 * array items, nested, a sync iterator's items, what a `toJSON()` returns):
 * each goes out as a raw binary attachment, not as JSON, and arrives as a
 * Buffer (docs/protocol.md §16). A view (a Buffer, any typed array, a
 * DataView) sends the bytes of its own window, as
 * `Buffer.from(v.buffer, v.byteOffset, v.byteLength)` takes them, never
 * the whole ArrayBuffer under it. Sent without a copy: do not change a
 * large one until the call has settled. A call held in the offline queue,
 * a keyed request and a request waiting for a full send buffer snapshot
 * the payload at the call (its JSON values parsed back, its bytes copied:
 * all of a one-way call's, which settles once queued, a request's under
 * 64 KiB), and send it as it was then.
 */
export type BinaryLike = Buffer | ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

/** A payload type as it arrives: every BinaryLike in it is a Buffer. */
export type Received<T> = T extends ArrayBufferView | ArrayBuffer | SharedArrayBuffer
  ? Buffer
  : T extends ReadonlyArray<infer U>
    ? Received<U>[]
    : T extends object
      ? { [K in keyof T]: Received<T[K]> }
      : T;

/** A message as it travelled: the envelope's wire field names (docs/protocol.md §2). */
export interface Message<P = unknown> {
  message_id: string;
  app_id: string;
  channel_id: string;
  message_type: MessageType;
  /** JSON, with every binary attachment a Buffer (§16). */
  payload: P;
  /** Seconds since the epoch. */
  timestamp: number;
  reply_to: string | null;
  headers?: Record<string, string>;
  error?: WireError;
  /** On a request: the requester's remaining time in milliseconds. */
  timeout_ms?: number;
  ack?: boolean;
}

/** What a full offline queue does (docs/resilience.md §1). */
export type QueueOverflowValue = 'reject' | 'drop_oldest' | 'drop_lowest_priority';
export declare const QueueOverflow: Readonly<{
  REJECT: 'reject';
  DROP_OLDEST: 'drop_oldest';
  DROP_LOWEST_PRIORITY: 'drop_lowest_priority';
}>;

/** Circuit breaker states. */
export declare const CircuitState: Readonly<{ CLOSED: 'closed'; OPEN: 'open'; HALF_OPEN: 'half_open' }>;
export type CircuitStateValue = (typeof CircuitState)[keyof typeof CircuitState];

/** Circuit breaker settings (docs/resilience.md §6); durations in ms. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  failureThreshold?: number;
  /** Time OPEN before letting trial calls through. Default 30000. */
  resetTimeout?: number;
  /** Successful trials that close it again. Default 2. */
  successThreshold?: number;
  /** Trial calls allowed at once in HALF_OPEN. Default 1. */
  halfOpenMaxCalls?: number;
  /** One breaker per channel, or one for the whole client. Default 'channel'. */
  scope?: 'channel' | 'client';
  /**
   * Called instead of rejecting with CircuitOpenError; its (awaited) result becomes the
   * payload of a response message answering the request, unless it already is a message.
   */
  fallback?: ((channel: string, payload: unknown, error: CircuitOpenError) => unknown) | null;
  /** Which errors count as failures; default: timeout, connection_lost, not_connected, no_responders, responder_lost, shutting_down, slow_consumer, queue_full. */
  isFailure?: ((error: unknown) => boolean) | null;
}

export interface CircuitSnapshot {
  /** The channel it guards, or '*' for a client-wide breaker (scope 'client'). */
  key: string;
  /** Moves only on calls: 'open' past resetTimeout until the next call is admitted (it becomes 'half_open' then). */
  state: CircuitStateValue;
  /** Counted failures since the last counted success, in any state (no transition resets it). */
  consecutiveFailures: number;
  /** Counted successes since the last counted failure, in any state (no transition resets it). */
  consecutiveSuccesses: number;
  failures: number;
  successes: number;
  rejected: number;
  /** Epoch ms when it last opened (kept through half_open), null while closed: the wall clock of this snapshot less the time since, so a wall-clock step does not shift it. */
  openedAt: number | null;
}

/** The client's settings, every one with a default (DEFAULTS); durations in ms, sizes in bytes (docs/resilience.md §1). */
export interface IPCClientSettings {
  /** Default 'localhost'. */
  host?: string;
  /** Default 8888. */
  port?: number;
  /** TCP connect plus handshake. Default 10000. */
  connectTimeout?: number;
  /** Reconnect after an unexpected disconnection. Default true. */
  reconnect?: boolean;
  /** Consecutive failed attempts before giving up ('reconnect_failed'). Default Infinity. */
  maxRetries?: number;
  /** First backoff delay. Default 500. */
  initialDelay?: number;
  /** Cap on any delay. Default 30000. */
  maxDelay?: number;
  /** Growth factor of the delay per attempt (>= 1): min(initialDelay * multiplier^n, maxDelay), n = 0 for the first retry. Default 2. */
  multiplier?: number;
  /** Spread of each delay: with c = min(initialDelay * multiplier^n, maxDelay), a delay is uniform in [c * (1 - jitter), min(c * (1 + jitter), maxDelay)). Default 0.5. */
  jitter?: number;
  /** Ping after this much silence, ms, at least 10; null = the server's advertised interval (0 there = no pings). Default null. */
  heartbeatInterval?: number | null;
  /** Declare the connection dead after this much silence, ms, at least 10; null = 2 x interval. Set without heartbeatInterval and not over the server's interval, pings go at half the timeout. Default null. */
  heartbeatTimeout?: number | null;
  /** Default deadline of a call, queue time included. Default 30000. */
  requestTimeout?: number;
  /** Offline queue capacity in messages; 0 disables queueing. Default 1000. */
  queueMaxSize?: number;
  /** Offline queue capacity in bytes of encoded frames. Default 8 MiB. */
  queueMaxBytes?: number;
  /** What a full queue does. Default 'reject'. */
  queueOverflow?: QueueOverflowValue;
  /**
   * Append-only file persisting queued one-way messages (a missing directory
   * is created). One that cannot be opened, or is not a queue file, makes the
   * constructor throw QueueFileError; a message that cannot be written to it
   * fails its call with QueueFileError. Default null.
   */
  queuePath?: string | null;
  /** Default per-call policy while not connected. Default 'queue'. */
  onDisconnect?: 'queue' | 'fail';
  /** Circuit breaker on sendRequest: options, true for the defaults, or null (off). Default null. */
  circuitBreaker?: CircuitBreakerOptions | boolean | null;
  /**
   * Local frame size cap, declared in the connect (docs/protocol.md §12.3); null = the server's
   * advertised max_frame_size. A 2.0.0 server (no `features` in its reply) ignores it: the cap then
   * bounds only what this client sends, and it accepts up to the server's advertised limit. Default null.
   */
  maxFrameSize?: number | null;
  /** Shared secret for servers that require one; with `user`, that user's token. Default null. */
  token?: string | null;
  /** The user to connect as, on a server with a users file (docs/security.md §3). Default null. */
  user?: string | null;
  /**
   * TLS (docs/security.md §2). `true`: Node's CA store, the host name
   * checked; an object: tls.connect() options (`ca` trusted instead of the
   * store, `cert` and `key` for mutual TLS, `servername`, default `host`
   * unless it is an IP address; `rejectUnauthorized` stays true unless
   * set). A refused certificate is a NotConnectedError whose `.cause` is the
   * TLS error, and stops waitOnFirstConnect and reconnection. Default null
   * (plaintext).
   */
  tls?: boolean | TlsConnectionOptions | null;
  /** Proposed connection id; the server may make it unique. Default: generated. */
  connectionId?: string | null;
  /**
   * Async handlers running at once; further inbound requests and publishes
   * wait in arrival order. The socket keeps being read (responses and pings
   * never wait), and a waiting request whose deadline passes, or that the
   * server cancels (docs/protocol.md §15.4), is dropped unrun. Default 1024.
   * Python: max_concurrent_handlers.
   */
  maxConcurrentHandlers?: number;
  /**
   * Inbound messages (publishes, served requests) held waiting for a handler
   * slot, at most: an integer >= 1, or Infinity for no bound. Past it a new
   * request is answered `limit_exceeded` at once (details.max_held_messages)
   * and a new publish is dropped, counted in `heldDropped` and reported once
   * per overflow episode as a SlowConsumerError on 'error' (details:
   * channel, max_held_messages, dropped). Default 65536.
   * Python: max_held_messages.
   */
  maxHeldMessages?: number;
  /**
   * @deprecated The old name of maxConcurrentHandlers: still honoured, with
   * one IPC_DEPRECATED_OPTION process warning. (lowWaterMark, which had no
   * effect, is gone: it is ignored like any unknown option, with a warning.)
   */
  highWaterMark?: number;
  /** Send responder stack traces in error.remote_stack. Default false. */
  exposeStacks?: boolean;
  /**
   * Answers the response cache holds (per-call `cacheTtl`), least recently
   * used out first; 0 turns caching off. Default 1000. Python: cache_max_entries.
   */
  cacheMaxEntries?: number;
  /**
   * When the attempt of connect() fails, keep trying with the reconnect
   * policy (state 'reconnecting', 'reconnecting' events) instead of
   * rejecting; connect() resolves on the first success and rejects
   * not_connected once maxRetries attempts are spent. Default false.
   */
  waitOnFirstConnect?: boolean;
}

/**
 * A number's decimal text (`"8888"`): what a string given for a numeric
 * option must hold. The options are typed `string`, as `process.env` gives
 * them; any other text (`"eighty"`, `""`) throws TypeError naming the
 * option when the client is made.
 */
export type NumericString = `${number}`;

/** The numeric settings, which the constructors also take as numeric strings (lib/options.js converts them). */
export type NumericSetting =
  | 'port'
  | 'connectTimeout'
  | 'maxRetries'
  | 'initialDelay'
  | 'maxDelay'
  | 'multiplier'
  | 'jitter'
  | 'heartbeatInterval'
  | 'heartbeatTimeout'
  | 'requestTimeout'
  | 'queueMaxSize'
  | 'queueMaxBytes'
  | 'maxFrameSize'
  | 'maxConcurrentHandlers'
  | 'maxHeldMessages'
  | 'highWaterMark'
  | 'cacheMaxEntries';

/**
 * The numeric settings as options: a number, or its decimal text as the
 * environment gives it (`port: process.env.IPC_PORT`: `"8888"`, `" 8888 "`;
 * undefined is the default). Text that is not a number (NumericString)
 * throws TypeError naming the option when the client is made.
 */
export type NumericSettingOptions = { [K in NumericSetting]?: IPCClientSettings[K] | string | undefined };

/**
 * Client options: the settings, the legacy names of
 * `@ifesol/ipc-framework-nodejs`, and any other key, which is ignored with
 * one process warning (IpcBridgeWarning, code IPC_UNKNOWN_OPTION) per name.
 * Numbers may be given as numeric strings (`port: "8888"`, `port:
 * process.env.IPC_PORT`); an undefined value is the default.
 */
export interface IPCClientOptions extends Omit<IPCClientSettings, NumericSetting>, NumericSettingOptions {
  /** @deprecated Legacy name of `connectTimeout` (ms); `connectTimeout` wins when both are given. */
  connectionTimeout?: number | string | undefined;
  /** @deprecated Legacy name of `maxRetries`; `maxRetries` wins when both are given. */
  reconnectAttempts?: number | string | undefined;
  /** @deprecated Legacy name of `initialDelay` (ms); `initialDelay` wins when both are given. */
  reconnectDelay?: number | string | undefined;
  /** Unknown keys are accepted and ignored, with one process warning per name. */
  [extra: string]: unknown;
}

/**
 * Per-call options of sendRequest, publish and notify (docs/resilience.md §4).
 * Numbers may be given as their decimal text, as the client's own options
 * (NumericSettingOptions); other text throws a TypeError naming the option.
 */
export interface CallOptions {
  headers?: Record<string, string>;
  /** Higher leaves the offline queue first. Default 0. */
  priority?: number | string;
  /** While not connected: wait in the offline queue, or fail with not_connected. Default: the client's onDisconnect. */
  onDisconnect?: 'queue' | 'fail';
  /** Deadline in ms from the call, time in the offline queue or waiting for a full send buffer included. Default: requestTimeout. */
  timeout?: number | string;
  /**
   * sendRequest/request only: the server runs the request once per key (a
   * retry joins the run or gets its stored answer), and a connection lost
   * before the answer resends it instead of rejecting connection_lost
   * (docs/protocol.md §6.6). The server's window is its process's memory:
   * after a restart a client responder joins or answers the resend
   * instead (docs/resilience.md §3). A non-empty string of at most 256 characters.
   */
  idempotencyKey?: string;
  /**
   * sendRequest/request only: identical calls in flight (same channel and
   * canonical payload) share one round trip; each caller keeps its own
   * timeout and signal (docs/resilience.md §11). Default false.
   */
  coalesce?: boolean;
  /**
   * sendRequest/request only: reuse a successful answer to the same channel
   * and canonical payload for this many ms (docs/resilience.md §11).
   */
  cacheTtl?: number | string;
  /**
   * sendRequest, request, publish, notify: give up when it aborts. The call rejects
   * with an AbortError (code 'cancelled'), leaves the offline queue or the
   * line for a full send buffer unsent, or stops waiting for its answer,
   * and a request sends `cancel` to whoever runs it (docs/protocol.md §15.4).
   * A publish without ack or a notify resolves once written (or queued):
   * an abort after that changes nothing.
   */
  signal?: AbortSignal;
}

/** Options of client.stream() (docs/protocol.md §15); numbers as in CallOptions, their text too. */
export interface StreamOptions {
  /** The whole stream's deadline in ms; null (the default): none. */
  timeout?: number | string | null;
  /** The longest wait between items while the producer may send, ms. Default: requestTimeout. */
  idleTimeout?: number | string;
  /** Items in flight or buffered at most (the credit granted). Default 64. */
  window?: number | string;
  /** Gives the stream up when it aborts (also while it waits for a connection): the loop throws an AbortError, the producer is cancelled. */
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/**
 * client.stream(): the items a streaming handler yields, in order. `break`
 * (return()) cancels the stream at its producer.
 */
export interface Stream<T = any> extends AsyncIterableIterator<T> {
  next(): Promise<IteratorResult<T, undefined>>;
  return(): Promise<IteratorResult<T, undefined>>;
  throw(err?: unknown): Promise<never>;
  readonly channelId: string;
}

/** What a served request's handler gets beside the message: `handler(msg, ctx)`. */
export interface ServeContext {
  /**
   * Aborted when the requester gives up; its `reason` an IpcError (code
   * 'cancelled', 'timeout' or 'connection_lost'). A request with an
   * idempotency key is not aborted by the loss of its connection: its run
   * goes on, and a resend of the key joins it (docs/resilience.md §3).
   */
  readonly signal: AbortSignal;
  /** Whether the requester gave up. */
  readonly cancelled: boolean;
}

export interface ConnectionHealth {
  healthy: boolean;
  state: StateValue;
  /** Epoch ms of the last pong (a heartbeat ping's or health()'s), or null: the wall clock of this call less the time since, so a wall-clock step does not shift it. Kept while reconnecting. */
  lastHeartbeat: number | null;
  /** Epoch ms of the last frame received, on this connection or an earlier one, or null (same clock as lastHeartbeat). */
  lastReceived: number | null;
  /** Round trip of the last ping (the heartbeat's or health()'s), or null. Kept while reconnecting. */
  latencyMs: number | null;
  /** The interval in force: the option's, else the server's, or half the timeout when the timeout is not over that. */
  heartbeatIntervalMs: number | null;
  heartbeatTimeoutMs: number | null;
}

export interface ClientMetrics {
  connectionAttempts: number;
  connectionSuccesses: number;
  connectionSuccessRate: number;
  reconnections: number;
  /** Mean time from losing a connection to having it back, ms to 3 decimals; 0 before any reconnection. */
  averageReconnectionTimeMs: number;
  messagesSent: number;
  messagesDelivered: number;
  messagesFailed: number;
  messageDeliveryRate: number;
  activeConnections: number;
  /** Mean lifetime of connections, the current one included (a pool's: every member's, closed ones too), ms to 3 decimals. */
  averageConnectionDurationMs: number;
  /** Calls with `cacheTtl` answered from / not found in the response cache. */
  cacheHits: number;
  cacheMisses: number;
  /** Answers in the response cache now. */
  cacheSize: number;
  /** Calls with `coalesce` that joined another's round trip. */
  requestsCoalesced: number;
  /** Messages and requests dropped by iterators' 'drop_oldest'. */
  iteratorDropped: number;
  /** Inbound publishes dropped and requests answered limit_exceeded: maxHeldMessages were held already. */
  heldDropped: number;
  queued: number;
  queuedBytes: number;
  queueDropped: number;
  /** Answers of served requests not sent: their requester had given up (docs/protocol.md §15.4). */
  lateAnswers: number;
  /**
   * Node only: streams cancelled while their generator awaited in next(); the
   * handler slot was freed at once and return() deferred until next() settles.
   */
  producersDetached: number;
}

/** What a full iterator buffer does (README "Iterating over messages and requests"). */
export type IteratorOverflow = 'drop_oldest' | 'error';

/** Options of subscription() and requests(). */
export interface IteratorOptions {
  /** Items waiting for the loop at most. Default 1000. */
  maxBuffered?: number;
  /**
   * Past maxBuffered: 'drop_oldest' (counted in `dropped` and
   * `iteratorDropped`, each episode reported as a SlowConsumerError on
   * 'error'), or 'error' (the loop gets what was buffered, then rejects
   * SlowConsumerError). Default 'drop_oldest'.
   */
  overflow?: IteratorOverflow;
  /** Deadline of the server's ack of the subscription or registration, ms. Default requestTimeout. */
  timeout?: number;
}

/** What subscription() and requests() return: an async iterable with a bounded buffer. */
export interface BufferedIterator<T> extends AsyncIterator<T, undefined> {
  [Symbol.asyncIterator](): this;
  next(): Promise<IteratorResult<T, undefined>>;
  /** Ends the loop and undoes the registration (`for await` calls it on `break` or a throw). */
  return(): Promise<IteratorResult<T, undefined>>;
  /** Registers now; resolves once the server acknowledged (the first next() does it too). */
  ready(): Promise<this>;
  readonly channel: string;
  readonly maxBuffered: number;
  readonly overflow: IteratorOverflow;
  /** Items dropped by 'drop_oldest' so far. */
  readonly dropped: number;
  /** Items waiting for the loop now. */
  readonly buffered: number;
  /** Whether return() was called. */
  readonly closed: boolean;
}

/** client.subscription(): the publishes matching a channel or pattern. */
export interface SubscriptionIterator<P = any> extends BufferedIterator<Message<P>> {
  /** The same as return(). */
  unsubscribe(): Promise<void>;
}

/** One request received by the loop of client.requests(); answer it once. */
export interface ServedRequest<P = any, R = unknown> {
  readonly message: Message<P>;
  readonly payload: P;
  readonly channel: string;
  readonly headers: Record<string, string> | null;
  /** Whether respond() or fail() was called. */
  readonly answered: boolean;
  /** Aborts when the requester gives up: its deadline, its abort, its connection lost (docs/protocol.md §15.4). */
  readonly signal: AbortSignal | null;
  /**
   * Answers with `result`. False when the answer can no longer be sent (its
   * connection is gone, the requester gave up, or the loop ended and
   * answered responder_lost); throws when already answered.
   */
  respond(result?: R): boolean;
  /** Answers with an error: a RemoteError keeps its code, anything else (a NotConnectedError too) is handler_error. */
  fail(error: unknown): boolean;
}

/** client.requests(): the requests this client serves on a channel or pattern. */
export interface RequestIterator<P = any, R = unknown> extends BufferedIterator<ServedRequest<P, R>> {}

export interface QueueStats {
  size: number;
  bytes: number;
  maxSize: number;
  maxBytes: number;
  dropped: number;
  byPriority: Record<string, number>;
}

/** Every setting's default; not `highWaterMark`, a deprecated alias of maxConcurrentHandlers that is never kept. */
export declare const DEFAULTS: Readonly<Required<Omit<IPCClientSettings, 'highWaterMark'>>>;
export declare const PROTOCOL_VERSION: 2;
export declare const VERSION: string;

export declare const State: Readonly<{
  DISCONNECTED: 'disconnected';
  CONNECTING: 'connecting';
  CONNECTED: 'connected';
  RECONNECTING: 'reconnecting';
  DISCONNECTING: 'disconnecting';
}>;
export type StateValue = (typeof State)[keyof typeof State];

/** The handshake's outcome. */
export interface HandshakeInfo {
  connectionId: string;
  protocol: number;
  server: string | null;
  /** The server's advertised interval; 0 = heartbeats off; null = not advertised. */
  heartbeatIntervalMs: number | null;
  /** The largest frame this client sends (the smaller of its maxFrameSize and the server's). */
  maxFrameSize: number;
  /** True for a version-1 (ipc-framework 1.1.x) server. */
  legacy: boolean;
  /**
   * The reply carried `features` (docs/protocol.md §15.1 item 3); false: a 2.0.0 (or version-1)
   * server, which ignores a declared maxFrameSize and idempotency keys, and does not screen numbers.
   */
  negotiates: boolean;
  /** The cluster the server is a node of (docs/protocol.md §3 item 10); null: a standalone server. */
  cluster: string | null;
  /**
   * The server has a users file, so its idempotency keys are per user (docs/protocol.md §3 item 2):
   * a responder then runs keyed requests as plain ones, not joining or replaying them (§6.6 item 10).
   */
  keysPerUser: boolean;
}

export interface ConnectionInfo {
  appId: string;
  host: string;
  port: number;
  state: StateValue;
  connected: boolean;
  connectionId: string;
  protocol: number | null;
  server: string | null;
  maxFrameSize: number | null;
  heartbeatIntervalMs: number | null;
  heartbeatTimeoutMs: number | null;
  reconnectAttempt: number;
  pendingRequests: number;
  queuedCalls: number;
  /** Async handlers running (maxConcurrentHandlers); one still running after a lost connection still counts, until disconnect(). */
  runningHandlers: number;
  /** Inbound requests/publishes waiting for a handler slot (maxConcurrentHandlers), at most maxHeldMessages. */
  heldMessages: number;
  subscriptions: string[];
  responders: string[];
}

/** What health() resolves. */
export interface HealthCheckResult {
  healthy: boolean;
  state: StateValue;
  latencyMs: number | null;
  connectionId: string | null;
  server: string | null;
  /** The error code when unhealthy. */
  error?: string;
}

export type MessageHandler<P = any> = (message: Message<P>) => unknown;
/**
 * A responder: its (resolved) value is the answer; an async iterable (an
 * `async function*`) or a generator object (a `function*`) streams its
 * items (docs/protocol.md §15.6). An array is an answer, not a stream.
 */
export type ServeHandler<P = any> = (message: Message<P>, ctx: ServeContext) => unknown;
/**
 * What a streaming responder returns, a typed one's too: an async iterable
 * (an `async function*`), a generator object (a `function*`), or a promise
 * of either (an `async` handler returning one). Its items are not in a
 * contract, which describes one answer.
 */
export type ServeProducer = AsyncIterable<unknown> | Generator<unknown, unknown, unknown> | Promise<AsyncIterable<unknown> | Generator<unknown, unknown, unknown>>;

/** JSON Schemas a responder declares for what it serves (docs/typed-contracts.md). */
export interface ServeSchema {
  /** Checked on every request: a payload that does not match is answered bad_request. */
  request?: object | boolean;
  /** Checked on every result: one that does not match is answered handler_error. */
  response?: object | boolean;
}
export interface ServeOptions {
  timeout?: number;
  /** Sent with the registration and published by the server's `describe` action. */
  schema?: ServeSchema;
}

/** One channel of a typed contract: what a request carries and what its answer does. */
export interface ChannelContract {
  request: unknown;
  response: unknown;
  /**
   * The channel or pattern that serves this entry: ipc-bridge-types tags the
   * entries of a pattern's template with it (docs/typed-contracts.md §5).
   */
  channel?: string;
}
/** A contract: channel name -> {request, response}, as `ipc-bridge-types` writes it. */
export type ContractMap<Api> = { [C in keyof Api]: ChannelContract };
/** The channel names of a contract. */
export type ContractChannel<Api> = Extract<keyof Api, string>;

/** A channel's tokens: `a.b.c` -> `['a', 'b', 'c']`. */
type ChannelTokens<S extends string, Acc extends string[] = []> = S extends `${infer H}.${infer T}` ? ChannelTokens<T, [...Acc, H]> : [...Acc, S];
/** Whether a pattern's tokens match a channel's, as the server routes (docs/protocol.md §4). */
type TokensMatch<P extends string[], C extends string[]> = P extends ['>']
  ? C extends [] ? false : true
  : P extends [infer PH extends string, ...infer PT extends string[]]
    ? C extends [infer CH extends string, ...infer CT extends string[]]
      ? PH extends '*' ? TokensMatch<PT, CT> : [PH] extends [CH] ? TokensMatch<PT, CT> : false
      : false
    : C extends [] ? true : false;
/** The entries of a union whose `channel` tag matches C (an untagged entry is kept). */
type MatchingEntries<E, C extends string> = E extends { channel: infer S extends string }
  ? TokensMatch<ChannelTokens<S>, ChannelTokens<C>> extends true ? E : never
  : E;

/**
 * What channel C of a contract carries and answers: its own entry, or, for a
 * name only patterns cover, the entries of the patterns that match it by
 * the wire's rules (several when several do: the server takes the first
 * registered). A pattern itself (serving `orders.*`) gets its own entry.
 * `never` when nothing in the contract serves C.
 */
export type ContractEntry<Api, C extends keyof Api & string> = C extends unknown
  ? string extends C
    ? Api[C]
    : [Extract<Api[C], { channel: C }>] extends [never]
      ? MatchingEntries<Api[C], C>
      : Extract<Api[C], { channel: C }>
  : never;

/**
 * The client returned by `client.typed<Api>()`: the same client, whose
 * requests the compiler checks against the contract `Api` (a channel it
 * names, that channel's payload, the answer's type). A `stream()`'s channel
 * and payload are checked too; its items are `T` (a generator handler's
 * items are not in the contract, which describes one answer). A `serve()`
 * handler gets `(msg, ctx)` as an untyped one does; it answers the
 * channel's response, or streams (ServeProducer: checked on its request alone).
 */
export interface TypedClient<Api extends ContractMap<Api>> extends Omit<IPCClient, 'request' | 'sendRequest' | 'serve' | 'stream'> {
  request<C extends ContractChannel<Api>>(
    channelId: C,
    payload: ContractEntry<Api, C>['request'],
    timeout?: number | string | CallOptions,
    options?: CallOptions
  ): Promise<ContractEntry<Api, C>['response']>;
  sendRequest<C extends ContractChannel<Api>>(
    channelId: C,
    payload: ContractEntry<Api, C>['request'],
    timeout?: number | string | CallOptions,
    options?: CallOptions
  ): Promise<Message<ContractEntry<Api, C>['response']>>;
  serve<C extends ContractChannel<Api>>(
    channelId: C,
    handler: (
      message: Message<ContractEntry<Api, C>['request']>,
      ctx: ServeContext
    ) => ContractEntry<Api, C>['response'] | Promise<ContractEntry<Api, C>['response']> | ServeProducer,
    options?: ServeOptions
  ): Promise<void>;
  stream<T = unknown, C extends ContractChannel<Api> = ContractChannel<Api>>(
    channelId: C,
    payload: ContractEntry<Api, C>['request'],
    options?: StreamOptions
  ): Stream<T>;
}

export interface IPCClientEvents {
  connecting: [];
  connected: [info: HandshakeInfo];
  reconnected: [event: { attempts: number; elapsed: number }];
  /**
   * The loss: a ConnectionLostError (`connection to HOST:PORT lost: ...`), its `cause` the raw error
   * when there was one (the heartbeat's RequestTimeoutError, a socket error), as Python's ConnectionLost
   * and its __cause__; an UnauthorizedError as it is when a users-file reload cut the connection (no
   * reconnection follows, but for details.reason 'credential': one ordinary reconnect); a ShuttingDownError at a
   * shutting-down server's goaway notice (its calls in flight still end with their answers, docs/protocol.md §13);
   * null after disconnect().
   */
  disconnected: [error: ConnectionLostError | ShuttingDownError | UnauthorizedError | null];
  reconnecting: [event: { attempt: number; delay: number }];
  reconnect_failed: [attempts: number];
  heartbeat: [event: { latency: number }];
  heartbeat_timeout: [event: { silent: number }];
  queue_dropped: [event: { reason: 'expired' | 'evicted' | 'gave_up' | 'refused'; channel: string; messageType: MessageType; priority: number }];
  circuit_open: [snapshot: CircuitSnapshot];
  circuit_half_open: [snapshot: CircuitSnapshot];
  circuit_closed: [snapshot: CircuitSnapshot];
  /** The server is leaving (docs/protocol.md §13.1) and closes within deadlineMs. */
  lame_duck: [event: { deadlineMs: number }];
  message: [message: Message];
  ping: [event: { messageId: string }];
  /** Errors that belong to no call; always an Error (ReportedError). */
  error: [error: ReportedError];
  close: [];
}

/** The Node.js client of the IPC bridge. */
export declare class IPCClient extends EventEmitter {
  constructor(appId: string, options?: IPCClientOptions);
  readonly appId: string;
  /** The validated options (a deprecated `highWaterMark` is read into maxConcurrentHandlers). */
  readonly options: Readonly<Required<Omit<IPCClientSettings, 'highWaterMark'>>>;
  readonly state: StateValue;
  readonly connected: boolean;
  /**
   * The id the server gave the current connection; null without one. A 1.1.x
   * server's handler answers the connection named in the request, so send
   * `{ connection_id: client.connectionId, ... }` to one (docs/legacy.md).
   */
  readonly connectionId: string | null;

  /**
   * Rejects NotConnectedError when the server cannot be reached or never
   * answers the handshake within connectTimeout (`.cause` says which), or
   * answers it `timeout` (its auth timeout passed while the token was being
   * checked: the server's text in the message, its answer as `.cause`), or
   * UnauthorizedError. A throwing listener does not reject it; an aborted
   * `signal` rejects it with AbortError and stops the attempt.
   */
  connect(options?: { signal?: AbortSignal }): Promise<true>;
  /**
   * Closes and stops reconnecting: pending calls reject connection_lost,
   * queued ones not_connected. The socket is closed once what was written
   * has gone (not only ended: a half-close, which the server answers as a
   * peer still reading, docs/protocol.md §6.2).
   */
  disconnect(): Promise<void>;
  /**
   * Finishes what is in flight, then closes (docs/resilience.md §12): new
   * calls reject with NotConnectedError (those of handlers still running go
   * through), registrations are withdrawn, calls in flight, the offline
   * queue and served requests get `timeout` ms (default 30000). True when
   * all of it ended in time.
   */
  drain(options?: { timeout?: number | string }): Promise<boolean>;

  sendRequest<R = any, P = unknown>(
    channelId: string,
    payload?: P,
    timeout?: number | string | CallOptions,
    options?: CallOptions
  ): Promise<Message<R>>;
  /** sendRequest() resolving the response's payload only. */
  request<R = any, P = unknown>(channelId: string, payload?: P, timeout?: number | string | CallOptions, options?: CallOptions): Promise<R>;
  /**
   * Asks the `system` channel: the server answers 'ping', 'stats',
   * 'channels', 'services', 'describe'; any other action goes to whoever
   * serves `system` in the app. Resolves the answer's payload. `params`:
   * more fields of the payload, such as a page's `offset` and `limit`
   * ('channels', 'services', 'describe', 'connections').
   */
  system<R = any>(action: string, options?: { timeout?: number | string; params?: Record<string, unknown> }): Promise<R>;

  /**
   * Resolves on the server's ack. Argument errors throw at the call,
   * synchronously, so a route that calls it without `await` (the 1.1.x
   * documentation's Express blocks) sees a throw, not an unhandled
   * rejection: MessageError (bad_message) for an invalid or over-long
   * pattern, TypeError for a handler that is not a function or a bad
   * timeout. What depends on the connection rejects (not_connected while
   * draining or after disconnect(), timeout, forbidden from the server,
   * bad_message for a wildcard on a 1.1.x server).
   */
  subscribe<P = any>(channelId: string, handler: MessageHandler<P>, options?: { timeout?: number | string }): Promise<void>;
  /**
   * No call of a removed handler starts once it resolves (a publish held
   * for a handler slot runs the handlers it matched on arrival that are
   * still subscribed at dispatch). A connection lost before
   * the server's ack resolves it: the subscription went with the connection
   * and is not restored. A subscribe() of it still waiting for the
   * connection resolves at once, unsent. A channel nothing is subscribed
   * under (an invalid name included) resolves; a channel that is not a
   * string or a handler that is not a function throws TypeError at the call.
   */
  unsubscribe(channelId: string, handler?: MessageHandler): Promise<void>;

  /**
   * Rejects AlreadyServingError if `channelId` is already served by this
   * client (unserve() it first), ForbiddenError on a reserved channel other
   * than `system` itself. The handler gets `(msg, ctx)`: `ctx.signal` aborts
   * when the requester gives up; an `async function*` or a `function*`
   * streams its items.
   */
  serve<P = any>(channelId: string, handler: ServeHandler<P>, options?: ServeOptions): Promise<void>;
  /** Once it resolves the server holds no such responder of this client; a serve() still waiting for the connection resolves at once, unsent. */
  unserve(channelId: string): Promise<void>;

  /**
   * The items a streaming handler yields, as an async iterable: `for await
   * (const item of client.stream('ticks', payload, { timeout, idleTimeout, window, signal }))`.
   * Throws, after the items that came first, RequestTimeoutError, the
   * producer's error, ResponderLostError, ConnectionLostError or AbortError.
   * The call itself throws only for bad arguments: closed or draining, the
   * first next() rejects NotConnectedError.
   */
  stream<T = any, P = unknown>(channelId: string, payload?: P, options?: StreamOptions): Stream<T>;

  /**
   * The publishes matching `channelId` as an async iterable: `for await
   * (const msg of client.subscription('orders.*'))`; `break` unsubscribes.
   */
  subscription<P = any>(channelId: string, options?: IteratorOptions): SubscriptionIterator<P>;
  /**
   * The requests on `channelId` as an async iterable: `for await (const req
   * of client.requests('jobs.*')) req.respond(result)`; `break` unserves and
   * answers what the loop held responder_lost.
   */
  requests<P = any, R = unknown>(channelId: string, options?: IteratorOptions): RequestIterator<P, R>;
  /** Forgets every cached answer (`cacheTtl`). */
  clearCache(): void;

  /**
   * This client, typed by a contract (an interface written by
   * `ipc-bridge-types`): `request`, `sendRequest` and `serve` take only the
   * contract's channels and payloads and resolve its answers' types.
   * Types only: nothing is checked at run time by this call.
   */
  typed<Api extends ContractMap<Api>>(): TypedClient<Api>;

  /**
   * Argument errors throw at the call, synchronously, and nothing is sent:
   * MessageError (bad_message) for an invalid or over-long channel or a
   * payload that cannot be encoded (NaN, Infinity, BigInt, a Map or Set, a
   * cycle, a lone surrogate), ForbiddenError for a reserved channel
   * (`system...`, `$sys...`), TypeError for a bad option. What depends on
   * the connection rejects: not_connected, queue_full, too_large (over the
   * server's frame limit), timeout, connection_lost. Without ack it
   * resolves once written; when the socket's send buffer is full it waits
   * for room before it is written, and rejects timeout (or AbortError,
   * connection_lost) unsent (docs/resilience.md §4, "A full send buffer").
   */
  publish(
    channelId: string,
    data: unknown,
    options: CallOptions & { ack: true }
  ): Promise<{ delivered: number | null }>;
  publish(
    channelId: string,
    data: unknown,
    options?: CallOptions & { ack?: false }
  ): Promise<undefined>;
  publish(
    channelId: string,
    data: unknown,
    options?: CallOptions & { ack?: boolean }
  ): Promise<{ delivered: number | null } | undefined>;

  /** Throws and rejects as publish() does; `system` itself may be notified. */
  notify(channelId: string, data: unknown, options?: CallOptions): Promise<void>;

  /** Whether a ping round trip succeeds within the timeout; never rejects. */
  healthCheck(options?: { timeout?: number | string }): Promise<boolean>;
  /** The ping round trip, described; never rejects. */
  health(options?: { timeout?: number | string }): Promise<HealthCheckResult>;
  getConnectionInfo(): ConnectionInfo;
  getConnectionHealth(): ConnectionHealth;
  getMetrics(): ClientMetrics;
  queueStats(): QueueStats;
  circuitBreakers(): Record<string, CircuitSnapshot>;

  onConnected(cb: (info: HandshakeInfo) => void): () => void;
  onDisconnected(cb: (error: ReportedError | null) => void): () => void;
  onError(cb: (error: ReportedError) => void): () => void;

  on<E extends keyof IPCClientEvents>(event: E, listener: (...args: IPCClientEvents[E]) => void): this;
  once<E extends keyof IPCClientEvents>(event: E, listener: (...args: IPCClientEvents[E]) => void): this;
  off<E extends keyof IPCClientEvents>(event: E, listener: (...args: IPCClientEvents[E]) => void): this;
  emit<E extends keyof IPCClientEvents>(event: E, ...args: IPCClientEvents[E]): boolean;
}

/** The ConnectionPool's own settings (docs/resilience.md §7); numbers may be numeric strings. */
export interface ConnectionPoolSettings {
  /** Connections opened by start() and kept open. Default 1. */
  minConnections?: number | string | undefined;
  /** Most connections at once. Default 10. */
  maxConnections?: number | string | undefined;
  /** Longest wait of acquire() for a connection, ms. Default 5000. */
  acquireTimeout?: number | string | undefined;
  /** Idle connections above minConnections close after this long, ms. Default 30000. */
  idleTimeout?: number | string | undefined;
  /** Calls in flight on every member before lease() opens another (below maxConnections). Default 1. */
  leaseThreshold?: number | string | undefined;
}

/** Options of ConnectionPool; other keys go to each member's IPCClient. */
export interface ConnectionPoolOptions extends ConnectionPoolSettings, IPCClientOptions {
  /** Refused (TypeError): a persisted outbox belongs to one IPCClient, and each member would send it. */
  queuePath?: null;
}

export interface PoolStats {
  total: number;
  available: number;
  inUse: number;
  pending: number;
  totalCreated: number;
  totalDestroyed: number;
}

export interface ConnectionPoolEvents {
  created: [event: { client: IPCClient }];
  /** A member closed: idle, dead (`reason` its loss; once nobody holds it), or at close(). */
  destroyed: [event: { client: IPCClient; reason: ReportedError | null }];
  /** A member's connection dropped (`error`: its 'disconnected' argument); a held one stays its holder's until released. */
  connection_lost: [event: { client: IPCClient; error: ReportedError | null }];
  /** A background open nobody waited for failed, a registration a replay could not make was dropped, or a listener of these events threw (never a crash). */
  error: [error: ReportedError];
}

/**
 * Several connections to one server; members do not reconnect, the pool
 * replaces them. Calls through the pool share its members; subscriptions
 * and responders live on one of them (docs/resilience.md §7).
 */
export declare class ConnectionPool extends EventEmitter {
  constructor(appId: string, options?: ConnectionPoolOptions);
  readonly appId: string;
  readonly host: string;
  readonly port: number;
  readonly minConnections: number;
  readonly maxConnections: number;
  readonly acquireTimeout: number;
  readonly idleTimeout: number;
  readonly leaseThreshold: number;
  readonly closed: boolean;
  /** Opens minConnections; on failure rejects not_connected and keeps trying in the background. */
  start(): Promise<void>;
  /**
   * Rejects `timeout` after `options.timeout` ms (default acquireTimeout; zero or less waits for no
   * member), `not_connected` when closed or a connection cannot be opened, TypeError when
   * `options.timeout` is not a number (NaN included). So do execute() and lease().
   */
  acquire(options?: { timeout?: number | string | undefined }): Promise<IPCClient>;
  /**
   * False when the client was not lent out by this pool. One whose connection
   * dropped while held (still in inUse and toward maxConnections until now)
   * is destroyed here and replaced up to minConnections.
   */
  release(client: IPCClient): boolean;
  execute<T>(fn: (client: IPCClient) => Promise<T> | T, options?: { timeout?: number | string | undefined }): Promise<T>;
  /**
   * Runs `fn` on a member shared with other lease() calls (the one with the
   * fewest in flight, never one held by acquire()); waits only while no
   * member is usable. Rejects as acquire() does.
   */
  lease<T>(fn: (client: IPCClient) => Promise<T> | T, options?: { timeout?: number | string | undefined }): Promise<T>;
  /** Pings on a connected member, busy or not, else a new one; never rejects (a bad timeout is reported as the error). */
  healthCheck(options?: { timeout?: number | string }): Promise<{ healthy: boolean; latencyMs: number | null; error?: string }>;
  /**
   * IPCClient.sendRequest() on a member shared with other calls, as lease()
   * shares it (the one with the fewest in flight; with `coalesce: true`, the
   * one where an identical call is in flight, which it joins). `timeout` (ms,
   * default the members' requestTimeout) is the whole call's, the wait for
   * a member included; the third argument may also be the options object.
   */
  sendRequest<R = any, P = unknown>(
    channelId: string,
    payload?: P,
    timeout?: number | string | CallOptions,
    options?: CallOptions
  ): Promise<Message<R>>;
  /** sendRequest() resolving the response's payload only. */
  request<R = any, P = unknown>(channelId: string, payload?: P, timeout?: number | string | CallOptions, options?: CallOptions): Promise<R>;
  /** IPCClient.publish() on a shared member; `timeout` covers the wait for it. */
  publish(
    channelId: string,
    data: unknown,
    options: CallOptions & { ack: true }
  ): Promise<{ delivered: number | null }>;
  publish(
    channelId: string,
    data: unknown,
    options?: CallOptions & { ack?: false }
  ): Promise<undefined>;
  publish(
    channelId: string,
    data: unknown,
    options?: CallOptions & { ack?: boolean }
  ): Promise<{ delivered: number | null } | undefined>;
  /** IPCClient.notify() on a shared member; `timeout` covers the wait for it. */
  notify(channelId: string, data: unknown, options?: CallOptions): Promise<void>;
  /**
   * IPCClient.stream() on a member shared as lease() shares it, held until
   * the stream ends, fails or is left (break, return(), the signal) and then
   * given back once. `timeout` (the whole stream's) covers the wait for the
   * member (at most acquireTimeout); close() during the stream ends it with
   * connection_lost. Bad arguments throw at the call.
   */
  stream<T = any, P = unknown>(channelId: string, payload?: P, options?: StreamOptions): Stream<T>;
  /**
   * Subscribes on one member (the registrar), replayed on its replacement
   * before that one is handed out, so each publish reaches the handler
   * once. Resolves true when active now, false when no member could be
   * reached (kept, and applied once one connects); rejects `timeout` when
   * the registrar did not ack in time (nothing is kept).
   */
  subscribe<P = any>(channelId: string, handler: MessageHandler<P>, options?: { timeout?: number | string }): Promise<boolean>;
  /** As IPCClient.unsubscribe(): a channel that is not a string or a handler that is not a function throws TypeError at the call. */
  unsubscribe(channelId: string, handler?: MessageHandler): Promise<void>;
  /** Answers requests from the registrar; as subscribe(). Rejects AlreadyServingError if the pool already serves `channelId`. */
  serve<P = any>(channelId: string, handler: ServeHandler<P>, options?: ServeOptions): Promise<boolean>;
  unserve(channelId: string): Promise<void>;
  /** Forgets every cached answer (`cacheTtl`) of every member (each keeps its own cache). */
  clearCache(): void;
  close(): Promise<void>;
  stats(): PoolStats;
  /** The members' KPIs summed: every key of a client's getMetrics(), also with no member live (the current ones, activeConnections, queued, queuedBytes, cacheSize, at 0 then). */
  getMetrics(): Record<string, number>;

  on<E extends keyof ConnectionPoolEvents>(event: E, listener: (...args: ConnectionPoolEvents[E]) => void): this;
  once<E extends keyof ConnectionPoolEvents>(event: E, listener: (...args: ConnectionPoolEvents[E]) => void): this;
  off<E extends keyof ConnectionPoolEvents>(event: E, listener: (...args: ConnectionPoolEvents[E]) => void): this;
}

export declare const Strategy: Readonly<{
  ROUND_ROBIN: 'round_robin';
  LEAST_CONNECTIONS: 'least_connections';
  WEIGHTED: 'weighted';
  RANDOM: 'random';
}>;
export type StrategyValue = (typeof Strategy)[keyof typeof Strategy];

/** `"host:port"` (the port in decimal digits), `[host, port]` or `{host, port, weight}`: in the array and the object, the port and weight are numbers (a numeric string is refused, as in Python). */
export type ServerSpec = string | [string, number] | { host?: string; port: number; weight?: number };

/** Options of LoadBalancedClient (docs/resilience.md §8); other keys go to each IPCClient. Numbers may be numeric strings. */
export interface LoadBalancedClientOptions
  extends ConnectionPoolSettings,
    Omit<IPCClientSettings, 'host' | 'port' | NumericSetting>,
    Omit<NumericSettingOptions, 'port'> {
  /** Refused (TypeError): host and port come from the servers list. */
  host?: never;
  port?: never;
  /** Refused (TypeError), as by ConnectionPool. */
  queuePath?: null;
  /** Default 'round_robin'. */
  strategy?: StrategyValue;
  /** Ping every server this often, ms (a finite number > 0); null: no health checks. Default 5000. */
  healthCheckInterval?: number | string | null | undefined;
  /** A ping slower than this fails the check, ms (a finite number > 0). Default 2000. */
  healthCheckTimeout?: number | string | undefined;
  /** Connections per server: defaults 1 and 1. */
  minConnections?: number | string | undefined;
  maxConnections?: number | string | undefined;
  /** A [0, 1) source for the 'random' strategy. Default Math.random. */
  random?: () => number;
  /** @deprecated Legacy name of `connectTimeout` (ms). */
  connectionTimeout?: number | string | undefined;
  /** @deprecated Legacy name of `maxRetries`. */
  reconnectAttempts?: number | string | undefined;
  /** @deprecated Legacy name of `initialDelay` (ms). */
  reconnectDelay?: number | string | undefined;
  /** Unknown keys are accepted and ignored, with one process warning per name. */
  [extra: string]: unknown;
}

/** One server of a LoadBalancedClient (docs/resilience.md §8). */
export interface ServerStats {
  host: string;
  port: number;
  weight: number;
  healthy: boolean;
  /** Calls on it now; counted in `requests` once they end. */
  inFlight: number;
  /** Calls that ended on it, every one since the start; `errors` of them failed. */
  requests: number;
  errors: number;
  /** `errors / requests`, 0 before any. */
  errorRate: number;
  /** The mean time of every call that ended, null before any. */
  averageLatencyMs: number | null;
}

export interface LoadBalancedClientEvents {
  server_down: [event: { host: string; port: number; error: ReportedError | null }];
  server_up: [event: { host: string; port: number }];
  /** The server said it is leaving (lame duck, docs/protocol.md §13.1): new calls go to the others. */
  server_leaving: [event: { host: string; port: number; deadlineMs: number }];
  /** Over nodes of one cluster a subscription lives on one node; it moved to another (docs/cluster.md §6). */
  subscription_moved: [event: { channel: string; from: { host: string; port: number }; to: { host: string; port: number } }];
  error: [error: ReportedError];
}

/**
 * Per-call options of LoadBalancedClient.sendRequest/request (CallOptions,
 * as the server's client takes them): `timeout` is the whole call's, every
 * server tried included; `coalesce` shares a round trip among identical
 * calls sent to the same server; `cacheTtl` reuses an answer cached by the
 * connection the call goes to (each keeps its own cache, docs/resilience.md
 * §11); a `signal` that aborts gives the call up (no other server is
 * tried); `idempotencyKey` goes with every attempt.
 */
export type BalancedCallOptions = Pick<CallOptions, 'headers' | 'idempotencyKey' | 'timeout' | 'signal' | 'coalesce' | 'cacheTtl' | 'priority'>;

/**
 * Per-call options of LoadBalancedClient.publish (CallOptions, as the
 * server's client takes them): `timeout` is the whole call's, every server
 * tried included; a `signal` that aborts gives the publish up (an
 * AbortError; no other server is tried); `priority` and `onDisconnect` go
 * to the connection it is sent on. notify() takes the same.
 */
export type BalancedPublishOptions = Pick<CallOptions, 'headers' | 'timeout' | 'signal' | 'priority' | 'onDisconnect'>;

/** One app over several servers: failover within the call's deadline, health checks. */
export declare class LoadBalancedClient extends EventEmitter {
  constructor(appId: string, servers: ServerSpec[], options?: LoadBalancedClientOptions);
  readonly appId: string;
  readonly strategy: StrategyValue;
  /** Ms, as given or defaulted; null: no health checks. */
  readonly healthCheckInterval: number | null;
  readonly healthCheckTimeout: number;
  /**
   * Rejects not_connected when no server is reachable (and keeps checking
   * until close()): `no server could be reached: ` and the first server's
   * error, its `cause` what lies under that error's NotConnectedErrors (the
   * TLS error, ECONNREFUSED, an UnauthorizedError), as connect() gives it.
   */
  start(): Promise<void>;
  /**
   * Fails over to the next healthy server within the deadline. The third
   * argument may also be the options object (`{ timeout, ... }`), as on IPCClient.
   */
  sendRequest<R = any, P = unknown>(
    channelId: string,
    payload?: P,
    timeout?: number | string | BalancedCallOptions,
    options?: BalancedCallOptions
  ): Promise<Message<R>>;
  /** sendRequest() resolving the response's payload only. */
  request<R = any, P = unknown>(channelId: string, payload?: P, timeout?: number | string | BalancedCallOptions, options?: BalancedCallOptions): Promise<R>;
  /** IPCClient.publish() on one server, with the failover of sendRequest(). */
  publish(
    channelId: string,
    data: unknown,
    options: BalancedPublishOptions & { ack: true }
  ): Promise<{ delivered: number | null }>;
  publish(
    channelId: string,
    data: unknown,
    options?: BalancedPublishOptions & { ack?: false }
  ): Promise<undefined>;
  publish(
    channelId: string,
    data: unknown,
    options?: BalancedPublishOptions & { ack?: boolean }
  ): Promise<{ delivered: number | null } | undefined>;
  /** IPCClient.notify() on one server, with the failover of sendRequest(). */
  notify(channelId: string, data: unknown, options?: BalancedPublishOptions): Promise<void>;
  /**
   * IPCClient.stream() on one healthy server, picked as for a request. Until
   * the first item, the errors a request fails over on try the next healthy
   * server within `timeout` (null: requestTimeout bounds the failovers);
   * after it, an error goes to the reader. close() during the stream ends
   * it with connection_lost. Bad arguments throw at the call.
   */
  stream<T = any, P = unknown>(channelId: string, payload?: P, options?: StreamOptions): Stream<T>;
  /** On every server; resolves once one acked, the others get it when they come back. Bad arguments (the timeout too) throw at the call. */
  subscribe<P = any>(channelId: string, handler: MessageHandler<P>, options?: { timeout?: number | string }): Promise<void>;
  /** On every server; as IPCClient.unsubscribe(), a channel that is not a string or a handler that is not a function throws TypeError at the call. */
  unsubscribe(channelId: string, handler?: MessageHandler): Promise<void>;
  /** On every server; the handler is called (msg, ctx) and may stream, as IPCClient.serve()'s. */
  serve<P = any>(channelId: string, handler: ServeHandler<P>, options?: ServeOptions): Promise<void>;
  /** On every server; a serve() of it still connecting resolves and registers nothing (so does subscribe() for unsubscribe()). */
  unserve(channelId: string): Promise<void>;
  /** One round of health checks now. */
  checkHealth(): Promise<ServerStats[]>;
  serverStats(): ServerStats[];
  poolStats(): Record<string, PoolStats>;
  /** Every server's pool's KPIs summed, every key always (as ConnectionPool.getMetrics()). */
  getMetrics(): Record<string, number>;
  /** Forgets every cached answer (`cacheTtl`) of every server's pooled connections. */
  clearCache(): void;
  close(): Promise<void>;

  on<E extends keyof LoadBalancedClientEvents>(event: E, listener: (...args: LoadBalancedClientEvents[E]) => void): this;
  once<E extends keyof LoadBalancedClientEvents>(event: E, listener: (...args: LoadBalancedClientEvents[E]) => void): this;
  off<E extends keyof LoadBalancedClientEvents>(event: E, listener: (...args: LoadBalancedClientEvents[E]) => void): this;
}

/** One backend of a ServiceClient (docs/resilience.md §9); numbers may be numeric strings. */
export interface ServiceSpec {
  /** With `port`: the one server. Default 'localhost'. */
  host?: string;
  port?: number | string | undefined;
  servers?: ServerSpec[];
  /** Default: the service name. */
  appId?: string;
  strategy?: StrategyValue;
  /** Per server. Default 1. */
  minConnections?: number | string | undefined;
  /** Per server. Default 10 (at least minConnections). */
  maxConnections?: number | string | undefined;
  /** Default deadline of its calls, ms. Default 5000. */
  timeout?: number | string | undefined;
  /** Ms. Default 30000. */
  healthCheckInterval?: number | string | undefined;
  /** First backoff delay of its clients, ms. Default 1000. */
  reconnectDelay?: number | string | undefined;
  /** Unknown keys are ignored, with one process warning per name. */
  [extra: string]: unknown;
}

export interface ServiceMetrics {
  requests: number;
  /** Every failed call, timeouts included. */
  errors: number;
  timeouts: number;
  /** The last 1,024 calls over the time from the earliest start among them to now (a stream from its start). */
  requestsPerS: number;
  latencyMs: { avg: number | null; p50: number | null; p99: number | null };
}

/** Named backend services for a gateway. */
export declare class ServiceClient {
  /** `options`: every service's LoadBalancedClient options, and the app of the gateway's own calls. */
  constructor(services?: Record<string, ServiceSpec>, options?: { appId?: string } & LoadBalancedClientOptions);
  readonly appId: string;
  readonly services: string[];
  /** Adds a service or replaces one (closing the old one's connections); throws on a bad description. */
  configureService(name: string, description: ServiceSpec): this;
  /** Starts every service not started yet; rejects not_connected naming the unreachable ones; the others work. */
  start(): Promise<void>;
  /**
   * Sends a request on channel `method` in the service's app (starting the service on first use); resolves the payload.
   * `timeout` (ms) covers the whole call, the start included; `signal` gives it up with an AbortError.
   */
  request<R = any>(service: string, method: string, data?: unknown, options?: { timeout?: number | string; signal?: AbortSignal }): Promise<R>;
  /**
   * The items `method` streams in the service's app, as LoadBalancedClient.stream() reads them (starting
   * the service on first use, within `timeout`). Counted in metrics() as one call once it ended, its
   * latency the time to its first item; a reader leaving is no error. Throws TypeError for an unknown service.
   */
  stream<T = any>(service: string, method: string, data?: unknown, options?: StreamOptions): Stream<T>;
  metrics(): Record<string, ServiceMetrics>;
  /** One service's metrics; every service's when omitted. */
  getMetrics(service: string): ServiceMetrics;
  getMetrics(): Record<string, ServiceMetrics>;
  status(): Record<string, { healthy: boolean; servers: ServerStats[] }>;
  /** The same as status(). */
  getConnectionStatus(): Record<string, { healthy: boolean; servers: ServerStats[] }>;
  /** Forgets every cached answer (`cacheTtl`) of every service's connections. */
  clearCache(): void;
  shutdown(): Promise<void>;
}

/**
 * Throws MessageError (bad_message) unless `name` is a concrete channel: the
 * rules of docs/protocol.md §4, Python's (at most 512 code points, no token
 * beginning or ending with what str.isspace() calls whitespace, valid
 * Unicode: no lone surrogate), with no `*` or `>` anywhere (a whole-token
 * wildcard is for subscriptions, and `ord*` is no name at all).
 */
export declare function validateChannel(name: string): string;
/**
 * Throws MessageError (bad_message) unless `pattern` is a valid channel or
 * pattern: wildcards are whole tokens (`ord*` is refused), `>` only the last.
 */
export declare function validatePattern(pattern: string): string;
/** Whether `channel` matches `pattern` (`*` one token, `>` one or more trailing tokens). */
export declare function patternMatches(pattern: string, channel: string): boolean;

/** Where the running code is in a trace (docs/tracing.md): hex ids as they travel in `traceparent`. */
export declare class TraceContext {
  constructor(traceId: string, spanId: string, parentId?: string | null, flags?: string, tracestate?: string | null);
  readonly traceId: string;
  /** This hop's own span id. */
  readonly spanId: string;
  /** The sender's span id; null for the root of a trace. */
  readonly parentId: string | null;
  /** `01` (sampled) or `00`: the only flag passed on (docs/tracing.md §1). */
  readonly flags: string;
  /** What the trace's calls send: a received one's valid members, at most 32 and 512 characters (docs/tracing.md §1). */
  readonly tracestate: string | null;
  readonly traceparent: string;
}
/** The trace id the next message sent from here continues (the active OpenTelemetry span's, else the handled message's); null outside any trace. */
export declare function currentTraceId(): string | null;
/** The trace context of the request or delivery a handler is running for; null outside a handler. */
export declare function currentTraceContext(): TraceContext | null;
/** Runs `fn(msg)` in the trace of `msg` (a message handled outside the client's handlers, e.g. from an iterator): its calls continue that trace. */
export declare function withinTrace<M extends Message, R>(msg: M, fn: (msg: M) => R): R;
