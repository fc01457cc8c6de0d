'use strict';

/**
 * ServiceClient: a gateway's view of several named services
 * (docs/resilience.md §9). Each service is one LoadBalancedClient (one or
 * more servers, its own app); calls are counted per service over a sliding
 * window so status pages show how each backend behaves now.
 */

const { LoadBalancedClient } = require('./load_balanced_client');
const { LatencyWindow } = require('./latency');
const { DEFAULTS } = require('./constants');
const { ErrorCode, NotConnectedError } = require('./errors');
const { refuseQueuePath } = require('./options');

/** The keys a service description may have. */
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

/** The client option that `reconnectDelay` sets (§9: the clients' initial delay). */
const INITIAL_DELAY_OPTION = 'initialDelay' in DEFAULTS ? 'initialDelay' : 'reconnectDelay';

/**
 * Monotonic milliseconds.
 * @returns {number}
 * @private
 */
function now() {
  return performance.now();
}

/**
 * One service: its balanced client and its counters.
 * @private
 */
class Service {
  /**
   * @param {string} name
   * @param {object} spec the service description.
   * @param {object} shared client options for every service.
   */
  constructor(name, spec, shared) {
    if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
      throw new TypeError(`service ${JSON.stringify(name)} must be an object`);
    }
    for (const key of Object.keys(spec)) {
      if (!SERVICE_KEYS.has(key)) throw new TypeError(`unknown key ${JSON.stringify(key)} in service ${JSON.stringify(name)}`);
    }
    const servers = spec.servers ?? (spec.port !== undefined ? [{ host: spec.host ?? 'localhost', port: spec.port }] : null);
    if (servers === null) throw new TypeError(`service ${JSON.stringify(name)} needs {host, port} or {servers: [...]}`);
    const options = { ...shared };
    if (spec.strategy !== undefined) options.strategy = spec.strategy;
    if (spec.minConnections !== undefined) options.minConnections = spec.minConnections;
    if (spec.maxConnections !== undefined) options.maxConnections = spec.maxConnections;
    if (spec.healthCheckInterval !== undefined) options.healthCheckInterval = spec.healthCheckInterval;
    if (spec.timeout !== undefined) options.requestTimeout = spec.timeout;
    if (spec.reconnectDelay !== undefined) options[INITIAL_DELAY_OPTION] = spec.reconnectDelay;
    this.name = name;
    this.client = new LoadBalancedClient(spec.appId ?? name, servers, options);
    this.window = new LatencyWindow();
    this.requests = 0;
    this.errors = 0;
    this.timeouts = 0;
  }

  /**
   * Counts one finished call.
   * @param {number} started when it started (monotonic ms).
   * @param {Error|null} error its failure, if any.
   */
  record(started, error) {
    const t = now();
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
 */
class ServiceClient {
  /**
   * @param {Record<string, {host?: string, port?: number, servers?: Array<unknown>, appId?: string, strategy?: string, minConnections?: number, maxConnections?: number, timeout?: number, healthCheckInterval?: number, reconnectDelay?: number}>} services
   *   name -> description; `appId` defaults to the name, `timeout` is the
   *   default deadline of its calls (ms), `reconnectDelay` the first
   *   backoff delay of its clients (ms).
   * @param {object} [options] `appId` ('gateway'): this gateway's name;
   *   any other option goes to every service's clients (`token`...).
   * @throws {TypeError|RangeError} a bad description.
   */
  constructor(services, { appId = 'gateway', ...shared } = {}) {
    if (services === null || typeof services !== 'object' || Object.keys(services).length === 0) {
      throw new TypeError('services must map at least one name to a description');
    }
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    refuseQueuePath('ServiceClient', shared);
    this.appId = appId;
    this._services = new Map(Object.entries(services).map(([name, spec]) => [name, new Service(name, spec, shared)]));
    this._closed = false;
  }

  /** The service names. */
  get services() {
    return [...this._services.keys()];
  }

  /**
   * Connects to every service. A service none of whose servers answers
   * fails start() but keeps trying (health checks); the others work.
   * @returns {Promise<void>}
   * @throws {NotConnectedError} naming the unreachable services.
   */
  async start() {
    if (this._closed) throw new NotConnectedError('the service client is shut down');
    const results = await Promise.allSettled([...this._services.values()].map((s) => s.client.start()));
    const names = [...this._services.keys()];
    const down = names.filter((_, i) => results[i].status === 'rejected');
    if (down.length > 0) {
      const first = results.find((r) => r.status === 'rejected').reason;
      throw new NotConnectedError(`unreachable: ${down.join(', ')}`, { cause: first });
    }
  }

  /**
   * Calls `method` (a channel in the service's app) and returns the payload.
   * @param {string} service a name given to the constructor.
   * @param {string} method the channel.
   * @param {unknown} [data] the request payload.
   * @param {{timeout?: number}} [options] ms; default the service's `timeout`.
   * @returns {Promise<unknown>} the response payload.
   * @throws {TypeError} an unknown service.
   * @throws {IpcError} the call's failure (`.code`), not_connected after shutdown().
   */
  async request(service, method, data = null, { timeout } = {}) {
    if (this._closed) throw new NotConnectedError('the service client is shut down');
    const svc = this._services.get(service);
    if (svc === undefined) throw new TypeError(`unknown service ${JSON.stringify(service)}`);
    const started = now();
    try {
      const res = await svc.client.sendRequest(method, data, timeout);
      svc.record(started, null);
      return res.payload;
    } catch (err) {
      svc.record(started, err);
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
   * Closes every connection. Later calls reject with not_connected.
   * @returns {Promise<void>}
   */
  async shutdown() {
    if (this._closed) return;
    this._closed = true;
    await Promise.all([...this._services.values()].map((s) => s.client.close()));
  }
}

module.exports = { ServiceClient };
