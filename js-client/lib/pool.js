'use strict';

/**
 * ConnectionPool: several IPCClients to one server (docs/resilience.md §7).
 *
 * Two ways to use a member:
 * - acquire() / release() / execute(): the member is the caller's alone
 *   until released (§7).
 * - lease(): a member shared with other lessees, since one IPCClient
 *   multiplexes many calls on its connection. The member with the fewest
 *   calls in flight is used; another is opened in the background while
 *   below `maxConnections` once every member has `leaseThreshold` calls in
 *   flight. A lease never waits for exclusive access, only for a first
 *   connection. LoadBalancedClient uses it, so one connection per server
 *   is not one call at a time per server.
 *
 * Callers that have to wait share one FIFO queue; idle members and newly
 * opened connections are handed to its head (a waiting lease takes the
 * member together with every other waiting lease). A connection that fails
 * to open rejects the waiter it was opened for with not_connected instead
 * of leaving it to hang until its timeout, so a dead server is reported at
 * once.
 *
 * Members never reconnect by themselves (`reconnect: false`): a member whose
 * connection drops is destroyed once nobody holds it (at once, or at
 * release() or its last lease call's end) and, while the pool is below
 * `minConnections`, replaced in the background with backoff.
 *
 * The pool makes calls itself too (pool_calls.js): sendRequest/request/
 * publish/notify on a shared member, as lease() shares it, and subscribe/
 * serve on one member, replayed on its replacement (pool_registrations.js);
 * stream() reads a stream on a shared member (pooled_streams.js).
 *
 * Who gets which member, and when a connection is opened or closed, is
 * decided by planPool() (pool_plan.js, as httpcore's pool does) and applied
 * by PoolCore (pool_core.js), which does the I/O; this module is the public
 * API. Mirrors ipc_client/pool.py.
 */

const { checkNumber, parseOptions, refuseQueuePath } = require('./options');
const { toNumber } = require('./legacy_options');
const { checkTimeout } = require('./call_options');
const { NotConnectedError } = require('./errors');
const { PoolStreaming } = require('./pooled_streams');
const { pickIdle } = require('./pool_plan');
const { sumMetrics } = require('./pool_metrics');
const { clearLongTimeout } = require('./long_timer');

/** Pool defaults (§7); milliseconds. */
const POOL_DEFAULTS = Object.freeze({
  minConnections: 1,
  maxConnections: 10,
  acquireTimeout: 5000,
  idleTimeout: 30_000,
  leaseThreshold: 1
});

/** Backoff of background replacement when the client options give none. */
const REFILL_DELAY_MS = 500;
const REFILL_DELAY_MAX_MS = 30_000;

/**
 * Checks the longest wait for a member of acquire(), lease() and execute()
 * (a numeric string is read as its number). Zero or less is a deadline
 * already passed: a free member is still taken, none is waited for;
 * Infinity waits for ever, as the `acquireTimeout` option may. What is not
 * a number (NaN, 'x') would be a deadline that never passes.
 * @param {unknown} timeout milliseconds.
 * @returns {number}
 * @private
 */
function checkWait(timeout) {
  const ms = toNumber(timeout);
  if (typeof ms !== 'number' || Number.isNaN(ms)) {
    throw new TypeError(`timeout must be a number of milliseconds, got ${String(timeout)}`);
  }
  return ms;
}

/**
 * A pool of connections to one server.
 *
 * Events: 'created' ({client}), 'destroyed' ({client, reason}),
 * 'connection_lost' ({client, error}) when a member's connection dropped,
 * 'error' (err, only when listened to) when a background replacement fails.
 */
