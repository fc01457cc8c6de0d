'use strict';

/**
 * Every error the client raises, in one place.
 *
 * Each one is an `Error` with a stable string `.code` taken from the shared
 * list in `interop-tests/spec/error_codes.json` (docs/protocol.md §11). Match
 * on `.code` or on the class, never on the message text:
 *
 *     IpcError                    base class, .code
 *     ├── ProtocolError           bytes or JSON that break the protocol
 *     │   ├── FrameError          bad_frame: zero length, invalid UTF-8/JSON, not an object
 *     │   ├── FrameTooLargeError  too_large: length prefix over the limit (.size, .limit)
 *     │   └── MessageError        bad_message: valid JSON, invalid envelope or value
 *     ├── NotConnectedError       not_connected: the call needs a connection and there is none
 *     ├── ConnectionLostError     connection_lost: the connection dropped mid-call
 *     ├── RequestTimeoutError     timeout: no answer before the deadline (local or remote)
 *     ├── CircuitOpenError        circuit_open: the breaker fails fast (.retryAfter ms)
 *     ├── QueueFullError          queue_full: the offline queue refused or evicted the call
 *     ├── QueueFileError          queue_file: the offline queue's file cannot be opened or written (.path)
 *     ├── AlreadyServingError     already_serving: serve() of a channel this client already serves
 *     ├── AbortError              cancelled: the caller's AbortSignal aborted (`name` 'AbortError', as fetch's)
 *     └── RemoteError             an error response (.remoteType, .remoteStack, .details)
 *         ├── NoRespondersError   no_responders
 *         ├── ResponderLostError  responder_lost
 *         ├── HandlerError        handler_error
 *         ├── UnauthorizedError   unauthorized
 *         ├── ForbiddenError      forbidden
 *         ├── SlowConsumerError   slow_consumer
 *         ├── ShuttingDownError   shutting_down
 *         ├── TooManyConnectionsError too_many_connections
 *         ├── LimitExceededError  limit_exceeded
 *         ├── BadRequestError     bad_request: a typed handler refused the payload (.errors)
 *         └── IdempotencyConflictError idempotency_conflict: the key was used for another request
 *
 * A RemoteError with code `too_large` (§12.3) is also `instanceof
 * FrameTooLargeError`, as Python's `TooLarge` is a `FrameTooLarge`.
 *
 * The Python package has the same tree (`ipc_protocol.exceptions`), so code
 * reading `.code` behaves the same in both languages.
 */

const { describeThrown, safeGet, safeInstanceOf, safeString } = require('./thrown');

/** The shared error codes; a unit test checks this equals error_codes.json. */
const ErrorCode = Object.freeze({
  BAD_FRAME: 'bad_frame',
  TOO_LARGE: 'too_large',
  BAD_MESSAGE: 'bad_message',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN: 'forbidden',
  NO_RESPONDERS: 'no_responders',
  TIMEOUT: 'timeout',
  RESPONDER_LOST: 'responder_lost',
  HANDLER_ERROR: 'handler_error',
  SLOW_CONSUMER: 'slow_consumer',
  SHUTTING_DOWN: 'shutting_down',
  TOO_MANY_CONNECTIONS: 'too_many_connections',
  LIMIT_EXCEEDED: 'limit_exceeded',
  BAD_REQUEST: 'bad_request',
  IDEMPOTENCY_CONFLICT: 'idempotency_conflict',
  NOT_CONNECTED: 'not_connected',
  CONNECTION_LOST: 'connection_lost',
  CIRCUIT_OPEN: 'circuit_open',
  QUEUE_FULL: 'queue_full',
  QUEUE_FILE: 'queue_file',
  ALREADY_SERVING: 'already_serving',
  CANCELLED: 'cancelled'
});

/**
 * Base class of every error raised by the client.
 */
class IpcError extends Error {
  /**
   * @param {string} code one of `ErrorCode`.
   * @param {string} [message] human-readable text; not part of the contract.
   * @param {{cause?: unknown}} [options] the underlying error, if any.
   */
  constructor(code, message, options) {
    super(message || code, options);
    this.name = this.constructor.name;
    this.code = code;
  }
}

