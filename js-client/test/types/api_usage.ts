// The whole public API of ipc-bridge-client as an application uses it: must
// compile with `tsc --strict --noEmit`. interop-tests/test_types_node.py
// compiles it as CommonJS (.cts, and .ts with the classic node10 resolution)
// and as ESM (.mts), importing the package by name through node_modules, so
// package.json's `exports` and `types` are what resolve it. Each type named
// here was checked against lib/*.js; `exact<T>()(value)` pins a type exactly.
// Nothing here runs: the functions only have to type-check.
import {
  IPCClient,
  ConnectionPool,
  LoadBalancedClient,
  ServiceClient,
  CircuitState,
  QueueOverflow,
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
  QueueFileError,
  QueueFileInUseError,
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
  patternMatches,
  TraceContext,
  currentTraceId,
  currentTraceContext,
  withinTrace
} from 'ipc-bridge-client';
import type {
  BinaryLike,
  Received,
  CallOptions,
  BalancedCallOptions,
  BalancedPublishOptions,
  NumericSetting,
  NumericSettingOptions,
  NumericString,
  ChannelContract,
  CircuitBreakerOptions,
  CircuitSnapshot,
  CircuitStateValue,
  ClientMetrics,
  ConnectionHealth,
  ConnectionInfo,
  ConnectionPoolEvents,
  ConnectionPoolOptions,
  ConnectionPoolSettings,
  ContractChannel,
  ContractMap,
  ErrorCodeValue,
  FieldError,
  HandshakeInfo,
  HealthCheckResult,
  IPCClientEvents,
  IPCClientOptions,
  IPCClientSettings,
  IteratorOptions,
  LoadBalancedClientEvents,
  LoadBalancedClientOptions,
  Message,
  MessageHandler,
  MessageType,
  PoolStats,
  QueueOverflowValue,
  QueueStats,
  RemoteErrorInfo,
  ReportedError,
  RequestIterator,
  ServeContext,
  ServeHandler,
  ServeOptions,
  ServeSchema,
  ServedRequest,
  ServerSpec,
  ServerStats,
  ServiceMetrics,
  ServiceSpec,
  StateValue,
  Stream,
  StreamOptions,
  StrategyValue,
  SubscriptionIterator,
  TypedClient,
  WireError
} from 'ipc-bridge-client';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';

/** `exact<T>()(value)` compiles only when value's type is exactly T. */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function exact<T>() {
  return <V,>(value: V & (Equal<V, T> extends true ? unknown : never)): V => value;
}

// -- constants and enums (lib/constants.js, state.js, errors.js, balancer.js, ...) --------

export function constants(): void {
  exact<2>()(PROTOCOL_VERSION);
  exact<string>()(VERSION);
  const states: StateValue[] = [State.DISCONNECTED, State.CONNECTING, State.CONNECTED, State.RECONNECTING, State.DISCONNECTING];
  exact<'connected'>()(State.CONNECTED);
  const circuits: CircuitStateValue[] = [CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN];
  const overflows: QueueOverflowValue[] = [QueueOverflow.REJECT, QueueOverflow.DROP_OLDEST, QueueOverflow.DROP_LOWEST_PRIORITY];
  const strategies: StrategyValue[] = [Strategy.ROUND_ROBIN, Strategy.LEAST_CONNECTIONS, Strategy.WEIGHTED, Strategy.RANDOM];
  const codes: ErrorCodeValue[] = Object.values(ErrorCode);
  exact<'too_many_connections'>()(ErrorCode.TOO_MANY_CONNECTIONS);
  exact<'already_serving'>()(ErrorCode.ALREADY_SERVING);
  const types: MessageType[] = ['request', 'response', 'notification', 'publish', 'subscribe', 'unsubscribe'];
  // DEFAULTS: every setting IPCClient keeps (lib/constants.js), complete.
  const d = DEFAULTS;
  const host: string = d.host;
  const port: number = d.port;
  const numbers: number[] = [
    d.connectTimeout, d.maxRetries, d.initialDelay, d.maxDelay, d.multiplier, d.jitter, d.requestTimeout,
    d.queueMaxSize, d.queueMaxBytes, d.maxConcurrentHandlers
  ]; // prettier-ignore
  const nullable: Array<number | null> = [d.heartbeatInterval, d.heartbeatTimeout, d.maxFrameSize];
  const flags: boolean[] = [d.reconnect, d.exposeStacks, d.waitOnFirstConnect];
  const strings: Array<string | null> = [d.queuePath, d.token, d.user, d.connectionId];
  const policy: 'queue' | 'fail' = d.onDisconnect;
  const overflow: QueueOverflowValue = d.queueOverflow;
  const breaker: CircuitBreakerOptions | boolean | null = d.circuitBreaker;
  const tls: boolean | TlsConnectionOptions | null = d.tls;
  void [states, circuits, overflows, strategies, codes, types, host, port, numbers, nullable, flags, strings, policy, overflow, breaker, tls];
}

export function tracing(): string | null {
  const ctx: TraceContext | null = currentTraceContext();
  const made = new TraceContext('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7');
  const fields: Array<string | null> = [made.traceId, made.spanId, made.parentId, made.flags, made.tracestate, made.traceparent];
  void [ctx, fields];
  return currentTraceId();
}

