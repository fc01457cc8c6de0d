'use strict';

/**
 * ConnectionPool: several IPCClients to one server (docs/resilience.md §7).
 *
 * Every acquire() waits in one FIFO queue; idle members and newly opened
 * connections are handed to its head. A connection that fails to open
 * rejects the oldest waiter with not_connected instead of leaving it to
 * hang until its timeout, so a dead server is reported at once.
 *
 * Members never reconnect by themselves (`reconnect: false`): a member whose
 * connection drops is destroyed and, while the pool is below
 * `minConnections`, replaced in the background with backoff.
 */

const { EventEmitter } = require('node:events');
const { IPCClient } = require('./client');
const { parseOptions } = require('./options');
const { backoffDelay } = require('./backoff');
const { NotConnectedError, RequestTimeoutError } = require('./errors');

/** Pool defaults (§7); milliseconds. */
const POOL_DEFAULTS = Object.freeze({
  minConnections: 1,
  maxConnections: 10,
  acquireTimeout: 5000,
  idleTimeout: 30_000
});

/** Backoff of background replacement when the client options give none. */
const REFILL_DELAY_MS = 500;
const REFILL_DELAY_MAX_MS = 30_000;

/** Metrics that are current values, not counters: a destroyed member's no longer count. */
const CURRENT_METRICS = new Set(['activeConnections', 'queued', 'queuedBytes']);

/**
 * Checks a pool option.
 * @param {string} name
 * @param {unknown} value
 * @param {{min: number, integer?: boolean, infinite?: boolean}} rule
 * @private
 */
function checkPoolOption(name, value, { min, integer = false, infinite = false }) {
  const ok =
    typeof value === 'number' &&
    value >= min &&
    (Number.isFinite(value) ? !integer || Number.isInteger(value) : infinite && value > 0);
  if (!ok) throw new TypeError(`option ${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${String(value)}`);
}

/**
 * The error of a 'disconnected' event: the event passes the error (§2), or
 * an object holding it.
 * @param {unknown} arg
 * @returns {Error|null}
 * @private
 */
function lostError(arg) {
  if (arg instanceof Error) return arg;
  return arg !== null && typeof arg === 'object' && arg.error instanceof Error ? arg.error : null;
}

/**
 * Sums the KPIs of several clients (§2), recomputing rates and averages
 * from the sums rather than adding them up.
 * @param {object[]} parts getMetrics() results.
 * @returns {object}
 * @private
 */
function sumMetrics(parts) {
  const out = {};
  for (const part of parts) {
    for (const [key, value] of Object.entries(part)) {
      if (typeof value === 'number' && Number.isFinite(value)) out[key] = (out[key] ?? 0) + value;
    }
  }
  const ratio = (num, den) => (den > 0 ? num / den : 1);
  if ('connectionSuccessRate' in out) out.connectionSuccessRate = ratio(out.connectionSuccesses ?? 0, out.connectionAttempts ?? 0);
  if ('messageDeliveryRate' in out) {
    const delivered = out.messagesDelivered ?? 0;
    out.messageDeliveryRate = ratio(delivered, delivered + (out.messagesFailed ?? 0));
  }
  const weighted = (avgKey, weightKey) => {
    if (!(avgKey in out)) return;
    let total = 0;
    let weight = 0;
    for (const part of parts) {
      const w = typeof part[weightKey] === 'number' ? part[weightKey] : 0;
      if (typeof part[avgKey] === 'number' && w > 0) {
        total += part[avgKey] * w;
        weight += w;
      }
    }
    out[avgKey] = weight > 0 ? total / weight : 0;
  };
  weighted('averageReconnectionTimeMs', 'reconnections');
  weighted('averageConnectionDurationMs', 'connectionSuccesses');
  return out;
}

/**
 * A pool of connections to one server.
 *
 * Events: 'created' ({client}), 'destroyed' ({client, reason}),
 * 'connection_lost' ({client, error}) when a member's connection dropped,
 * 'error' (err, only when listened to) when a background replacement fails.
 */