class ConnectionPool extends PoolStreaming {
  /**
   * @param {string} appId the application of every member.
   * @param {object} [options] `minConnections` (1), `maxConnections` (10),
   *   `acquireTimeout` (5000 ms), `idleTimeout` (30000 ms),
   *   `leaseThreshold` (1: calls in flight on every member before lease()
   *   opens another); every other option goes to each member's IPCClient,
   *   with `reconnect: false` and `waitOnFirstConnect: false` (the pool
   *   replaces members itself, and a failed open must fail its waiter).
   *   Numbers may be numeric strings; unknown options warn (see IPCClient).
   * @throws {TypeError|RangeError} bad options (checked here, not at the first connection).
   */
  constructor(appId, options = {}) {
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    refuseQueuePath('ConnectionPool', options);
    const merged = { ...POOL_DEFAULTS };
    const clientOptions = {};
    for (const [key, value] of Object.entries(options ?? {})) {
      if (value === undefined) continue;
      if (key in POOL_DEFAULTS) merged[key] = toNumber(value);
      else clientOptions[key] = value;
    }
    checkNumber(merged, 'minConnections', { min: 0, integer: true }); // as IPCClient's own options
    checkNumber(merged, 'maxConnections', { min: 1, integer: true });
    checkNumber(merged, 'acquireTimeout', { min: 1, infinite: true });
    checkNumber(merged, 'idleTimeout', { min: 1, infinite: true });
    checkNumber(merged, 'leaseThreshold', { min: 1, integer: true, infinite: true });
    if (merged.minConnections > merged.maxConnections) throw new RangeError('option minConnections must be <= maxConnections');
    const clientOptionsFrozen = Object.freeze({ ...clientOptions, reconnect: false, waitOnFirstConnect: false });
    const parsed = parseOptions(clientOptionsFrozen); // a bad value fails here, not at the first connection
    const refillDelay = parsed.initialDelay ?? parsed.reconnectDelay ?? REFILL_DELAY_MS;
    super(appId, merged, clientOptionsFrozen, {
      host: parsed.host,
      port: parsed.port,
      refillDelay,
      refillDelayMax: Math.max(refillDelay, parsed.maxDelay ?? parsed.reconnectDelayMax ?? REFILL_DELAY_MAX_MS)
    });
    this._requestTimeout = parsed.requestTimeout; // the default deadline of the pool's own calls
  }

  /** Whether close() was called. */
  get closed() {
    return this._closed;
  }