export function handledOutsideAHandler(msg: Message): Promise<unknown> {
  return withinTrace(msg, (m: Message) => Promise.resolve(m.payload));
}

export function channels(): boolean {
  const channel: string = validateChannel('orders.created');
  const pattern: string = validatePattern('orders.*.>');
  return patternMatches(pattern, channel);
}

// -- IPCClient: every option ------------------------------------------------------------

export function everyOption(): IPCClient[] {
  const settings: Required<IPCClientSettings> = {
    host: '127.0.0.1',
    port: 8888,
    connectTimeout: 10_000,
    reconnect: true,
    maxRetries: Infinity,
    initialDelay: 500,
    maxDelay: 30_000,
    multiplier: 2,
    jitter: 0.5,
    heartbeatInterval: null,
    heartbeatTimeout: null,
    requestTimeout: 30_000,
    queueMaxSize: 1000,
    queueMaxBytes: 8 * 1024 * 1024,
    queueOverflow: 'drop_lowest_priority',
    queuePath: '/var/lib/app/outbox.jsonl',
    onDisconnect: 'fail',
    circuitBreaker: {
      failureThreshold: 5,
      resetTimeout: 30_000,
      successThreshold: 2,
      halfOpenMaxCalls: 1,
      scope: 'client',
      fallback: (channel, payload, error) => ({ channel, payload, retryAfter: error.retryAfter }),
      isFailure: (error) => error instanceof IpcError && error.code === ErrorCode.TIMEOUT
    },
    maxFrameSize: 1 << 20,
    token: 's3cret',
    user: 'billing',
    tls: { ca: '-----BEGIN CERTIFICATE-----', cert: 'pem', key: 'pem', servername: 'bridge.internal', rejectUnauthorized: true },
    connectionId: 'billing-1',
    maxConcurrentHandlers: 64,
    maxHeldMessages: 65_536,
    highWaterMark: 64,
    exposeStacks: false,
    cacheMaxEntries: 1000,
    waitOnFirstConnect: true
  };
  const legacy: IPCClientOptions = { connectionTimeout: '5000', reconnectAttempts: 3, reconnectDelay: 1000, somethingElse: 'ignored, with a warning' };
  // Every numeric setting also as a numeric string (from the environment), converted by lib/options.js.
  const fromEnv: IPCClientOptions = {
    port: '8888', connectTimeout: '10000', maxRetries: '10', initialDelay: '500', maxDelay: '30000', multiplier: '2', jitter: '0.5',
    heartbeatInterval: '5000', heartbeatTimeout: '15000', requestTimeout: '30000', queueMaxSize: '1000', queueMaxBytes: '8388608',
    maxFrameSize: '1048576', maxConcurrentHandlers: '64', highWaterMark: '64', cacheMaxEntries: '1000'
  }; // prettier-ignore
  const resolved: number = new IPCClient('billing', fromEnv).options.port; // read back as numbers
  // process.env's values as they are (string | undefined: undefined is the default), as the README writes
  // them; text that is not a number ('eighty', '') compiles and throws TypeError when the client is made.
  const env: Record<string, string | undefined> = process.env;
  const fromProcessEnv = [
    new IPCClient('billing', { port: env.IPC_PORT, connectTimeout: env.TIMEOUT, heartbeatInterval: env.HEARTBEAT_MS, reconnectDelay: env.DELAY }),
    new ConnectionPool('billing', { port: env.IPC_PORT, minConnections: env.POOL_MIN, acquireTimeout: env.ACQUIRE_MS }),
    new LoadBalancedClient('billing', ['a:1'], { healthCheckInterval: env.CHECK_MS, maxConnections: env.POOL_MAX, requestTimeout: env.TIMEOUT }),
    new ServiceClient({ users: { port: env.USERS_PORT, timeout: env.USERS_TIMEOUT, minConnections: env.POOL_MIN } })
  ];
  void [resolved, fromProcessEnv];
  const numeric: NumericString = '8888';
  const names: NumericSetting[] = ['port', 'requestTimeout'];
  const partial: NumericSettingOptions = { port: numeric, heartbeatInterval: null };
  void [names, partial];
  return [
    new IPCClient('billing', settings),
    new IPCClient('billing', legacy),
    new IPCClient('billing'),
    new IPCClient('billing', { tls: true, circuitBreaker: true, heartbeatInterval: 5000, heartbeatTimeout: 15_000 }),
    new IPCClient('billing', { tls: false, circuitBreaker: false, maxRetries: 10, queueMaxSize: 0 }),
    new IPCClient('billing', { tls: null, circuitBreaker: null, queueOverflow: QueueOverflow.DROP_OLDEST, onDisconnect: 'queue' })
  ];
}

// -- IPCClient: calls ---------------------------------------------------------------

interface Order {
  id: string;
  total: number;
}

