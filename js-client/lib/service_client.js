'use strict';

/**
 * ServiceClient: a gateway's view of several named services
 * (docs/resilience.md §9, with the names of the gateway ServiceClient it replaces). Each
 * service is one LoadBalancedClient (one or more servers, its own app);
 * calls are counted per service over a sliding window so status pages show
 * how each backend behaves now.
 */

const { LoadBalancedClient } = require('./load_balanced_client');
const { ServiceStreaming } = require('./balanced_streams');
const { LatencyWindow } = require('./latency');
const { AbortError, ErrorCode, NotConnectedError } = require('./errors');
const { checkTimeout } = require('./call_options');
const { checkSignal, abortError, bounded } = require('./cancellation');
const { refuseQueuePath } = require('./options');
const { LEGACY_ALIASES, pickKnownOptions, toNumber } = require('./legacy_options');

/** The keys a service description may have; others are ignored with a warning. */
const SERVICE_KEYS = new Set([
  'host',
  'port',
  'servers',
  'appId',
  'strategy',
  'minConnections',
  'maxConnections',
  'timeout',
  'healthCheckInterval',
  'reconnectDelay'
]);

/**
 * Defaults of a service description: the gateway ServiceClient's (seed
 * 004, docs/resilience.md §9), durations in ms. An option given to every
 * service (the constructor's second argument) wins over these defaults.
 */
const SERVICE_DEFAULTS = Object.freeze({
  host: 'localhost',
  maxConnections: 10,
  minConnections: 1,
  timeout: 5000,
  healthCheckInterval: 30_000,
  reconnectDelay: 1000
});

/** Description key -> the LoadBalancedClient / IPCClient option it sets. */
const DESCRIPTION_OPTIONS = Object.freeze({
  strategy: 'strategy',
  minConnections: 'minConnections',
  maxConnections: 'maxConnections',
  healthCheckInterval: 'healthCheckInterval',
  timeout: 'requestTimeout',
  reconnectDelay: 'initialDelay'
});

/**
 * The legacy names of a client option (`reconnectDelay` for `initialDelay`).
 * @param {string} option
 * @returns {string[]}
 * @private
 */
function legacyNames(option) {
  return Object.keys(LEGACY_ALIASES).filter((legacy) => LEGACY_ALIASES[legacy] === option);
}

/**
 * Monotonic milliseconds.
 * @returns {number}
 * @private
 */
function now() {
  return performance.now();
}

/**
 * The load-balanced client options of one service: the shared options, then
 * the description's own values; a description default applies only where
 * neither says anything.
 * @param {object} spec the description, known keys only.
 * @param {object} shared client options for every service.
 * @returns {object}
 * @private
 */
function serviceOptions(spec, shared) {
  const options = { ...shared };
  for (const [key, option] of Object.entries(DESCRIPTION_OPTIONS)) {
    const aliases = legacyNames(option);
    if (spec[key] !== undefined) {
      options[option] = spec[key];
      for (const legacy of aliases) delete options[legacy]; // the description's value is the one meant
    } else if (key in SERVICE_DEFAULTS && options[option] === undefined && aliases.every((a) => options[a] === undefined)) {
      options[option] = SERVICE_DEFAULTS[key];
    }
  }
  // a defaulted maxConnections never makes a given minConnections invalid
  if (spec.maxConnections === undefined && shared.maxConnections === undefined) {
    const min = toNumber(options.minConnections);
    if (typeof min === 'number' && min > options.maxConnections) options.maxConnections = min;
  }
  return options;
}

/**
 * One service: its balanced client and its counters.
 * @private
 */
class Service {
  /**
   * @param {string} name
   * @param {object} description the service description.
   * @param {object} shared client options for every service.
   * @throws {TypeError|RangeError} a bad description.
   */
  constructor(name, description, shared) {
    if (description === null || typeof description !== 'object' || Array.isArray(description)) {
      throw new TypeError(`service ${JSON.stringify(name)} must be an object`);
    }
    const spec = pickKnownOptions(description, SERVICE_KEYS, { owner: `ServiceClient service ${JSON.stringify(name)}`, aliases: {} });
    // The description's port is an option, a numeric string too; a server entry's is a number.
    const servers = spec.servers ?? (spec.port !== undefined ? [{ host: spec.host ?? SERVICE_DEFAULTS.host, port: toNumber(spec.port) }] : null);
    if (servers === null) throw new TypeError(`service ${JSON.stringify(name)} needs {host, port} or {servers: [...]}`);
    this.name = name;
    this.client = new LoadBalancedClient(spec.appId ?? name, servers, serviceOptions(spec, shared));
    this.window = new LatencyWindow();
    this.requests = 0;
    this.errors = 0;
    this.timeouts = 0;
    this._starting = null;
    this._started = false;
  }