  /**
   * Opens `minConnections` connections. The pool stays usable if that
   * fails: it keeps trying in the background until close().
   * @returns {Promise<void>}
   * @throws {NotConnectedError} a connection could not be opened (`.cause` says why).
   */
  async start() {
    if (this._closed) throw new NotConnectedError('the pool is closed');
    this._started = true;
    const missing = this.minConnections - this._members.size - this._opening;
    const opens = [];
    for (let i = 0; i < missing; i++) opens.push(this._spawnOpen());
    const results = await Promise.allSettled(opens);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      this._scheduleRefill();
      throw failed.reason;
    }
  }


  /**
   * Lends a connected client: an idle one, else a new one while below
   * `maxConnections`, else the next one released (first come, first served).
   * @param {{timeout?: number}} [options] milliseconds, default `acquireTimeout`.
   * @returns {Promise<IPCClient>} give it back with release().
   * @throws {RequestTimeoutError} none became available in time (code `timeout`).
   * @throws {NotConnectedError} the pool is closed, or a connection could not be opened.
   * @throws {TypeError} `timeout` is not a number (rejects).
   */
  acquire({ timeout = this.acquireTimeout } = {}) {
    try {
      timeout = checkWait(timeout);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this._closed) return Promise.reject(new NotConnectedError('the pool is closed'));
    if (this._waiters.length === 0 && !this._settling) {
      const member = pickIdle(this._members); // nobody waits: no plan needed
      if (member !== null) {
        this._take(member, false);
        return Promise.resolve(member.client);
      }
    }
    return this._wait(false, timeout).then((member) => member.client);
  }

  /**
   * Gives back a client from acquire(). A client that is no longer
   * connected is destroyed (and replaced up to `minConnections`): until
   * then it counts in `inUse` and toward `maxConnections`. A client
   * this pool does not lend out (already released, destroyed, foreign) is
   * ignored.
   * @param {IPCClient} client
   * @returns {boolean} whether the pool took it back.
   */
  release(client) {
    const member = this._find(client);
    if (member === null || !member.leased) return false;
    member.leased = false;
    this._free(member);
    return true;
  }

  /**
   * acquire(), `fn(client)`, release(), even when `fn` throws.
   * @template T
   * @param {(client: IPCClient) => Promise<T>|T} fn
   * @param {{timeout?: number}} [options] for acquire().
   * @returns {Promise<T>} what `fn` returned.
   */
  async execute(fn, options) {
    const client = await this.acquire(options);
    try {
      return await fn(client);
    } finally {
      this.release(client);
    }
  }

  /**
   * Runs `fn(client)` on a member shared with other lease() calls: the
   * connected member with the fewest calls in flight (never one held by
   * acquire()). Once every member has `leaseThreshold` calls in flight,
   * another is opened in the background while below `maxConnections`; the
   * call does not wait for it. A lease waits only while no member is
   * usable at all (none opened yet, or every one acquired).
   *
   * `fn` must only make calls on the client (no disconnect(), no
   * registrations: they would outlive the lease or disturb other lessees).
   * A shared member counts in stats().inUse while calls are in flight on it.
   * @template T
   * @param {(client: IPCClient) => Promise<T>|T} fn
   * @param {{timeout?: number}} [options] longest wait for a member, ms,
   *   default `acquireTimeout`.
   * @returns {Promise<T>} what `fn` returned.
   * @throws {RequestTimeoutError} no member became usable in time (code `timeout`).
   * @throws {NotConnectedError} the pool is closed, or a connection could not be opened.
   * @throws {TypeError} `fn` is not a function, or `timeout` not a number.
   */
  async lease(fn, { timeout = this.acquireTimeout } = {}) {
    if (typeof fn !== 'function') throw new TypeError('fn must be a function');
    const member = await this._share(checkWait(timeout));
    try {
      return await fn(member.client);
    } finally {
      this._unshare(member);
    }
  }

  /**
   * Pings the server on one connection: an idle or busy member (a ping
   * needs no exclusive use), else a new one. Never throws.
   * @param {{timeout?: number}} [options] milliseconds, default 2000.
   * @returns {Promise<{healthy: boolean, latencyMs: number|null, error?: string}>}
   */
  async healthCheck({ timeout = 2000 } = {}) {
    if (this._closed) return { healthy: false, latencyMs: null, error: 'not_connected' };
    try {
      timeout = checkTimeout(timeout);
    } catch (err) {
      return { healthy: false, latencyMs: null, error: String(err) }; // as IPCClient.health() says it
    }
    const start = performance.now();
    let client = null;
    for (const member of this._members) {
      if (member.client.connected) {
        client = member.client;
        break;
      }
    }
    let leased = null;
    if (client === null) {
      try {
        leased = await this._share(timeout);
        client = leased.client;
      } catch (err) {
        return { healthy: false, latencyMs: null, error: err.code ?? String(err) };
      }
    }
    try {
      const left = Math.max(1, timeout - (performance.now() - start));
      const res = await client.health({ timeout: left });
      return res.healthy ? { healthy: true, latencyMs: res.latencyMs } : { healthy: false, latencyMs: null, error: res.error };
    } finally {
      if (leased !== null) this._unshare(leased);
    }
  }

  /**
   * Closes every member; waiting acquire() calls reject with not_connected.
   * Members still lent out are closed too (their pending calls reject
   * connection_lost).
   * @returns {Promise<void>}
   */
  async close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._refillTimer);
    this._refillTimer = null;
    const waiters = this._waiters.splice(0);
    for (const w of waiters) {
      clearLongTimeout(w.timer);
      w.reject(new NotConnectedError('the pool is closed'));
    }
    this._registrations.registrar = null;
    const members = [...this._members];
    const opening = [...this._openingClients].map((client) => client.disconnect().catch(() => {}));
    await Promise.all([...opening, ...members.map((m) => this._destroy(m, new NotConnectedError('the pool is closed')))]);
  }

  /**
   * Counts for dashboards and tests: `total` = `available` + `inUse`. As in
   * the Python pool, `inUse` counts members acquired or with lease() calls
   * in flight (a shared member counts once, however many calls it carries);
   * `available` those with neither; `pending` acquire() and lease() calls
   * waiting for a member.
   * @returns {{total: number, available: number, inUse: number, pending: number, totalCreated: number, totalDestroyed: number}}
   */
  stats() {
    let available = 0;
    for (const m of this._members) if (!m.leased && m.shared === 0) available++;
    return {
      total: this._members.size,
      available,
      inUse: this._members.size - available,
      pending: this._waiters.length,
      totalCreated: this._totalCreated,
      totalDestroyed: this._totalDestroyed
    };
  }

  /**
   * The KPIs of the members summed (§2): counters of destroyed members
   * included, current values (`activeConnections`, `queued`...) of live
   * ones only; rates and averages recomputed from the sums. Every key of a
   * member's getMetrics() is there, with no member live too (before
   * start(), the server down, after close()): the current ones at 0.
   * @returns {object}
   */
  getMetrics() {
    const parts = [this._blankMetrics];
    if (this._retired !== null) parts.push(this._retired);
    // An open under way counts its attempt, as a lone client's connect() does.
    for (const client of [...[...this._members].map((m) => m.client), ...this._openingClients]) {
      if (typeof client.getMetrics === 'function') parts.push(client.getMetrics());
    }
    return sumMetrics(parts);
  }
}

module.exports = { ConnectionPool, POOL_DEFAULTS, sumMetrics };