export async function calls(client: IPCClient): Promise<void> {
  exact<Promise<true>>()(client.connect());
  exact<string>()(client.appId);
  exact<StateValue>()(client.state);
  exact<boolean>()(client.connected);
  exact<string | null>()(client.connectionId);
  const port: number = client.options.port;
  const breaker: CircuitBreakerOptions | boolean | null = client.options.circuitBreaker;

  const message: Message<Order> = await client.sendRequest<Order>('orders.get', { id: 'o-1' });
  const fields: [string, string, string, MessageType, Order, number, string | null] = [
    message.message_id, message.app_id, message.channel_id, message.message_type, message.payload, message.timestamp, message.reply_to
  ]; // prettier-ignore
  const headers: Record<string, string> | undefined = message.headers;
  const wire: WireError | undefined = message.error;
  const left: number | undefined = message.timeout_ms;
  const acked: boolean | undefined = message.ack;

  const order: Order = await client.request<Order>('orders.get', { id: 'o-1' }, 5000);
  const untyped: unknown = await client.request('orders.get');
  const full: CallOptions = { headers: { traceparent: '00-abc-def-01' }, priority: 5, onDisconnect: 'queue', timeout: 2500 };
  await client.sendRequest('orders.get', null, full);
  await client.sendRequest('orders.get', null, 1000, { priority: 1 });
  await client.request('orders.pay', { id: 'o-1' }, { idempotencyKey: 'pay-o-1', timeout: 5000 });
  await client.request('orders.get', null, { timeout: 100, onDisconnect: 'fail' });

  const stats: { connections: number } = await client.system<{ connections: number }>('stats');
  await client.system('ping', { timeout: 1000 });

  exact<{ delivered: number | null }>()(await client.publish('orders.created', order, { ack: true }));
  exact<undefined>()(await client.publish('orders.created', order));
  exact<undefined>()(await client.publish('orders.created', order, { ack: false, headers: { a: 'b' }, priority: 2, timeout: 100 }));
  const wanted: boolean = Math.random() > 0.5;
  exact<{ delivered: number | null } | undefined>()(await client.publish('orders.created', order, { ack: wanted }));
  exact<void>()(await client.notify('audit.log', { line: 'x' }, { headers: { who: 'me' }, onDisconnect: 'fail' }));
  await client.notify('audit.log', 'x');
  const drained: boolean = await client.drain({ timeout: 5000 });
  exact<boolean>()(await client.drain());
  await client.disconnect();
  void [port, breaker, fields, headers, wire, left, acked, order, untyped, stats, drained];
}

export async function registrations(client: IPCClient): Promise<void> {
  const onOrder: MessageHandler<Order> = (msg) => msg.payload.total;
  await client.subscribe<Order>('orders.*', onOrder);
  await client.subscribe('orders.>', async (msg) => void msg.channel_id, { timeout: 1000 });
  await client.unsubscribe('orders.*', onOrder);
  await client.unsubscribe('orders.>');

  const schema: ServeSchema = { request: { type: 'object', required: ['id'] }, response: true };
  const options: ServeOptions = { timeout: 1000, schema };
  await client.serve<{ id: string }>('orders.get', async (msg) => ({ id: msg.payload.id, total: 1 }), options);
  await client.serve('system', (msg) => (msg.payload as { action: string }).action === 'get_time' ? Date.now() : null);
  await client.serve('orders.slow', () => new Promise((resolve) => setTimeout(resolve, 10)));
  await client.unserve('orders.get');
}

export async function streamsAndCancellation(client: IPCClient): Promise<void> {
  const controller = new AbortController();
  exact<Promise<true>>()(client.connect({ signal: controller.signal }));
  const order: Order = await client.request<Order>('orders.get', { id: 'o-1' }, { signal: controller.signal, timeout: 100 });
  await client.sendRequest('orders.get', null, 1000, { signal: AbortSignal.timeout(50) });
  exact<{ delivered: number | null }>()(await client.publish('orders.created', order, { ack: true, signal: controller.signal }));
  const options: StreamOptions = { timeout: 60_000, idleTimeout: 5000, window: 16, signal: controller.signal, headers: { a: 'b' } };
  const ticks: Stream<number> = client.stream<number>('ticks', { symbol: 'ACME' }, options);
  for await (const tick of ticks) exact<number>()(tick);
  exact<string>()(ticks.channelId);
  exact<IteratorResult<number, undefined>>()(await ticks.return());
  for await (const item of client.stream('ticks')) void item;
  const ticker: ServeHandler<{ n: number }> = async function* (msg, ctx: ServeContext) {
    for (let i = 0; i < msg.payload.n && !ctx.signal.aborted; i++) yield i;
  };
  await client.serve('ticks', ticker);
  await client.serve('slow', (msg, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(ctx.cancelled))));
  exact<number>()(client.getMetrics().lateAnswers);
  exact<number>()(client.getMetrics().producersDetached);
  controller.abort();
}

