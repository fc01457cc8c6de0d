// Mistakes the declarations must catch: each line after a `@ts-expect-error`
// must be an error under `tsc --strict`, or tsc reports the directive as
// unused (TS2578) and interop-tests/test_types_node.py fails naming the line.
// Each was checked against lib/*.js: it throws there (TypeError,
// MessageError...), or silently does something other than it says.
import {
  IPCClient,
  ConnectionPool,
  LoadBalancedClient,
  ServiceClient,
  NotConnectedError,
  RequestTimeoutError,
  FrameTooLargeError,
  State,
  DEFAULTS,
  validateChannel
} from 'ipc-bridge-client';
import type { Received } from 'ipc-bridge-client';

export async function mistakes(client: IPCClient, pool: ConnectionPool, lb: LoadBalancedClient, gateway: ServiceClient): Promise<void> {
  // -- constructors and options: TypeError at run time --
  // @ts-expect-error the app id is required
  new IPCClient();
  // @ts-expect-error port is a number
  new IPCClient('app', { port: true });
  // @ts-expect-error not a queueOverflow policy
  new IPCClient('app', { queueOverflow: 'drop_newest' });
  // @ts-expect-error onDisconnect is 'queue' or 'fail'
  new IPCClient('app', { onDisconnect: 'retry' });
  // @ts-expect-error drain's timeout is milliseconds, a number or its text (a boolean: TypeError)
  await client.drain({ timeout: true });
  // @ts-expect-error a misspelt circuitBreaker option is refused
  new IPCClient('app', { circuitBreaker: { failureTreshold: 3 } });
  // @ts-expect-error a breaker's scope is 'channel' or 'client'
  new IPCClient('app', { circuitBreaker: { scope: 'server' } });
  // @ts-expect-error tls is a boolean, null or tls.ConnectionOptions
  new IPCClient('app', { tls: 'yes' });
  // @ts-expect-error tls.rejectUnauthorized is a boolean
  new IPCClient('app', { tls: { rejectUnauthorized: 'no' } });
  // @ts-expect-error a token is a string
  new IPCClient('app', { token: 1234 });
  // @ts-expect-error maxRetries is a number (Infinity for ever) or its text, not a boolean
  new IPCClient('app', { maxRetries: true });
  // @ts-expect-error heartbeatInterval is ms (or its text) or null (the server's), not false
  new IPCClient('app', { heartbeatInterval: false });
  // @ts-expect-error a pool's members cannot share one persisted outbox
  new ConnectionPool('app', { queuePath: '/var/lib/app/outbox.jsonl' });
  // @ts-expect-error host and port come from the servers list
  new LoadBalancedClient('app', ['10.0.0.1:8888'], { host: '10.0.0.2' });
  // @ts-expect-error not a strategy
  new LoadBalancedClient('app', ['10.0.0.1:8888'], { strategy: 'fastest' });
  // @ts-expect-error a server is "host:port", [host, port] or {host, port, weight}
  new LoadBalancedClient('app', [8888]);
  // @ts-expect-error a gateway's services name their own servers
  new ServiceClient({ users: { port: 8888 } }, { port: 9999 });
  // @ts-expect-error a channel is a string (MessageError)
  validateChannel(42);

  // -- calls --
  // @ts-expect-error a channel is a string
  await client.sendRequest(123);
  // @ts-expect-error priority is an integer, or its text (a boolean: TypeError)
  await client.request('orders.get', null, { priority: true });
  // @ts-expect-error an idempotency key is a string
  await client.request('orders.pay', null, { idempotencyKey: 42 });
  // @ts-expect-error a misspelt call option (an object literal's unknown key)
  await client.request('orders.get', null, { timout: 100 });
  // @ts-expect-error without ack, publish resolves undefined
  const delivered: { delivered: number | null } = await client.publish('news', 1);
  // @ts-expect-error delivered may be null (an old server's ack)
  const count: number = (await client.publish('news', 1, { ack: true })).delivered;
  // @ts-expect-error subscribe needs a handler
  await client.subscribe('news');
  // @ts-expect-error a schema is a JSON Schema object or a boolean
  await client.serve('orders.get', () => 1, { schema: { request: 'string' } });
  // @ts-expect-error system() needs an action
  await client.system();
  // @ts-expect-error health() takes {timeout}, not a number (which it would ignore)
  await client.health(1000);
  // @ts-expect-error a pool's acquire() takes {timeout} (a number is ignored)
  await pool.acquire(1000);
  // @ts-expect-error a load-balanced call has no retries option: it fails over by itself
  await lb.sendRequest('orders.get', null, { timeout: 100, retries: 3 });
  // @ts-expect-error a notification is never answered: notify() reads no ack
  await lb.notify('audit', 1, { ack: true });
  // @ts-expect-error publish() reads no idempotency key (requests only)
  await lb.publish('news', 1, { ack: true, idempotencyKey: 'once' });
  // @ts-expect-error a numeric option takes a number or text (process.env's), not a boolean
  new IPCClient('app', { connectTimeout: false });
  // @ts-expect-error circuit breaker settings are numbers (not converted)
  new IPCClient('app', { circuitBreaker: { failureThreshold: '5' } });
  // @ts-expect-error a service call's options are {timeout}
  await gateway.request('users', 'users.get', null, 500);
  // @ts-expect-error a pooled stream's timeout is in its options (a number there is not an options object: TypeError)
  pool.stream('ticks', null, 1000);
  // @ts-expect-error a service stream names its service first, then the channel
  gateway.stream('ticks');

  // -- what comes back --
  // @ts-expect-error protocol is null until connected
  client.getConnectionInfo().protocol.toFixed();
  // @ts-expect-error state is read-only (a getter: assigning does nothing)
  client.state = State.CONNECTED;
  // @ts-expect-error connectionId is null without a connection
  client.connectionId.length;
  // @ts-expect-error connectionId is read-only, the server's
  client.connectionId = 'mine';
  // @ts-expect-error the options are frozen
  client.options.port = 1;
  // @ts-expect-error State's values are frozen
  State.CONNECTED = 'up';
  // @ts-expect-error highWaterMark is an alias read into maxConcurrentHandlers, never kept
  void DEFAULTS.highWaterMark;

  // -- events --
  // @ts-expect-error no such event
  client.on('conected', () => undefined);
  // @ts-expect-error 'connected' passes the handshake's info
  client.on('connected', (info: string) => info);
  // @ts-expect-error 'reconnecting' passes {attempt, delay}
  client.on('reconnecting', ({ attempts }) => attempts);
  // @ts-expect-error a lost pool member's error may be null
  pool.on('connection_lost', ({ error }) => error.message);
  // @ts-expect-error the load-balanced client has no 'connected' event
  lb.on('connected', () => undefined);

  // -- errors --
  // @ts-expect-error a FrameTooLargeError is made of the size and the limit
  new FrameTooLargeError('too big');
  // @ts-expect-error RequestTimeoutError's options are {remote}
  new RequestTimeoutError('slow', { cause: new Error('x') });
  const err: unknown = new NotConnectedError();
  if (err instanceof NotConnectedError) {
    // @ts-expect-error a NotConnectedError's code is 'not_connected'
    if (err.code === 'timeout') return;
  }
  const tooLarge: unknown = await client.request('reports.big').catch((e: unknown) => e);
  if (tooLarge instanceof FrameTooLargeError) {
    // @ts-expect-error a server's too_large answer (a RemoteError) has no size or limit: NaN
    const over: number = tooLarge.size - tooLarge.limit;
  }

  // -- binary payloads: what arrives is a Buffer --
  type Upload = { data: Uint8Array; parts: ArrayBuffer[] };
  // @ts-expect-error bytes arrive as a Buffer, never as a string
  const wrongBytes: Received<Upload> = { data: 'aGk=', parts: [] };
  // @ts-expect-error an ArrayBuffer sent arrives as a Buffer
  const wrongParts: Received<Upload> = { data: Buffer.alloc(0), parts: [new ArrayBuffer(1)] };
  // @ts-expect-error a DataView sent arrives as a Buffer of its bytes
  const wrongView: Received<{ header: DataView }> = { header: new DataView(new ArrayBuffer(2)) };
  // @ts-expect-error an Int16Array sent arrives as a Buffer of its bytes, not as numbers
  const wrongSamples: Received<{ pcm: Int16Array }> = { pcm: [1, 2] };
  void [wrongBytes, wrongParts, wrongView, wrongSamples];

  // -- typed contracts --
  // @ts-expect-error a contract's channel has a request and a response
  client.typed<{ 'orders.get': { request: number } }>();
  const typedShop = client.typed<{ 'stock.watch': { request: { sku: string }; response: number } }>();
  // @ts-expect-error a typed stream's payload is its channel's request
  typedShop.stream('stock.watch', { sku: 1 });
  // @ts-expect-error a typed stream's channel is one the contract names
  typedShop.stream('stock.other', { sku: 'A-1' });
  // @ts-expect-error an array is an answer, not a stream: stock.watch answers a number
  await typedShop.serve('stock.watch', (msg) => [msg.payload.sku.length]);
  // @ts-expect-error a typed responder's ctx is a ServeContext (no cancel() on it)
  await typedShop.serve('stock.watch', (msg, ctx) => ctx.cancel());
  // @ts-expect-error a load-balanced responder's ctx is a ServeContext too
  await lb.serve('sum', (msg, ctx) => ctx.cancel());
  void [delivered, count];
}
