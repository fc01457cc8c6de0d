'use strict';

/**
 * ipc-bridge-client: the Node.js client of the Python <-> Node IPC bridge.
 *
 * Only the public API is exported here; the modules in lib/ are internal.
 */

const { IPCClient, State } = require('./lib/client');
const { DEFAULTS, PROTOCOL_VERSION, CLIENT_VERSION } = require('./lib/constants');
const errors = require('./lib/errors');
const { validateChannel, validatePattern, patternMatches } = require('./lib/channels');
const { TraceContext, currentTraceId, currentTraceContext, withinTrace } = require('./lib/tracing');
const { ConnectionPool } = require('./lib/pool');
const { LoadBalancedClient } = require('./lib/load_balanced_client');
const { ServiceClient } = require('./lib/service_client');
const { Strategy } = require('./lib/balancer');
const { CircuitState } = require('./lib/circuit_breaker');
const { Overflow: QueueOverflow } = require('./lib/offline_queue');
const { QueueFileInUseError } = require('./lib/queue_lock');

module.exports = {
  IPCClient,
  CircuitState,
  QueueOverflow,
  ConnectionPool,
  LoadBalancedClient,
  ServiceClient,
  Strategy,
  State,
  DEFAULTS,
  PROTOCOL_VERSION,
  VERSION: CLIENT_VERSION,
  ErrorCode: errors.ErrorCode,
  IpcError: errors.IpcError,
  ProtocolError: errors.ProtocolError,
  FrameError: errors.FrameError,
  FrameTooLargeError: errors.FrameTooLargeError,
  MessageError: errors.MessageError,
  NotConnectedError: errors.NotConnectedError,
  ConnectionLostError: errors.ConnectionLostError,
  RequestTimeoutError: errors.RequestTimeoutError,
  CircuitOpenError: errors.CircuitOpenError,
  QueueFullError: errors.QueueFullError,
  QueueFileError: errors.QueueFileError,
  QueueFileInUseError,
  AlreadyServingError: errors.AlreadyServingError,
  AbortError: errors.AbortError,
  RemoteError: errors.RemoteError,
  NoRespondersError: errors.NoRespondersError,
  ResponderLostError: errors.ResponderLostError,
  HandlerError: errors.HandlerError,
  UnauthorizedError: errors.UnauthorizedError,
  ForbiddenError: errors.ForbiddenError,
  SlowConsumerError: errors.SlowConsumerError,
  ShuttingDownError: errors.ShuttingDownError,
  TooManyConnectionsError: errors.TooManyConnectionsError,
  LimitExceededError: errors.LimitExceededError,
  BadRequestError: errors.BadRequestError,
  IdempotencyConflictError: errors.IdempotencyConflictError,
  validateChannel,
  validatePattern,
  patternMatches,
  TraceContext,
  currentTraceId,
  currentTraceContext,
  withinTrace
};