class ConnectionPool extends EventEmitter {
  /**
   * @param {string} appId the application of every member.
   * @param {object} [options] `minConnections` (1), `maxConnections` (10),
   *   `acquireTimeout` (5000 ms), `idleTimeout` (30000 ms); every other
   *   option goes to each member's IPCClient, with `reconnect: false`.
   * @throws {TypeError|RangeError} bad options (checked here, not at the first connection).
   */
  constructor(appId, options = {}) {
    super();
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    const merged = { ...POOL_DEFAULTS };
    const clientOptions = {};
    for (const [key, value] of Object.entries(options ?? {})) {
      if (value === undefined) continue;
      if (key in POOL_DEFAULTS) merged[key] = value;
      else clientOptions[key] = value;
    }
    checkPoolOption('minConnections', merged.minConnections, { min: 0, integer: true });
    checkPoolOption('maxConnections', merged.maxConnections, { min: 1, integer: true });
    checkPoolOption('acquireTimeout', merged.acquireTimeout, { min: 1, infinite: true });
    checkPoolOption('idleTimeout', merged.idleTimeout, { min: 1, infinite: true });
    if (merged.minConnections > merged.maxConnections) throw new RangeError('option minConnections must be <= maxConnections');
    this.appId = appId;
    this.minConnections = merged.minConnections;
    this.maxConnections = merged.maxConnections;
    this.acquireTimeout = merged.acquireTimeout;
    this.idleTimeout = merged.idleTimeout;
    this._clientOptions = Object.freeze({ ...clientOptions, reconnect: false });
    const parsed = parseOptions(this._clientOptions); // a typo fails here, not at the first connection
    this.host = parsed.host;
    this.port = parsed.port;
    this._refillDelay = parsed.initialDelay ?? parsed.reconnectDelay ?? REFILL_DELAY_MS;
    this._refillDelayMax = Math.max(this._refillDelay, parsed.maxDelay ?? parsed.reconnectDelayMax ?? REFILL_DELAY_MAX_MS);
    this._members = new Map(); // client -> {client, inUse, idleTimer}
    this._idle = []; // idle members, most recently released last
    this._waiters = []; // acquire() calls, oldest first
    this._opening = 0;
    this._openingClients = new Set(); // so close() can stop their handshakes
    this._started = false;
    this._closed = false;
    this._refillTimer = null;
    this._refillAttempt = 0;
    this._retired = []; // final metrics of destroyed members, so counters survive them
    this.totalCreated = 0;
    this.totalDestroyed = 0;
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
   */
  acquire({ timeout = this.acquireTimeout } = {}) {
    if (this._closed) return Promise.reject(new NotConnectedError('the pool is closed'));
    if (this._waiters.length === 0) {
      const member = this._takeIdle();
      if (member !== null) return Promise.resolve(this._lend(member));
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      if (timeout !== Infinity) {
        waiter.timer = setTimeout(() => {
          const i = this._waiters.indexOf(waiter);
          if (i !== -1) this._waiters.splice(i, 1);
          reject(new RequestTimeoutError(`no pooled connection to ${this.host}:${this.port} within ${timeout} ms`));
        }, Math.max(0, timeout));
      }
      this._waiters.push(waiter);
      this._pump();
    });
  }

