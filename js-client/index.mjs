// ESM entry point: re-exports the CommonJS build so both module systems
// share one implementation (and one set of error classes for instanceof).
import cjs from './index.js';

export const {
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
  VERSION,
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
  validateChannel,
  validatePattern,
  patternMatches
} = cjs;

export default cjs;