export async function introspection(client: IPCClient): Promise<void> {
  exact<boolean>()(await client.healthCheck());
  await client.healthCheck({ timeout: 500 });
  const health: HealthCheckResult = await client.health({ timeout: 500 });
  const h: [boolean, StateValue, number | null, string | null, string | null, string | undefined] = [
    health.healthy, health.state, health.latencyMs, health.connectionId, health.server, health.error
  ]; // prettier-ignore
  const info: ConnectionInfo = client.getConnectionInfo();
  const i: Array<unknown> = [
    info.appId, info.host, info.port, info.state, info.connected, info.connectionId, info.protocol, info.server, info.maxFrameSize,
    info.heartbeatIntervalMs, info.heartbeatTimeoutMs, info.reconnectAttempt, info.pendingRequests, info.queuedCalls,
    info.runningHandlers, info.heldMessages, info.subscriptions.join(), info.responders.join()
  ]; // prettier-ignore
  const ch: ConnectionHealth = client.getConnectionHealth();
  const c: Array<number | null | boolean | string> = [
    ch.healthy, ch.state, ch.lastHeartbeat, ch.lastReceived, ch.latencyMs, ch.heartbeatIntervalMs, ch.heartbeatTimeoutMs
  ]; // prettier-ignore
  const m: ClientMetrics = client.getMetrics();
  const counters: number[] = [
    m.connectionAttempts, m.connectionSuccesses, m.connectionSuccessRate, m.reconnections, m.averageReconnectionTimeMs,
    m.messagesSent, m.messagesDelivered, m.messagesFailed, m.messageDeliveryRate, m.activeConnections,
    m.averageConnectionDurationMs, m.queued, m.queuedBytes, m.queueDropped,
    m.cacheHits, m.cacheMisses, m.cacheSize, m.requestsCoalesced, m.iteratorDropped
  ]; // prettier-ignore
  const q: QueueStats = client.queueStats();
  const queue: Array<number | Record<string, number>> = [q.size, q.bytes, q.maxSize, q.maxBytes, q.dropped, q.byPriority];
  const breakers: Record<string, CircuitSnapshot> = client.circuitBreakers();
  for (const snap of Object.values(breakers)) {
    const s: Array<string | number | null> = [
      snap.key, snap.state, snap.consecutiveFailures, snap.consecutiveSuccesses, snap.failures, snap.successes, snap.rejected, snap.openedAt
    ]; // prettier-ignore
    void s;
  }
  void [h, i, c, counters, queue];
}

// -- IPCClient: iterators and shared calls (README "Iterating over messages and requests") --

export async function iterators(client: IPCClient): Promise<void> {
  const options: IteratorOptions = { maxBuffered: 100, overflow: 'error', timeout: 1000 };
  const sub: SubscriptionIterator<Order> = await client.subscription<Order>('orders.*', options).ready();
  for await (const msg of sub) {
    exact<Order>()(msg.payload);
    if (sub.buffered > 10) break;
  }
  const facts: Array<string | number | boolean> = [sub.channel, sub.maxBuffered, sub.overflow, sub.dropped, sub.closed];
  exact<IteratorResult<Message<Order>, undefined>>()(await sub.next());
  await sub.unsubscribe();
  const jobs: RequestIterator<Order, number> = client.requests<Order, number>('jobs.*', { overflow: 'drop_oldest' });
  for await (const req of jobs) {
    const r: ServedRequest<Order, number> = req;
    const sent: boolean = r.payload.total > 0 ? r.respond(r.payload.total) : r.fail(new RangeError('no total'));
    const seen: Array<string | boolean | Record<string, string> | null> = [r.channel, r.answered, r.headers, r.message.message_id];
    void [sent, seen];
  }
  await jobs.return();
  const shared: Message<number> = await client.sendRequest<number>('prices.get', { sku: 'A-1' }, { coalesce: true, cacheTtl: 60_000 });
  exact<number>()(await client.request<number>('prices.get', { sku: 'A-1' }, 1000, { cacheTtl: 5000 }));
  client.clearCache();
  void [facts, shared];
}

// -- IPCClient: events ------------------------------------------------------------------

export function events(client: IPCClient): void {
  client
    .on('connecting', () => undefined)
    .on('connected', (info: HandshakeInfo) => {
      const parts: [string, number, string | null, number | null, number, boolean, string | null] = [
        info.connectionId, info.protocol, info.server, info.heartbeatIntervalMs, info.maxFrameSize, info.legacy, info.cluster
      ]; // prettier-ignore
      void parts;
    })
    .on('reconnected', ({ attempts, elapsed }) => attempts + elapsed)
    .on('disconnected', (error) => `${error?.code} ${error?.message}`) // a socket's ECONNRESET, an IpcError's code
    .on('reconnecting', ({ attempt, delay }) => attempt * delay)
    .on('reconnect_failed', (attempts) => attempts.toFixed())
    .on('heartbeat', ({ latency }) => latency.toFixed(1))
    .on('heartbeat_timeout', ({ silent }) => silent.toFixed())
    .on('queue_dropped', ({ reason, channel, messageType, priority }) => {
      const why: 'expired' | 'evicted' | 'gave_up' | 'refused' = reason;
      void [why, channel, messageType, priority];
    })
    .on('circuit_open', (snapshot) => snapshot.openedAt)
    .on('circuit_half_open', (snapshot) => snapshot.state)
    .on('circuit_closed', (snapshot) => snapshot.key)
    .on('lame_duck', ({ deadlineMs }) => deadlineMs.toFixed())
    .on('message', (msg) => msg.payload)
    .on('ping', ({ messageId }) => messageId.length)
    .on('error', (error) => `${error.code} ${error.message}`) // always an Error (a thrown string as a HandlerError)
    .on('close', () => undefined);
  client.once('connected', (info) => info.connectionId);
  const listener = (error: Error | null): void => void error;
  client.off('disconnected', listener);
  exact<boolean>()(client.emit('heartbeat', { latency: 1 }));
  const removers: Array<() => void> = [
    client.onConnected((info) => void info.maxFrameSize),
    client.onDisconnected((error) => void error),
    client.onError((error) => void [error.stack, error.code])
  ];
  removers.forEach((remove) => remove());
  const names: Array<keyof IPCClientEvents> = ['connecting', 'close'];
  client.removeAllListeners();
  void [names, client.listenerCount('error')];
}