/** The peer sent bytes that break the protocol; the connection cannot continue. */
class ProtocolError extends IpcError {}

/** A frame is malformed: zero length, invalid UTF-8 or JSON, or not an object. */
class FrameError extends ProtocolError {
  /**
   * @param {string} message what was wrong.
   * @param {{cause?: unknown}} [options]
   */
  constructor(message, options) {
    super(ErrorCode.BAD_FRAME, message, options);
  }
}

/**
 * A frame's length is over the limit; raised on the prefix, before buffering.
 * A server's `too_large` answer (docs/protocol.md §12.3: over the limit its
 * receiver declared), a RemoteError, is an instance too, as Python's
 * `TooLarge` is a `FrameTooLarge`: one check covers both (it has no `.size` or `.limit`).
 */
class FrameTooLargeError extends ProtocolError {
  /**
   * @param {number} size the announced (or attempted) body length in bytes.
   * @param {number} limit the limit in force, in bytes.
   */
  constructor(size, limit) {
    super(ErrorCode.TOO_LARGE, `frame of ${size} bytes exceeds the limit of ${limit} bytes`);
    this.size = size;
    this.limit = limit;
  }

  /**
   * @param {unknown} value
   * @returns {boolean} a FrameTooLargeError, or a RemoteError with code `too_large`.
   */
  static [Symbol.hasInstance](value) {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    return this === FrameTooLargeError && value instanceof RemoteError && value.code === ErrorCode.TOO_LARGE;
  }
}

/** Valid JSON that is not a valid envelope, or a value that cannot be sent. */
class MessageError extends ProtocolError {
  /**
   * @param {string} message what was wrong.
   * @param {{cause?: unknown}} [options]
   */
  constructor(message, options) {
    super(ErrorCode.BAD_MESSAGE, message, options);
  }
}

/** The call needs a connection and the client has none (never connected, or closed). */
class NotConnectedError extends IpcError {
  /**
   * @param {string} [message]
   * @param {{cause?: unknown}} [options]
   */
  constructor(message = 'not connected', options) {
    super(ErrorCode.NOT_CONNECTED, message, options);
  }
}

/** The connection dropped before the call completed. */
class ConnectionLostError extends IpcError {
  /**
   * @param {string} [message]
   * @param {{cause?: unknown}} [options]
   */
  constructor(message = 'connection lost', options) {
    super(ErrorCode.CONNECTION_LOST, message, options);
  }
}

/** No answer before the deadline, locally or in the server (`.remote` tells which). */
class RequestTimeoutError extends IpcError {
  /**
   * @param {string} [message]
   * @param {{remote?: boolean}} [options] `remote: true` when the server gave up.
   */
  constructor(message = 'request timed out', { remote = false } = {}) {
    super(ErrorCode.TIMEOUT, message);
    this.remote = remote;
  }
}

/** The circuit breaker is open: the call failed fast without being sent. */
class CircuitOpenError extends IpcError {
  /**
   * @param {string} [message]
   * @param {{retryAfter?: number}} [options] ms until the breaker lets a trial call through.
   */
  constructor(message = 'circuit open', { retryAfter = 0 } = {}) {
    super(ErrorCode.CIRCUIT_OPEN, message);
    /** Milliseconds until the breaker lets a trial call through. */
    this.retryAfter = retryAfter;
  }
}

/** The offline queue refused the call, or evicted it to make room (docs/resilience.md §4). */
class QueueFullError extends IpcError {
  /** @param {string} [message] */
  constructor(message = 'queue full') {
    super(ErrorCode.QUEUE_FULL, message);
  }
}

/**
 * The offline queue's file (`queuePath`, `.path`) cannot be opened, read or written,
 * or is not a queue file (docs/resilience.md §4); `.cause` is the file system's error.
 */