  /**
   * Starts the balanced client once. Callers arriving while it starts wait
   * for it (and get its failure); later ones go straight on, the health
   * checks bringing back servers that were down.
   * @returns {Promise<void>}
   */
  async ensureStarted() {
    if (this._starting === null) {
      this._starting = this.client.start().finally(() => {
        this._started = true;
      });
    }
    if (!this._started) await this._starting;
  }

  /** @returns {boolean} whether the first start is over (the health checks take it from there). */
  get started() {
    return this._started;
  }

  /**
   * Takes over the counters of the service this one replaces: the metrics
   * describe the service, whichever clients carry it.
   * @param {Service} old
   */
  adopt(old) {
    this.window = old.window;
    this.requests = old.requests;
    this.errors = old.errors;
    this.timeouts = old.timeouts;
  }

  /**
   * Counts one finished call.
   * @param {number} started when it started (monotonic ms).
   * @param {Error|null} error its failure, if any.
   * @param {number|null} [answered] when a stream's first item came.
   */
  record(started, error, answered = null) {
    const t = answered ?? now(); // a stream's latency ends at its first item
    this.requests++;
    if (error !== null) {
      this.errors++;
      if (error.code === ErrorCode.TIMEOUT) this.timeouts++;
    }
    this.window.record(t - started, started);
  }

  /**
   * The figures of metrics() (§9).
   * @returns {{requests: number, errors: number, timeouts: number, requestsPerS: number, latencyMs: {avg: number|null, p50: number|null, p99: number|null}}}
   */
  metrics() {
    const w = this.window.snapshot(now());
    return {
      requests: this.requests,
      errors: this.errors,
      timeouts: this.timeouts,
      requestsPerS: w.perSecond,
      latencyMs: { avg: w.avg, p50: w.p50, p99: w.p99 }
    };
  }
}

/**
 * Named backend services for a gateway.
 *
 * Services are given to the constructor or added (and changed) later with
 * configureService(); each starts with start() or on its first request.
 */
class ServiceClient extends ServiceStreaming {
  /**
   * @param {Record<string, {host?: string, port?: number, servers?: Array<unknown>, appId?: string, strategy?: string, minConnections?: number, maxConnections?: number, timeout?: number, healthCheckInterval?: number, reconnectDelay?: number}>} [services]
   *   name -> description (see configureService()); none is fine.
   * @param {object} [options] `appId` ('gateway'): this gateway's name;
   *   any other option goes to every service's clients (`token`...).
   * @throws {TypeError|RangeError} a bad description.
   */
  constructor(services = {}, { appId = 'gateway', ...shared } = {}) {
    super();
    if (services === null || typeof services !== 'object' || Array.isArray(services)) {
      throw new TypeError('services must map names to descriptions');
    }
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    refuseQueuePath('ServiceClient', shared);
    this.appId = appId;
    this._shared = shared;
    this._services = new Map(Object.entries(services).map(([name, spec]) => [name, new Service(name, spec, shared)]));
    this._retiring = new Set(); // close() promises of replaced services
    this._closed = false;
  }

  /** The service names. */
  get services() {
    return [...this._services.keys()];
  }

  /**
   * Adds a service, or replaces one: the old service's connections are
   * closed (its calls in flight reject connection_lost) and the new
   * description takes over, metrics carried on. The service starts on its
   * first request (or with start()).
   *
   * A description has `{host, port}` (one server; host 'localhost') or
   * `{servers: [...]}`, and optionally `appId` (default: the name),
   * `strategy`, `minConnections` (1), `maxConnections` (10, per server),
   * `timeout` (5000 ms: the default deadline of its calls),
   * `healthCheckInterval` (30000 ms) and `reconnectDelay` (1000 ms: the
   * first backoff delay of its clients). Numbers may be numeric strings;
   * unknown keys are ignored with one process warning per name.
   *
   * @param {string} name the service's name.
   * @param {object} description
   * @returns {this}
   * @throws {TypeError|RangeError} a bad description (nothing is replaced).
   * @throws {NotConnectedError} after shutdown().
   */
  configureService(name, description) {
    if (this._closed) throw new NotConnectedError('the service client is shut down');
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('a service name must be a non-empty string');
    const svc = new Service(name, description, this._shared);
    const old = this._services.get(name);
    if (old !== undefined) {
      svc.adopt(old);
      const closing = old.client.close().catch(() => {}).finally(() => this._retiring.delete(closing));
      this._retiring.add(closing);
    }
    this._services.set(name, svc);
    return this;
  }