// -- errors: every class, its code and its fields (lib/errors.js) -----------------------------

export async function errors(client: IPCClient): Promise<string> {
  try {
    await client.request('orders.get');
  } catch (err) {
    if (err instanceof BadRequestError) {
      const first: FieldError | undefined = err.errors[0];
      return `${first?.loc.join('.')}: ${first?.msg} (${first?.type})`;
    }
    if (err instanceof RemoteError) {
      const remote: [string, string | null, string | null, unknown] = [err.code, err.remoteType, err.remoteStack, err.details];
      return remote.join();
    }
    if (err instanceof RequestTimeoutError) return `${exact<'timeout'>()(err.code)} remote=${exact<boolean>()(err.remote)}`;
    if (err instanceof CircuitOpenError) return `${exact<'circuit_open'>()(err.code)} ${exact<number>()(err.retryAfter)}`;
    if (err instanceof FrameTooLargeError) {
      // refused here: size and limit; a server's answer (a RemoteError) has neither
      const sizes: [number | undefined, number | undefined] = [err.size, err.limit];
      return err.size !== undefined && err.limit !== undefined ? `over by ${err.size - err.limit}` : `${exact<'too_large'>()(err.code)} ${sizes.join()}`;
    }
    if (err instanceof AlreadyServingError) return `${exact<'already_serving'>()(err.code)} ${exact<string>()(err.channel)}`;
    if (err instanceof NotConnectedError) return `${exact<'not_connected'>()(err.code)} ${String(err.cause)}`;
    if (err instanceof ConnectionLostError) return exact<'connection_lost'>()(err.code);
    if (err instanceof AbortError) return `${exact<'cancelled'>()(err.code)} ${exact<'AbortError'>()(err.name)} ${String(err.cause)}`;
    if (err instanceof QueueFullError) return exact<'queue_full'>()(err.code);
    if (err instanceof QueueFileInUseError) return `${exact<'queue_file'>()(err.code)} ${exact<'EQUEUELOCKED'>()(err.reason)} ${exact<string>()(err.path)}`;
    if (err instanceof QueueFileError) return `${exact<'queue_file'>()(err.code)} ${exact<string>()(err.path)} ${String(err.cause)}`;
    if (err instanceof FrameError) return exact<'bad_frame'>()(err.code);
    if (err instanceof MessageError) return exact<'bad_message'>()(err.code);
    if (err instanceof ProtocolError) return err.code;
    if (err instanceof IpcError) return `${err.name} ${err.code} ${err.message} ${err.stack}`;
  }
  const info: RemoteErrorInfo = { remoteType: 'ValueError', remoteStack: null, details: { field: 'x' } };
  const reported: ReportedError[] = [
    new NotConnectedError(),
    Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
    new HandlerError('a string, not an Error', { remoteType: 'string', cause: 'a string, not an Error' })
  ];
  void reported.map((e) => (e instanceof IpcError ? e.code.toUpperCase() : `${e.code ?? e.name}: ${e.message}`));
  const made: IpcError[] = [
    new IpcError(ErrorCode.BAD_MESSAGE, 'bad', { cause: new Error('inner') }),
    new IpcError('custom_code'),
    new ProtocolError(ErrorCode.BAD_FRAME, 'bad'),
    new FrameError('bad', { cause: 1 }),
    new FrameTooLargeError(2, 1),
    new MessageError('bad'),
    new NotConnectedError(),
    new NotConnectedError('down', { cause: new Error('ECONNREFUSED') }),
    new ConnectionLostError('gone', { cause: null }),
    new RequestTimeoutError('slow', { remote: true }),
    new CircuitOpenError('open', { retryAfter: 1000 }),
    new QueueFullError('full'),
    new QueueFileError('queuePath "/q": cannot write', { path: '/q', cause: new Error('ENOSPC') }),
    new QueueFileInUseError('queuePath "/q" is in use by process 7', { path: '/q' }),
    new AlreadyServingError('orders.get'),
    new AbortError('stopped', { cause: 'the user left' }),
    new AbortError(),
    new RemoteError('custom', 'remote', info),
    new NoRespondersError('nobody', info),
    new ResponderLostError(),
    new HandlerError('boom', { remoteType: 'TypeError' }),
    new UnauthorizedError('no'),
    new ForbiddenError('no'),
    new SlowConsumerError('slow'),
    new ShuttingDownError('bye'),
    new TooManyConnectionsError('full'),
    new LimitExceededError('too many'),
    new BadRequestError('invalid', { details: { errors: [{ loc: ['id'], msg: 'Field required', type: 'missing' }] } }),
    new IdempotencyConflictError('key used for another request')
  ];
  const remoteErrors: RemoteError[] = made.filter((e): e is RemoteError => e instanceof RemoteError);
  const asErrors: Error[] = made;
  return `${remoteErrors.length} ${asErrors.length}`;
}

// -- typed contracts: client.typed<Api>() ---------------------------------------------------

/** A contract as `ipc-bridge-types` writes it. */
interface InventoryApi {
  'inventory.count': { request: { sku: string }; response: number };
  'inventory.reserve': { request: { sku: string; qty: number }; response: { reserved: boolean; left: number | null } };
}