class QueueFileError extends IpcError {
  /**
   * @param {string} message what failed, naming the option and the path.
   * @param {{path: string, cause?: unknown}} info
   */
  constructor(message, { path, cause }) {
    super(ErrorCode.QUEUE_FILE, message, cause === undefined ? undefined : { cause });
    this.path = path; // absolute
  }
}

/** serve() of a channel (or pattern) this client already serves; unserve() it first. */
class AlreadyServingError extends IpcError {
  /**
   * @param {string} channel the channel or pattern.
   */
  constructor(channel) {
    super(ErrorCode.ALREADY_SERVING, `already serving '${channel}'; unserve() it first`);
    /** The channel or pattern already served. */
    this.channel = channel;
  }
}

/**
 * The caller gave up: the call's `signal` aborted (docs/protocol.md §15.4).
 * Its `name` is 'AbortError', as fetch's; `cause` is the signal's reason.
 */
class AbortError extends IpcError {
  /**
   * @param {string} [message]
   * @param {{cause?: unknown}} [options]
   */
  constructor(message = 'the call was aborted', options) {
    super(ErrorCode.CANCELLED, message, options);
  }
}

/**
 * The server or a responder answered with an error (docs/protocol.md §6).
 */
class RemoteError extends IpcError {
  /**
   * @param {string} code the wire error code.
   * @param {string} [message] the remote message.
   * @param {{remoteType?: string|null, remoteStack?: string|null, details?: unknown, cause?: unknown}} [info]
   *   `cause`, when given (undefined included), becomes the Error's own `cause`.
   */
  constructor(code, message, info = {}) {
    const { remoteType = null, remoteStack = null, details = null } = info;
    super(code, message, info !== null && typeof info === 'object' && 'cause' in info ? { cause: info.cause } : undefined);
    /** The exception type on the remote side (`ValueError`, `TypeError`...). */
    this.remoteType = remoteType;
    /** The remote stack trace, when the remote side shares it. */
    this.remoteStack = remoteStack;
    /** Optional JSON details sent with the error. */
    this.details = details;
  }
}

/**
 * Builds a RemoteError subclass bound to one code.
 * @param {string} name the class name.
 * @param {string} code the code it carries.
 * @returns {typeof RemoteError}
 * @private
 */
function remoteClass(name, code) {
  return {
    [name]: class extends RemoteError {
      /**
       * @param {string} [message]
       * @param {{remoteType?: string|null, remoteStack?: string|null, details?: unknown}} [info]
       */
      constructor(message, info) {
        super(code, message, info);
      }
    }
  }[name];
}

const NoRespondersError = remoteClass('NoRespondersError', ErrorCode.NO_RESPONDERS);
const ResponderLostError = remoteClass('ResponderLostError', ErrorCode.RESPONDER_LOST);
const HandlerError = remoteClass('HandlerError', ErrorCode.HANDLER_ERROR);
const UnauthorizedError = remoteClass('UnauthorizedError', ErrorCode.UNAUTHORIZED);
const ForbiddenError = remoteClass('ForbiddenError', ErrorCode.FORBIDDEN);
const SlowConsumerError = remoteClass('SlowConsumerError', ErrorCode.SLOW_CONSUMER);
const ShuttingDownError = remoteClass('ShuttingDownError', ErrorCode.SHUTTING_DOWN);
const TooManyConnectionsError = remoteClass('TooManyConnectionsError', ErrorCode.TOO_MANY_CONNECTIONS);
const LimitExceededError = remoteClass('LimitExceededError', ErrorCode.LIMIT_EXCEEDED);
/** The idempotency key was used, within the server's window, for another request: nothing ran (docs/protocol.md §6.6). */
const IdempotencyConflictError = remoteClass('IdempotencyConflictError', ErrorCode.IDEMPOTENCY_CONFLICT);

/**
 * A typed handler refused the request's payload: it does not match the
 * handler's contract (docs/typed-contracts.md). `.details` is
 * `{errors: [...]}`; `.errors` is that list.
 */
