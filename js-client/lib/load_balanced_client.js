'use strict';

/**
 * LoadBalancedClient: one app spread over several servers
 * (docs/resilience.md §8).
 *
 * Each server has its own ConnectionPool for calls, which share its
 * connections through lease(): an IPCClient multiplexes, so one connection
 * per server still carries many calls at once. Once something is
 * subscribed or served, one reconnecting IPCClient that carries the
 * registrations (a pool member per registration would receive each publish
 * several times). Which server takes a call is decided by the pure
 * Balancer; this module only does the I/O: health checks, failover within
 * the call's deadline (failover.js), and applying registrations everywhere
 * (balanced_registrations.js).
 */

const { BalancedStreaming } = require('./balanced_streams');
const { ConnectionPool, POOL_DEFAULTS, sumMetrics } = require('./pool');
const { Balancer, ServerState, Strategy, parseServer } = require('./balancer');
const { checkNumber, parseOptions, refuseQueuePath } = require('./options');
const { readOnce } = require('./json_profile');
const { checkChannelOf, checkSubscription, checkUnsubscription } = require('./publishing');
const { AlreadyServingError, NotConnectedError } = require('./errors');
const { FAILOVER_CODES, checkDuration, routeCall } = require('./failover');
const { BalancedRegistrations } = require('./balanced_registrations');
const { checkSchemaOption } = require('./contracts');
const { ServerHealth, unreachable } = require('./balanced_health');
const { reportable } = require('./listeners');
const { inOneTrace } = require('./call_trace');
const { namingTimeout } = require('./call_options');

/** Balancer defaults (§8); milliseconds. */
const BALANCER_DEFAULTS = Object.freeze({
  strategy: Strategy.ROUND_ROBIN,
  healthCheckInterval: 5000,
  healthCheckTimeout: 2000,
  minConnections: 1,
  maxConnections: 1
});

/**
 * A client of one app on several servers.
 *
 * Events: 'server_down' ({host, port, error}) when a server leaves the
 * rotation, 'server_up' ({host, port}) when a health check or a new
 * connection brings it back, 'server_leaving' ({host, port, deadlineMs})
 * when it says it is leaving (docs/protocol.md §13.1: new calls go to the
 * others), 'subscription_moved' ({channel, from: {host, port}, to: {host, port}})
 * when a subscription over nodes of one cluster moved to another node
 * (docs/cluster.md §6), 'error' (err, only when listened to) for registrations a server refused.
 */