export async function typedContracts(client: IPCClient): Promise<void> {
  const inventory: TypedClient<InventoryApi> = client.typed<InventoryApi>();
  exact<number>()(await inventory.request('inventory.count', { sku: 'A-1' }));
  const reply: Message<{ reserved: boolean; left: number | null }> = await inventory.sendRequest('inventory.reserve', { sku: 'A-1', qty: 2 }, { timeout: 500 });
  await inventory.serve('inventory.count', (msg) => msg.payload.sku.length);
  await inventory.serve('inventory.reserve', async (msg) => ({ reserved: msg.payload.qty > 0, left: null }), { schema: { request: true } });
  // a typed responder gets its ctx as an untyped one does, and may stream (a generator's items are not in the contract)
  await inventory.serve('inventory.count', (msg, ctx: ServeContext) => (ctx.cancelled || ctx.signal.aborted ? 0 : msg.payload.sku.length));
  await inventory.serve('inventory.count', async function* (msg, ctx) {
    for (let n = 0; n < 3 && !ctx.signal.aborted; n++) yield `${msg.payload.sku}:${n}`;
  });
  await inventory.serve('inventory.count', function* (msg) {
    yield msg.payload.sku.length;
  });
  await inventory.serve('inventory.count', async (msg) => (async function* () { yield msg.payload.sku; })());
  const channel: ContractChannel<InventoryApi> = 'inventory.count';
  const contract: ChannelContract = { request: 1, response: 2 };
  const check: ContractMap<InventoryApi> = {
    'inventory.count': contract,
    'inventory.reserve': contract
  };
  for await (const level of inventory.stream<number>('inventory.count', { sku: 'A-1' }, { window: 8 })) exact<number>()(level);
  inventory.on('connected', (info) => info.connectionId); // the rest is the client itself
  await inventory.publish('inventory.changed', { sku: 'A-1' });
  void [reply, channel, check];
}

// -- TLS and users (docs/security.md) -----------------------------------------------------

export function tlsAndUsers(ca: Buffer, cert: Buffer, key: Buffer): IPCClient[] {
  const mutual: TlsConnectionOptions = { ca, cert, key, servername: 'bridge.internal', minVersion: 'TLSv1.3' };
  return [
    new IPCClient('app', { host: 'bridge.internal', port: 8443, tls: true, user: 'reporting', token: 'reporting-token' }),
    new IPCClient('app', { host: '10.0.0.5', port: 8443, tls: mutual, user: 'cert-user' }),
    new IPCClient('app', { tls: { ca: [ca], rejectUnauthorized: false } })
  ];
}

// -- ConnectionPool -------------------------------------------------------------------------

export async function pool(): Promise<void> {
  const own: Required<ConnectionPoolSettings> = { minConnections: 2, maxConnections: 8, acquireTimeout: 5000, idleTimeout: 30_000, leaseThreshold: 4 };
  const options: ConnectionPoolOptions = { ...own, host: '127.0.0.1', port: 8888, requestTimeout: 1000, tls: true, user: 'u', token: 't' };
  const p = new ConnectionPool('billing', options);
  new ConnectionPool('billing');
  const fields: [string, string, number, number, number, number, number, number, boolean] = [
    p.appId, p.host, p.port, p.minConnections, p.maxConnections, p.acquireTimeout, p.idleTimeout, p.leaseThreshold, p.closed
  ]; // prettier-ignore
  await p.start();
  const client: IPCClient = await p.acquire({ timeout: 100 });
  exact<boolean>()(p.release(client));
  exact<number>()(await p.execute((c) => c.request<number>('sum', [1, 2])));
  exact<string>()(await p.lease((c) => c.appId, { timeout: 100 }));
  const health: { healthy: boolean; latencyMs: number | null; error?: string } = await p.healthCheck({ timeout: 100 });
  // its own calls, on shared members, with IPCClient's options
  const reply: Message<number> = await p.sendRequest<number>('sum', [1, 2], 1000, { headers: { a: 'b' }, coalesce: true });
  exact<number>()(await p.request<number>('sum', [1, 2], { timeout: 1000, cacheTtl: 60_000, idempotencyKey: 'k' }));
  exact<{ delivered: number | null }>()(await p.publish('news', 1, { ack: true, timeout: 100 }));
  exact<undefined>()(await p.publish('news', 1));
  exact<void>()(await p.notify('audit', 1, { timeout: 100 }));
  const pooled: Stream<number> = p.stream<number>('ticks', { symbol: 'ACME' }, { timeout: 1000, idleTimeout: 500, window: 8, signal: new AbortController().signal });
  for await (const tick of pooled) exact<number>()(tick);
  exact<boolean>()(await p.subscribe<string>('news.>', (msg) => msg.payload.toUpperCase(), { timeout: 100 }));
  await p.unsubscribe('news.>');
  exact<boolean>()(await p.serve('sum', (msg, ctx) => (ctx.signal.aborted ? 0 : 1), { timeout: 100, schema: { request: { type: 'array' } } }));
  await p.unserve('sum');
  exact<void>()(p.clearCache());
  const stats: PoolStats = p.stats();
  const s: number[] = [stats.total, stats.available, stats.inUse, stats.pending, stats.totalCreated, stats.totalDestroyed];
  exact<Record<string, number>>()(p.getMetrics()); // every key, never null (docs/resilience.md §2)
  p.on('created', ({ client }) => client.appId)
    .on('destroyed', ({ client, reason }) => `${client.appId} ${reason?.message}`)
    .on('connection_lost', ({ client, error }) => `${client.state} ${error?.code} ${error?.message}`)
    .on('error', (error) => `${error.code} ${error.message}`);
  const first: ConnectionPoolEvents['created'] = [{ client }];
  await p.close();
  void [fields, health, reply, s, first];
}