  /**
   * Gives back a client from acquire(). A client that is no longer
   * connected is destroyed (and replaced up to `minConnections`). A client
   * this pool does not lend out (already released, destroyed, foreign) is
   * ignored.
   * @param {IPCClient} client
   * @returns {boolean} whether the pool took it back.
   */
  release(client) {
    const member = this._members.get(client);
    if (member === undefined || !member.inUse) return false;
    member.inUse = false;
    if (!client.connected) {
      this._destroy(member, new NotConnectedError('released while not connected'));
      return true;
    }
    this._recycle(member);
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
   * Pings the server on one connection: an idle or busy member (a ping
   * needs no exclusive use), else a new one. Never throws.
   * @param {{timeout?: number}} [options] milliseconds, default 2000.
   * @returns {Promise<{healthy: boolean, latencyMs: number|null, error?: string}>}
   */
  async healthCheck({ timeout = 2000 } = {}) {
    if (this._closed) return { healthy: false, latencyMs: null, error: 'not_connected' };
    const start = performance.now();
    let client = null;
    for (const member of this._members.values()) {
      if (member.client.connected) {
        client = member.client;
        break;
      }
    }
    let borrowed = false;
    if (client === null) {
      try {
        client = await this.acquire({ timeout });
        borrowed = true;
      } catch (err) {
        return { healthy: false, latencyMs: null, error: err.code ?? String(err) };
      }
    }
    try {
      const left = Math.max(1, timeout - (performance.now() - start));
      const res = await client.healthCheck({ timeout: left });
      return res.healthy ? { healthy: true, latencyMs: res.latencyMs } : { healthy: false, latencyMs: null, error: res.error };
    } finally {
      if (borrowed) this.release(client);
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
      clearTimeout(w.timer);
      w.reject(new NotConnectedError('the pool is closed'));
    }
    const members = [...this._members.values()];
    const opening = [...this._openingClients].map((client) => client.disconnect().catch(() => {}));
    await Promise.all([...opening, ...members.map((m) => this._destroy(m, new NotConnectedError('the pool is closed')))]);
  }

  /**
   * Counts for dashboards and tests: `total` = `available` + `inUse`.
   * @returns {{total: number, available: number, inUse: number, pending: number, totalCreated: number, totalDestroyed: number}}
   */
  stats() {
    return {
      total: this._members.size,
      available: this._idle.length,
      inUse: this._members.size - this._idle.length,
      pending: this._waiters.length,
      totalCreated: this.totalCreated,
      totalDestroyed: this.totalDestroyed
    };
  }

  /**
   * The KPIs of the members summed (§2): counters of destroyed members
   * included, current values (`activeConnections`, `queued`...) of live
   * ones only; rates and averages recomputed from the sums.
   * @returns {object|null} null when the clients have no getMetrics().
   */
  getMetrics() {
    const live = [];
    for (const { client } of this._members.values()) {
      if (typeof client.getMetrics === 'function') live.push(client.getMetrics());
    }
    if (live.length === 0 && this._retired.length === 0) return null;
    return sumMetrics([...this._retired, ...live]);
  }

  // ---------------------------------------------------------------- internals

  /**
   * Free slots: connections that may still be opened.
   * @returns {number}
   * @private
   */
  _capacity() {
    return this.maxConnections - this._members.size - this._opening;
  }

  /**
   * The most recently released idle member that is still connected.
   * @returns {object|null}
   * @private
   */
  _takeIdle() {
    while (this._idle.length > 0) {
      const member = this._idle.pop();
      clearTimeout(member.idleTimer);
      member.idleTimer = null;
      if (member.client.connected) return member;
      this._destroy(member, new NotConnectedError('idle connection found closed'));
    }
    return null;
  }

  /**
   * Marks a member lent out.
   * @param {object} member
   * @returns {IPCClient}
   * @private
   */
  _lend(member) {
    member.inUse = true;
    return member.client;
  }

  /**
   * Serves waiters: idle members first, then new connections while there
   * is room, one per waiter not already covered by a connection opening.
   * @private
   */
  _pump() {
    while (this._waiters.length > 0) {
      const member = this._takeIdle();
      if (member === null) break;
      this._handTo(this._waiters.shift(), member);
    }
    let uncovered = this._waiters.length - this._opening;
    while (uncovered > 0 && this._capacity() > 0) {
      this._spawnOpen().catch(() => {}); // the failure went to a waiter or to 'error'
      uncovered--;
    }
  }

  /**
   * Gives a member to a waiter.
   * @param {object} waiter
   * @param {object} member
   * @private
   */
  _handTo(waiter, member) {
    clearTimeout(waiter.timer);
    waiter.resolve(this._lend(member));
  }

  /**
   * A member is free: the oldest waiter gets it, else it goes idle (and is
   * closed after `idleTimeout` while the pool is above `minConnections`).
   * @param {object} member
   * @private
   */
  _recycle(member) {
    if (this._waiters.length > 0) {
      this._handTo(this._waiters.shift(), member);
      return;
    }
    this._idle.push(member);
    this._armIdle(member);
  }

  /**
   * Starts the idle timer of an idle member.
   * @param {object} member
   * @private
   */
  _armIdle(member) {
    if (this.idleTimeout === Infinity) return;
    member.idleTimer = setTimeout(() => {
      member.idleTimer = null;
      if (member.inUse || !this._members.has(member.client)) return;
      if (this._members.size > this.minConnections) {
        this._destroy(member, new NotConnectedError('idle timeout'));
      } else {
        this._armIdle(member);
      }
    }, this.idleTimeout);
    member.idleTimer.unref();
  }

  /**
   * Opens one connection and hands it on (to a waiter, or idle). A failure
   * rejects the oldest waiter, so nobody waits on a connection that will
   * never come; with nobody waiting it schedules a background retry.
   * @returns {Promise<void>} rejects with the NotConnectedError.
   * @private
   */
  async _spawnOpen() {
    this._opening++;
    const client = new IPCClient(this.appId, this._clientOptions);
    this._openingClients.add(client);
    try {
      await client.connect();
    } catch (err) {
      this._opening--;
      this._openingClients.delete(client);
      const error =
        err instanceof NotConnectedError
          ? err
          : new NotConnectedError(`could not connect to ${this.host}:${this.port}`, { cause: err });
      this._onOpenFailed(error);
      throw error;
    }
    this._opening--;
    this._openingClients.delete(client);
    if (this._closed) {
      await client.disconnect();
      throw new NotConnectedError('the pool is closed');
    }
    const member = { client, inUse: false, idleTimer: null };
    this._members.set(client, member);
    this.totalCreated++;
    this._refillAttempt = 0;
    client.on('disconnected', (arg) => this._onLost(member, lostError(arg)));
    this.emit('created', { client });
    this._recycle(member);
    this._pump();
  }

  /**
   * After a failed open: the oldest waiter fails now, the others get a new
   * attempt; below `minConnections` a retry is scheduled.
   * @param {NotConnectedError} error
   * @private
   */
  _onOpenFailed(error) {
    if (this._closed) return;
    const waiter = this._waiters.shift();
    if (waiter !== undefined) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
      this._pump();
    } else if (this.listenerCount('error') > 0) {
      this.emit('error', error);
    }
    this._scheduleRefill();
  }