class LoadBalancedClient extends BalancedStreaming {
  /**
   * @param {string} appId the application namespace.
   * @param {Array<string|[string, number]|{host?: string, port: number, weight?: number}>} servers
   *   `"host:port"`, `[host, port]` or `{host, port, weight}`.
   * @param {object} [options] `strategy` ('round_robin', 'least_connections',
   *   'weighted', 'random'), `healthCheckInterval` (5000 ms; null: no checks),
   *   `healthCheckTimeout` (2000 ms), `minConnections` (1) and
   *   `maxConnections` (1) per server, `acquireTimeout`, `idleTimeout`,
   *   `leaseThreshold` (the pools'; calls share each server's connections),
   *   `random` (a [0, 1) source for 'random'); every other option goes to
   *   each IPCClient (unknown ones warn, see IPCClient).
   * @throws {TypeError|RangeError} bad servers or options.
   */
  constructor(appId, servers, options = {}) {
    super();
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    if (!Array.isArray(servers) || servers.length === 0) throw new TypeError('servers must be a non-empty array');
    refuseQueuePath('LoadBalancedClient', options);
    const own = { ...BALANCER_DEFAULTS, random: Math.random };
    const poolOptions = {};
    const clientOptions = {};
    for (const [key, value] of Object.entries(options ?? {})) {
      if (value === undefined) continue;
      if (key in own) own[key] = value;
      else if (key in POOL_DEFAULTS) poolOptions[key] = value;
      else clientOptions[key] = value;
    }
    checkNumber(own, 'healthCheckInterval', { exclusiveMin: true, nullable: true }); // null: no health checks
    checkNumber(own, 'healthCheckTimeout', { exclusiveMin: true });
    this.healthCheckInterval = own.healthCheckInterval;
    this.healthCheckTimeout = own.healthCheckTimeout;
    if ('host' in clientOptions || 'port' in clientOptions) throw new TypeError('host and port come from the servers list');
    this.appId = appId;
    this._clientOptions = clientOptions;
    this._requestTimeout = parseOptions(clientOptions).requestTimeout;
    this._servers = servers.map((spec) => new ServerState(parseServer(spec)));
    this._balancer = new Balancer(this._servers, { strategy: own.strategy, random: own.random });
    this._pools = new Map();
    this._health = new ServerHealth({
      servers: this._servers,
      pools: this._pools,
      intervalMs: this.healthCheckInterval,
      timeoutMs: this.healthCheckTimeout,
      emit: (event, arg) => {
        this._registrations.changed(); // a server came, went or is leaving: a subscription may move
        this._emitSafely(event, arg);
      },
      report: (err) => this._report(err),
      onUp: (server) => this._registrations.sync(server)
    });
    for (const server of this._servers) {
      const pool = new ConnectionPool(appId, {
        ...clientOptions,
        ...poolOptions,
        host: server.host,
        port: server.port,
        minConnections: own.minConnections,
        maxConnections: own.maxConnections
      });
      pool.on('connection_lost', ({ error }) => this._health.markDown(server, error));
      // A new connection means the server is back, health checks or not; it says when it leaves (lame duck).
      pool.on('created', ({ client }) => this._health.connected(server, client));
      this._pools.set(server, pool);
    }
    this._registrations = new BalancedRegistrations({
      appId,
      clientOptions,
      servers: this._servers,
      requestTimeout: this._requestTimeout,
      onRefused: (err) => this.listenerCount('error') > 0 && this.emit('error', err),
      emit: (event, arg) => this._emitSafely(event, arg)
    });
    this._started = false;
    this._closed = false;
    this._unsent = 0;
  }

  /** @returns {string} the strategy in use. */
  get strategy() {
    return this._balancer.strategy;
  }

  /**
   * Opens every server's pool and starts the health checks. Servers that
   * cannot be reached start out of rotation; health checks bring them in.
   * @returns {Promise<void>}
   * @throws {NotConnectedError} no server could be reached (the client
   *   keeps checking until close()): the first server's error in its
   *   message, its cause as connect() gives it (balanced_health.js); or
   *   close() was called meanwhile.
   */
  async start() {
    if (this._closed) throw new NotConnectedError('the client is closed');
    if (this._started) return;
    this._started = true;
    const errors = await this._health.openAll();
    if (this._closed) throw new NotConnectedError('the client was closed during start()'); // as every call after close()
    this._health.schedule();
    if (!this._servers.some((s) => s.healthy)) throw unreachable(errors);
  }

  /**
   * Sends a request to one healthy server; on not_connected,
   * connection_lost, shutting_down, no_responders or circuit_open, tries the
   * next one, all within the call's original deadline.
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload]
   * @param {number} [timeout] milliseconds, the whole call's deadline.
   * @param {{headers?: Record<string, string>, idempotencyKey?: string}} [options] an
   *   idempotencyKey goes with every attempt: a retry that reaches the server
   *   the first attempt reached joins its run or gets its stored answer (§6.6).
   * @returns {Promise<object>} the response message.
   * @throws {IpcError} the last failure; not_connected when no server is healthy.
   */
  sendRequest(channelId, payload = null, timeout = this._requestTimeout, options = {}) {
    if (timeout !== null && typeof timeout === 'object') {
      // the options object in third place, as IPCClient.sendRequest() takes it
      options = timeout;
      timeout = options.timeout ?? this._requestTimeout;
    }
    payload = readOnce(payload); // an iterator, read once: each failover sends it again (§16.3)
    // every attempt in the call's trace (docs/tracing.md)
    return inOneTrace('request', channelId, options?.headers, () => this._route(timeout, (client, left, total) => client.sendRequest(channelId, payload, left, namingTimeout(options, total))));
  }