class BadRequestError extends RemoteError {
  /**
   * @param {string} [message]
   * @param {{remoteType?: string|null, remoteStack?: string|null, details?: unknown}} [info]
   */
  constructor(message, info) {
    super(ErrorCode.BAD_REQUEST, message, info);
  }

  /** @returns {Array<{loc: Array<string|number>, msg: string, type: string}>} the field errors. */
  get errors() {
    const errors = this.details && this.details.errors;
    return Array.isArray(errors) ? errors : [];
  }
}

const REMOTE_CLASSES = new Map(
  [NoRespondersError, ResponderLostError, HandlerError, UnauthorizedError, ForbiddenError, SlowConsumerError, ShuttingDownError,
    TooManyConnectionsError, LimitExceededError, BadRequestError, IdempotencyConflictError].map((Cls) => [new Cls().code, Cls])
);

/**
 * Turns an envelope's `error` object into the matching error instance.
 *
 * A remote `timeout` becomes a RequestTimeoutError (with `remote: true`) so
 * one check covers a local and a server-side deadline, as in Python.
 *
 * @param {{code: string, message?: string, details?: unknown, remote_type?: string, remote_stack?: string}} error
 * @returns {IpcError}
 */
function errorFromWire(error) {
  const code = (error && typeof error.code === 'string' && error.code) || ErrorCode.HANDLER_ERROR;
  const message = (error && typeof error.message === 'string' && error.message) || '';
  if (code === ErrorCode.TIMEOUT) {
    return new RequestTimeoutError(message || 'the request timed out remotely', { remote: true });
  }
  const info = {
    remoteType: error.remote_type ?? null,
    remoteStack: error.remote_stack ?? null,
    details: error.details ?? null
  };
  const Cls = REMOTE_CLASSES.get(code);
  return Cls ? new Cls(message, info) : new RemoteError(code, message, info);
}

/**
 * Describes an error thrown by a responder handler for the wire (§6.3).
 *
 * A RemoteError thrown on purpose keeps its code (a ForbiddenError); anything
 * else, this client's local errors too (a downstream NotConnectedError), is
 * `handler_error` with the error's name as `remote_type`, as in Python. Never
 * throws (lib/thrown.js): a value with no string form reads as its tag
 * (`[object Object]`). Whether the result can be encoded is the sender's
 * business (lib/replies.js).
 *
 * @param {unknown} err what the handler threw.
 * @param {{exposeStacks?: boolean}} [options] include `remote_stack`.
 * @returns {{code: string, message: string, details?: unknown, remote_type?: string, remote_stack?: string}}
 */
function errorToWire(err, { exposeStacks = false } = {}) {
  const { isError, name, message } = describeThrown(err);
  const out = { code: ErrorCode.HANDLER_ERROR, message };
  const remote = safeInstanceOf(err, RemoteError);
  const code = remote ? safeGet(err, 'code') : undefined;
  if (typeof code === 'string' && code !== '') out.code = code;
  const details = remote ? safeGet(err, 'details') : undefined;
  if (details != null) out.details = details;
  const remoteType = (remote && safeGet(err, 'remoteType')) || name;
  if (remoteType) out.remote_type = safeString(remoteType);
  if (exposeStacks && isError) {
    const stack = safeGet(err, 'stack');
    if (typeof stack === 'string') out.remote_stack = stack;
  }
  return out;
}

module.exports = {
  ErrorCode,
  IpcError,
  ProtocolError,
  FrameError,
  FrameTooLargeError,
  MessageError,
  NotConnectedError,
  ConnectionLostError,
  RequestTimeoutError,
  CircuitOpenError,
  QueueFullError,
  QueueFileError,
  AlreadyServingError,
  AbortError,
  RemoteError,
  NoRespondersError,
  ResponderLostError,
  HandlerError,
  UnauthorizedError,
  ForbiddenError,
  SlowConsumerError,
  ShuttingDownError,
  TooManyConnectionsError,
  LimitExceededError,
  BadRequestError,
  IdempotencyConflictError,
  errorFromWire,
  errorToWire
};