  /**
   * A member's connection dropped: destroy it and refill.
   * @param {object} member
   * @param {Error|null} error
   * @private
   */
  _onLost(member, error) {
    if (!this._members.has(member.client)) return; // destroyed by the pool itself
    this.emit('connection_lost', { client: member.client, error });
    this._destroy(member, error);
  }

  /**
   * Removes a member, closes its client, and replaces it when the pool is
   * below `minConnections` or has waiters.
   * @param {object} member
   * @param {Error|null} reason
   * @returns {Promise<void>}
   * @private
   */
  _destroy(member, reason) {
    if (!this._members.delete(member.client)) return Promise.resolve();
    clearTimeout(member.idleTimer);
    const i = this._idle.indexOf(member);
    if (i !== -1) this._idle.splice(i, 1);
    this.totalDestroyed++;
    if (typeof member.client.getMetrics === 'function') {
      const final = { ...member.client.getMetrics() };
      for (const key of CURRENT_METRICS) delete final[key];
      this._retired = [sumMetrics([...this._retired, final])]; // folded: one entry, however many members died
    }
    this.emit('destroyed', { client: member.client, reason });
    const done = member.client.disconnect().catch(() => {});
    if (!this._closed) {
      this._pump();
      this._refill();
    }
    return done;
  }

  /**
   * Opens connections up to `minConnections` (once started).
   * @private
   */
  _refill() {
    if (!this._started || this._closed || this._refillTimer !== null) return;
    let missing = this.minConnections - this._members.size - this._opening;
    while (missing-- > 0) this._spawnOpen().catch(() => {});
  }

  /**
   * Retries _refill() after a backoff delay.
   * @private
   */
  _scheduleRefill() {
    if (!this._started || this._closed || this._refillTimer !== null) return;
    if (this._members.size + this._opening >= this.minConnections) return;
    const attempt = ++this._refillAttempt;
    const delay = backoffDelay(attempt, { initial: this._refillDelay, max: this._refillDelayMax, jitter: 0.5 });
    this._refillTimer = setTimeout(() => {
      this._refillTimer = null;
      this._refill();
    }, delay);
    this._refillTimer.unref();
  }
}

module.exports = { ConnectionPool, POOL_DEFAULTS, sumMetrics };