  /**
   * sendRequest() resolving the response's payload only (as the Python
   * client's `request()`): same arguments, same errors.
   * @returns {Promise<unknown>} the response payload.
   */
  async request(channelId, payload = null, timeout = this._requestTimeout, options = {}) {
    return (await this.sendRequest(channelId, payload, timeout, options)).payload;
  }

  /**
   * Publishes on one server (§8), with the same failover as sendRequest().
   * Subscribers on that server receive it.
   * @param {string} channelId
   * @param {unknown} data
   * @param {{ack?: boolean, headers?: Record<string, string>, timeout?: number}} [options]
   * @returns {Promise<{delivered: number|null}|undefined>}
   */
  publish(channelId, data, options = {}) {
    checkChannelOf('publish', channelId); // argument errors throw at the call, as IPCClient's (lib/publishing.js)
    const { timeout = this._requestTimeout, ...rest } = options;
    const once = readOnce(data);
    return inOneTrace('publish', channelId, rest.headers, () => this._route(timeout, (client, left) => client.publish(channelId, once, { ...rest, timeout: left })));
  }

  /**
   * Sends a one-way request to one server, with failover.
   * @param {string} channelId
   * @param {unknown} data
   * @param {{headers?: Record<string, string>, timeout?: number}} [options]
   * @returns {Promise<void>}
   */
  notify(channelId, data, options = {}) {
    checkChannelOf('notify', channelId);
    const { timeout = this._requestTimeout, ...rest } = options;
    const once = readOnce(data);
    return inOneTrace('notify', channelId, rest.headers, () => this._route(timeout, (client, left) => client.notify(channelId, once, { ...rest, timeout: left })));
  }

  /**
   * Subscribes on every standalone server and on one node of each cluster
   * (moved to another node when that one goes: docs/cluster.md §6), so each
   * publish reaches the handler once. Resolves once at least one server acked;
   * servers that were unreachable get the subscription when they come back.
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler
   * @param {{timeout?: number}} [options]
   * @returns {Promise<void>}
   * @throws {IpcError} no server took it (then nothing is kept).
   */
  subscribe(channelId, handler, { timeout = this._requestTimeout } = {}) {
    checkSubscription(channelId, handler); // argument errors throw at the call, as IPCClient's
    return this._register('subscribe', channelId, handler, checkDuration('timeout', timeout));
  }