// -- LoadBalancedClient ---------------------------------------------------------------------

export async function loadBalanced(): Promise<void> {
  const servers: ServerSpec[] = ['10.0.0.1:8888', ['10.0.0.2', 8888], { host: '10.0.0.3', port: 8888, weight: 2 }, { port: 8889 }];
  const options: LoadBalancedClientOptions = {
    strategy: Strategy.WEIGHTED,
    healthCheckInterval: 5000,
    healthCheckTimeout: 2000,
    minConnections: 1,
    maxConnections: 4,
    acquireTimeout: 1000,
    idleTimeout: 10_000,
    leaseThreshold: 8,
    random: Math.random,
    requestTimeout: 2000,
    tls: { ca: 'pem' },
    user: 'gateway',
    token: 'secret',
    reconnectDelay: 100
  };
  const lb = new LoadBalancedClient('billing', servers, options);
  new LoadBalancedClient('billing', ['localhost:8888']);
  new LoadBalancedClient('billing', ['localhost:8888'], { healthCheckInterval: null }); // no health checks
  const fields: [string, StrategyValue, number | null, number] = [lb.appId, lb.strategy, lb.healthCheckInterval, lb.healthCheckTimeout];
  await lb.start();
  const reply: Message<number> = await lb.sendRequest<number>('sum', [1, 2], 1000, { headers: { a: 'b' }, idempotencyKey: 'sum-1' });
  exact<number>()(await lb.request<number>('sum', [1, 2]));
  // the options object third, as on IPCClient; signal, coalesce and priority as the servers' clients take them
  const stop = new AbortController();
  exact<number>()(await lb.request<number>('sum', [1, 2], { timeout: 1000, headers: { a: 'b' }, signal: stop.signal, coalesce: true, priority: 1 }));
  exact<number>()(await lb.request<number>('rates', null, { cacheTtl: 60_000 })); // a server's connection's cache
  exact<void>()(lb.clearCache());
  const viaOptions: Message<number> = await lb.sendRequest<number>('sum', [1, 2], 1000, { signal: stop.signal, coalesce: true, priority: 2, idempotencyKey: 'k' });
  const callOptions: BalancedCallOptions = { timeout: 500, idempotencyKey: 'sum-2' };
  await lb.sendRequest('sum', [1, 2], callOptions);
  // numbers as numeric strings (read from the environment), as the constructors convert them
  new LoadBalancedClient('billing', servers, { healthCheckInterval: '5000', minConnections: '1', maxConnections: '2', acquireTimeout: '100', requestTimeout: '2000', initialDelay: '50' });
  void viaOptions;
  exact<{ delivered: number | null }>()(await lb.publish('news', 1, { ack: true, timeout: 100 }));
  exact<undefined>()(await lb.publish('news', 1));
  exact<void>()(await lb.notify('audit', 1, { headers: { a: 'b' }, timeout: 100 }));
  // signal, priority and onDisconnect go to the server's client, as on IPCClient
  exact<{ delivered: number | null }>()(await lb.publish('news', 1, { ack: true, signal: stop.signal, priority: 1, onDisconnect: 'fail' }));
  const publishOptions: BalancedPublishOptions = { timeout: 100, signal: stop.signal, headers: { a: 'b' } };
  exact<undefined>()(await lb.publish('news', 1, publishOptions));
  exact<void>()(await lb.notify('audit', 1, { priority: 5, onDisconnect: 'queue' }));
  exact<void>()(await lb.notify('audit', 1, { signal: stop.signal }));
  // per-call numbers as the client's own: their text too (process.env's)
  exact<void>()(await lb.notify('audit', 1, { timeout: process.env.IPC_TIMEOUT, priority: '1' }));
  exact<number>()(await lb.request<number>('sum', [1, 2], { timeout: '1000', cacheTtl: '500' }));
  for await (const tick of lb.stream<number>('ticks', null, { timeout: 1000, headers: { a: 'b' } })) exact<number>()(tick);
  exact<IteratorResult<string, undefined>>()(await lb.stream<string>('ticks').return());
  await lb.subscribe<string>('news.>', (msg) => msg.payload.toUpperCase(), { timeout: 100 });
  await lb.unsubscribe('news.>');
  await lb.serve('sum', (msg) => (msg.payload as number[]).reduce((a, b) => a + b, 0), { timeout: 100, schema: { request: { type: 'array' } } });
  // a responder gets (msg, ctx) as on IPCClient and ConnectionPool, and may stream
  await lb.serve<number[]>('sum', (msg, ctx: ServeContext) => (ctx.signal.aborted ? 0 : msg.payload.length), { timeout: 100 });
  const ticking: ServeHandler<null> = async function* (msg, ctx) { if (!ctx.cancelled) yield msg.payload; };
  await lb.serve('ticks', ticking);
  await lb.unserve('sum');
  const checked: ServerStats[] = await lb.checkHealth();
  for (const s of lb.serverStats()) {
    const parts: Array<string | number | boolean | null> = [
      s.host, s.port, s.weight, s.healthy, s.inFlight, s.requests, s.errors, s.errorRate, s.averageLatencyMs
    ]; // prettier-ignore
    void parts;
  }
  const pools: Record<string, PoolStats> = lb.poolStats();
  exact<Record<string, number>>()(lb.getMetrics());
  lb.on('server_down', ({ host, port, error }) => `${host}:${port} ${error?.code} ${error?.message}`)
    .on('server_up', ({ host, port }) => `${host}:${port}`)
    .on('server_leaving', ({ host, port, deadlineMs }) => `${host}:${port} ${deadlineMs.toFixed()}`)
    .on('subscription_moved', ({ channel, from, to }) => `${channel} ${from.host}:${from.port} -> ${to.host}:${to.port}`)
    .on('error', (error) => `${error.code} ${error.message}`);
  const down: LoadBalancedClientEvents['server_down'] = [{ host: 'h', port: 1, error: null }];
  await lb.close();
  void [fields, reply, checked, pools, down];
}

