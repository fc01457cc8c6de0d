'use strict';

/**
 * Server selection for the load-balanced client (docs/resilience.md §8):
 * parsing the server list, per-server statistics, and the four strategies.
 * Pure: no sockets and no timers (the random source is injectable), so
 * every strategy is tested on its own; LoadBalancedClient does the I/O.
 */

const { shownValue } = require('./thrown');

/** The selection strategies. */
const Strategy = Object.freeze({
  ROUND_ROBIN: 'round_robin',
  LEAST_CONNECTIONS: 'least_connections',
  WEIGHTED: 'weighted',
  RANDOM: 'random'
});

const STRATEGIES = new Set(Object.values(Strategy));

/**
 * Reads one server of the list: `"host:port"`, `[host, port]` or
 * `{host, port, weight}` (weight 1 by default). In the array and the object
 * the port and weight are numbers, as Python's parse_server takes them:
 * text is the `"host:port"` form's, in decimal digits (`['h', '80']` passed
 * here and was refused there, and `' 80'` or `'8e1'` read as 80).
 * @param {string|[string, number]|{host?: string, port: number, weight?: number}} spec
 * @returns {{host: string, port: number, weight: number}}
 * @throws {TypeError} a server that cannot be read.
 */
function parseServer(spec) {
  let host;
  let port;
  let weight = 1;
  if (typeof spec === 'string') {
    const colon = spec.lastIndexOf(':');
    host = colon > 0 ? spec.slice(0, colon).replace(/^\[(.*)\]$/, '$1') : '';
    const digits = colon > 0 ? spec.slice(colon + 1) : '';
    port = /^[0-9]+$/.test(digits) ? Number(digits) : NaN; // decimal digits only, as Python reads it: not '0x50', '1e2' or ' 80'
  } else if (Array.isArray(spec)) {
    [host, port] = spec;
  } else if (spec !== null && typeof spec === 'object') {
    ({ host = 'localhost', port, weight = 1 } = spec);
  }
  if (typeof host !== 'string' || host.length === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`a server is "host:port", [host, port] or {host, port, weight}, got ${shownValue(spec)}`);
  }
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new TypeError(`a server weight must be a positive number, got ${shownValue(weight)}`);
  }
  return { host, port, weight };
}

/**
 * One server as the balancer sees it: health, load and counters.
 */
class ServerState {
  /**
   * @param {{host: string, port: number, weight: number}} server
   */
  constructor({ host, port, weight }) {
    this.host = host;
    this.port = port;
    this.weight = weight;
    this.healthy = true;
    /** It said it is leaving (lame duck, docs/protocol.md §13.1): still serving, but calls go elsewhere while another server is healthy. */
    this.leaving = false;
    this.inFlight = 0;
    this.requests = 0;
    this.errors = 0;
    this.latencyTotalMs = 0;
    this.currentWeight = 0; // smooth weighted round robin
  }

  /** `host:port`. */
  get address() {
    return `${this.host}:${this.port}`;
  }

  /** A call starts on this server. */
  begin() {
    this.inFlight++;
  }

  /**
   * A call on this server ended.
   * @param {boolean} ok whether it succeeded.
   * @param {number} latencyMs how long it took.
   */
  end(ok, latencyMs) {
    this.inFlight--;
    this.requests++;
    this.latencyTotalMs += latencyMs;
    if (!ok) this.errors++;
  }

  /**
   * The figures of serverStats() (§8).
   * @returns {{host: string, port: number, weight: number, healthy: boolean, inFlight: number, requests: number, errors: number, errorRate: number, averageLatencyMs: number|null}}
   */
  snapshot() {
    return {
      host: this.host,
      port: this.port,
      weight: this.weight,
      healthy: this.healthy,
      inFlight: this.inFlight,
      requests: this.requests,
      errors: this.errors,
      errorRate: this.requests === 0 ? 0 : this.errors / this.requests,
      averageLatencyMs: this.requests === 0 ? null : this.latencyTotalMs / this.requests
    };
  }
}

/**
 * Picks a server for each call among the healthy ones.
 */
class Balancer {
  /**
   * @param {ServerState[]} servers
   * @param {{strategy?: string, random?: () => number}} [options]
   *   `random` returns a number in [0, 1) (Math.random by default).
   * @throws {TypeError} an unknown strategy or an empty list.
   */
  constructor(servers, { strategy = Strategy.ROUND_ROBIN, random = Math.random } = {}) {
    if (!STRATEGIES.has(strategy)) {
      throw new TypeError(`strategy must be one of ${[...STRATEGIES].join(', ')}, got ${shownValue(strategy)}`);
    }
    if (!Array.isArray(servers) || servers.length === 0) throw new TypeError('at least one server is needed');
    this.servers = servers;
    this.strategy = strategy;
    this._random = random;
    this._cursor = 0; // round robin, and tie-breaking for least connections
  }

  /**
   * The server for the next call: healthy and not in `exclude` (the
   * servers this call already tried); one that is leaving only when no
   * other is left.
   * @param {Set<ServerState>} [exclude]
   * @returns {ServerState|null} null when none is left.
   */
  pick(exclude) {
    const open = this.servers.filter((s) => s.healthy && !(exclude && exclude.has(s)));
    const staying = open.filter((s) => !s.leaving);
    const candidates = staying.length > 0 ? staying : open;
    if (candidates.length === 0) return null;
    switch (this.strategy) {
      case Strategy.LEAST_CONNECTIONS:
        return this._leastConnections(candidates);
      case Strategy.WEIGHTED:
        return this._weighted(candidates);
      case Strategy.RANDOM:
        return candidates[Math.min(candidates.length - 1, Math.floor(this._random() * candidates.length))];
      default:
        return this._roundRobin(new Set(candidates));
    }
  }

  /**
   * The next candidate after the last server picked, in list order.
   * @param {Set<ServerState>} candidates
   * @returns {ServerState|null}
   * @private
   */
  _roundRobin(candidates) {
    const n = this.servers.length;
    for (let i = 0; i < n; i++) {
      const s = this.servers[(this._cursor + i) % n];
      if (candidates.has(s)) {
        this._cursor = (this._cursor + i + 1) % n;
        return s;
      }
    }
    return null;
  }

  /**
   * The server with the fewest calls in flight; ties go round robin so
   * an idle cluster still spreads its load.
   * @param {ServerState[]} candidates
   * @returns {ServerState}
   * @private
   */
  _leastConnections(candidates) {
    const fewest = Math.min(...candidates.map((s) => s.inFlight));
    const tied = candidates.filter((s) => s.inFlight === fewest);
    const chosen = tied[this._cursor % tied.length];
    this._cursor = (this._cursor + 1) % this.servers.length;
    return chosen;
  }

  /**
   * Smooth weighted round robin (as in nginx): each candidate gains its
   * weight, the richest is chosen and pays the total. Weights 5, 1, 1 give
   * a a b a c a a rather than a a a a a b c.
   * @param {ServerState[]} candidates
   * @returns {ServerState}
   * @private
   */
  _weighted(candidates) {
    let total = 0;
    let best = null;
    for (const s of candidates) {
      s.currentWeight += s.weight;
      total += s.weight;
      if (best === null || s.currentWeight > best.currentWeight) best = s;
    }
    best.currentWeight -= total;
    return best;
  }
}

module.exports = { Strategy, Balancer, ServerState, parseServer };