  /**
   * Answers requests on every server (§8), so callers on any server reach
   * this process. Same rules as subscribe().
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler returns the response payload.
   * @param {{timeout?: number, schema?: {request?: object, response?: object}}} [options]
   *   `schema`: declared JSON Schemas, as IPCClient.serve() takes them (docs/typed-contracts.md).
   * @returns {Promise<void>}
   * @throws {AlreadyServingError} the channel is already served by this client.
   */
  serve(channelId, handler, { timeout = this._requestTimeout, schema } = {}) {
    if (this._registrations.isServed(channelId)) return Promise.reject(new AlreadyServingError(channelId));
    try {
      checkSchemaOption(schema);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._register('serve', channelId, handler, timeout, schema);
  }

  /**
   * Removes a subscription (one handler, or all) on every server.
   * @param {string} channelId
   * @param {Function} [handler]
   * @returns {Promise<void>}
   */
  unsubscribe(channelId, handler) {
    checkUnsubscription(channelId, handler); // at the call, as IPCClient's
    return this._registrations.remove('subscribe', channelId, handler);
  }

  /**
   * Stops answering a channel on every server.
   * @param {string} channelId
   * @returns {Promise<void>}
   */
  unserve(channelId) {
    return this._registrations.remove('serve', channelId);
  }

  /**
   * Runs one round of health checks now (they also run every
   * `healthCheckInterval`): a server whose ping fails leaves the rotation,
   * one whose ping passes comes back.
   * @returns {Promise<object[]>} serverStats() afterwards.
   */
  async checkHealth() {
    await this._health.check();
    return this.serverStats();
  }

  /**
   * Per server: `{host, port, weight, healthy, inFlight, requests, errors,
   * errorRate, averageLatencyMs}` (§8). Every failed call counts as an error.
   * @returns {object[]}
   */
  serverStats() {
    return this._servers.map((s) => s.snapshot());
  }

  /**
   * Pool counts per server, keyed `host:port`. Calls share connections,
   * so a member carrying any call counts in `inUse` (see ConnectionPool#stats).
   * @returns {Record<string, ReturnType<ConnectionPool['stats']>>}
   */
  poolStats() {
    const out = {};
    for (const [server, pool] of this._pools) out[server.address] = pool.stats();
    return out;
  }

  /**
   * The KPIs of every pool summed (§2): every key, as each pool reports
   * them whether or not a member is live; the calls no server saw in `messagesFailed`.
   * @returns {object}
   */
  getMetrics() {
    return sumMetrics([...[...this._pools.values()].map((p) => p.getMetrics()), { messagesFailed: this._unsent }]);
  }

  /**
   * Forgets every cached answer (`cacheTtl`) of every server's pooled
   * connections: each keeps its own cache (docs/resilience.md §11).
   */
  clearCache() {
    for (const pool of this._pools.values()) pool.clearCache();
  }

  /**
   * Stops the health checks and closes every connection. Later calls
   * reject with not_connected.
   * @returns {Promise<void>}
   */
  async close() {
    if (this._closed) return;
    this._closed = true;
    this._health.stop();
    await Promise.all([...[...this._pools.values()].map((p) => p.close()), this._registrations.close()]);
  }

  // ---------------------------------------------------------------- internals

  /**
   * Runs `call` with failover (lib/failover.js).
   * @template T
   * @param {number} timeout milliseconds.
   * @param {(client: IPCClient, left: number, total: number) => Promise<T>} call
   * @returns {Promise<T>}
   * @private
   */
  _route(timeout, call) {
    const unsent = () => this._unsent++; // a call no server saw: failed in getMetrics(), as a lone client's
    if (this._closed || !this._started) {
      unsent();
      return Promise.reject(new NotConnectedError(this._closed ? 'the client is closed' : 'start() was not called'));
    }
    return routeCall(this._balancer, this._pools, (server, err) => this._health.markDown(server, err), timeout, call, unsent);
  }

  /**
   * Emits from the client's own paths (a pool's close event, a health
   * check, a failover): a throwing listener goes to 'error' instead of
   * breaking them.
   * @param {string} event
   * @param {object} arg
   * @private
   */
  _emitSafely(event, arg) {
    try {
      this.emit(event, arg);
    } catch (err) {
      this._report(err);
    }
  }

  /**
   * Reports an error no caller waits for on 'error', as an Error (lib/listeners.js reportable()); never throws.
   * @param {unknown} err
   * @private
   */
  _report(err) {
    try {
      if (this.listenerCount('error') > 0) this.emit('error', reportable(err));
    } catch {
      // an 'error' listener threw: nothing is left to tell
    }
  }

  /**
   * Records a registration and applies it on every server (balanced_registrations.js).
   * @param {'subscribe'|'serve'} kind
   * @param {string} channel
   * @param {Function} handler
   * @param {number} timeout
   * @returns {Promise<void>}
   * @private
   */
  async _register(kind, channel, handler, timeout, schema) {
    if (this._closed || !this._started) {
      throw new NotConnectedError(this._closed ? 'the client is closed' : 'start() was not called');
    }
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    return this._registrations.add(kind, channel, handler, checkDuration('timeout', timeout), schema);
  }
}

module.exports = { LoadBalancedClient, BALANCER_DEFAULTS, FAILOVER_CODES };