// -- ServiceClient --------------------------------------------------------------------------

export async function services(): Promise<void> {
  const users: ServiceSpec = { host: 'users.internal', port: '8888', appId: 'users', timeout: 2000 };
  const billing: ServiceSpec = {
    servers: ['10.0.0.1:8888', { host: '10.0.0.2', port: 8888, weight: 2 }],
    strategy: 'least_connections',
    minConnections: 1,
    maxConnections: 4,
    timeout: 5000,
    healthCheckInterval: 30_000,
    reconnectDelay: 1000
  };
  const gateway = new ServiceClient({ users, billing }, { appId: 'gateway', requestTimeout: 3000, tls: true, user: 'gw', token: 't' });
  new ServiceClient();
  const fields: [string, string[]] = [gateway.appId, gateway.services];
  exact<ServiceClient>()(gateway.configureService('search', { port: 9000 }));
  gateway.configureService('env', { port: '9001', timeout: '2000', minConnections: '1', maxConnections: '3', healthCheckInterval: '1000', reconnectDelay: '100' });
  await gateway.start();
  const user: { name: string } = await gateway.request<{ name: string }>('users', 'users.get', { id: 1 }, { timeout: 500 });
  await gateway.request('users', 'users.get', { id: 1 }, { timeout: 500, signal: new AbortController().signal });
  await gateway.request('billing', 'invoices.list');
  for await (const line of gateway.stream<string>('billing', 'invoices.export', { month: 5 }, { timeout: 60_000, window: 16 })) exact<string>()(line);
  const all: Record<string, ServiceMetrics> = gateway.metrics();
  const one: ServiceMetrics = gateway.getMetrics('users');
  const every: Record<string, ServiceMetrics> = gateway.getMetrics();
  const m: Array<number | null> = [one.requests, one.errors, one.timeouts, one.requestsPerS, one.latencyMs.avg, one.latencyMs.p50, one.latencyMs.p99];
  const status: Record<string, { healthy: boolean; servers: ServerStats[] }> = gateway.status();
  const same: Record<string, { healthy: boolean; servers: ServerStats[] }> = gateway.getConnectionStatus();
  exact<void>()(gateway.clearCache());
  await gateway.shutdown();
  void [fields, user, all, every, m, status, same];
}

// -- binary payloads (docs/protocol.md §16) ------------------------------------------------

export async function binaryPayloads(client: IPCClient, pool: ConnectionPool, lb: LoadBalancedClient): Promise<void> {
  const bytes: BinaryLike[] = [Buffer.from('a'), new Uint8Array([1]), new ArrayBuffer(2), new DataView(new ArrayBuffer(4), 1, 2), new Int16Array(2), new Float64Array(1)];
  type Upload = { name: string; data: Uint8Array; parts: ArrayBuffer[] };
  const arrived: Received<Upload> = { name: 'x', data: Buffer.alloc(0), parts: [Buffer.alloc(1)] };
  exact<Buffer>()(arrived.data);
  exact<Buffer[]>()(arrived.parts);
  type Samples = { pcm: Int16Array; header: DataView; big: BigInt64Array[] };
  const samples: Received<Samples> = { pcm: Buffer.alloc(4), header: Buffer.alloc(2), big: [Buffer.alloc(8)] };
  exact<Buffer>()(samples.pcm);
  exact<Buffer>()(samples.header);
  exact<Buffer[]>()(samples.big);
  await client.request('audio.mix', { pcm: new Int16Array(4).subarray(1), header: new DataView(new ArrayBuffer(8), 2) });
  const answer = await client.request<{ thumb: Buffer }>('images.thumb', { image: bytes[0], meta: { w: 64 } });
  exact<Buffer>()(answer.thumb);
  await client.publish('frames', new Uint8Array([0]));
  await client.notify('audio', [new ArrayBuffer(4)]);
  await pool.execute((c) => c.sendRequest('files.put', { chunk: Buffer.alloc(8) }));
  await lb.request('files.put', Buffer.alloc(8));
  await client.serve('files.sum', (msg: Message<Received<Upload>>) => msg.payload.data.length);
  for await (const chunk of client.stream<Buffer>('files.get', { name: 'x' })) exact<Buffer>()(chunk);
}