  /**
   * Connects to every service not started yet. A service none of whose
   * servers answers fails start() but keeps trying (health checks); the
   * others work.
   * @returns {Promise<void>}
   * @throws {NotConnectedError} naming the unreachable services.
   */
  async start() {
    if (this._closed) throw new NotConnectedError('the service client is shut down');
    const services = [...this._services.values()];
    const results = await Promise.allSettled(services.map((s) => s.ensureStarted()));
    const down = services.filter((_, i) => results[i].status === 'rejected').map((s) => s.name);
    if (down.length > 0) {
      const first = results.find((r) => r.status === 'rejected').reason;
      throw new NotConnectedError(`unreachable: ${down.join(', ')}`, { cause: first });
    }
  }

  /**
   * Calls `method` (a channel in the service's app) and returns the
   * payload. A service not started yet is started first, within the
   * call's deadline.
   * @param {string} service a configured service's name.
   * @param {string} method the channel.
   * @param {unknown} [data] the request payload.
   * @param {{timeout?: number, signal?: AbortSignal}} [options] `timeout`:
   *   ms, the whole call's, the service's start included; default the
   *   service's `timeout`. `signal`: gives the call up, as on IPCClient.request().
   * @returns {Promise<unknown>} the response payload.
   * @throws {TypeError} an unknown service.
   * @throws {IpcError} the call's failure (`.code`), not_connected when the
   *   service's first start found no server, or after shutdown();
   *   AbortError (`cancelled`) when the signal aborts.
   */
  async request(service, method, data = null, { timeout, signal } = {}) {
    if (this._closed) throw new NotConnectedError('the service client is shut down');
    const svc = this._service(service);
    const budget = checkTimeout(timeout ?? svc.client._requestTimeout);
    signal = checkSignal(signal);
    if (signal !== undefined && signal.aborted) throw abortError(signal);
    const started = now();
    const deadline = started + budget;
    try {
      if (!svc.started) await bounded(svc.ensureStarted(), deadline, signal, `service ${JSON.stringify(service)} did not start within ${budget} ms`);
      const res = await svc.client.sendRequest(method, data, Math.max(1, deadline - now()), signal === undefined ? {} : { signal });
      svc.record(started, null);
      return res.payload;
    } catch (err) {
      if (!(err instanceof AbortError)) svc.record(started, err); // a caller giving up is not the service's failure
      throw err;
    }
  }

  /**
   * Per service: `{requests, errors, timeouts, requestsPerS, latencyMs:
   * {avg, p50, p99}}`. `errors` counts every failed call, `timeouts`
   * those that failed with code `timeout`; the rate and latencies cover the
   * last 1,024 calls.
   * @returns {Record<string, object>}
   */
  metrics() {
    const out = {};
    for (const [name, svc] of this._services) out[name] = svc.metrics();
    return out;
  }

  /**
   * One service's metrics (see metrics()), or every service's when
   * `service` is omitted.
   * @param {string} [service]
   * @returns {object}
   * @throws {TypeError} an unknown service.
   */
  getMetrics(service) {
    return service === undefined ? this.metrics() : this._service(service).metrics();
  }

  /**
   * Per service: `{healthy, servers}`; healthy while one of its servers is.
   * @returns {Record<string, {healthy: boolean, servers: object[]}>}
   */
  status() {
    const out = {};
    for (const [name, svc] of this._services) {
      const servers = svc.client.serverStats();
      out[name] = { healthy: !this._closed && servers.some((s) => s.healthy), servers };
    }
    return out;
  }

  /**
   * status(), under the name of the gateway ServiceClient it replaces.
   * @returns {Record<string, {healthy: boolean, servers: object[]}>}
   */
  getConnectionStatus() {
    return this.status();
  }

  /**
   * Forgets every cached answer (`cacheTtl`) of every service's
   * connections (docs/resilience.md §11).
   */
  clearCache() {
    for (const svc of this._services.values()) svc.client.clearCache();
  }

  /**
   * Closes every connection. Later calls reject with not_connected.
   * @returns {Promise<void>}
   */
  async shutdown() {
    if (this._closed) return;
    this._closed = true;
    await Promise.all([...[...this._services.values()].map((s) => s.client.close()), ...this._retiring]);
  }

  /**
   * The service of that name.
   * @param {string} name
   * @returns {Service}
   * @throws {TypeError} an unknown service.
   * @private
   */
  _service(name) {
    const svc = this._services.get(name);
    if (svc === undefined) throw new TypeError(`unknown service ${JSON.stringify(name)}`);
    return svc;
  }
}

module.exports = { ServiceClient, SERVICE_DEFAULTS };
