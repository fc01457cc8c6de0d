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
 * to open rejects the oldest waiter with not_connected instead of leaving
 * it to hang until its timeout, so a dead server is reported at once.
 *
 * Members never reconnect by themselves (`reconnect: false`): a member whose
 * connection drops is destroyed and, while the pool is below
 * `minConnections`, replaced in the background with backoff.
 */

const { EventEmitter } = require('node:events');
const { IPCClient } = require('./client');
const { parseOptions, refuseQueuePath } = require('./options');
const { toNumber } = require('./legacy_options');
const { backoffDelay } = require('./backoff');
const { NotConnectedError, RequestTimeoutError } = require('./errors');

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
   *   `acquireTimeout` (5000 ms), `idleTimeout` (30000 ms),
   *   `leaseThreshold` (1: calls in flight on every member before lease()
   *   opens another); every other option goes to each member's IPCClient,
   *   with `reconnect: false` and `waitOnFirstConnect: false` (the pool
   *   replaces members itself, and a failed open must fail its waiter).
   *   Numbers may be numeric strings; unknown options warn (see IPCClient).
   * @throws {TypeError|RangeError} bad options (checked here, not at the first connection).
   */
  constructor(appId, options = {}) {
    super();
    if (typeof appId !== 'string' || appId.length === 0) throw new TypeError('appId must be a non-empty string');
    refuseQueuePath('ConnectionPool', options);
    const merged = { ...POOL_DEFAULTS };
    const clientOptions = {};
    for (const [key, value] of Object.entries(options ?? {})) {
      if (value === undefined) continue;
      if (key in POOL_DEFAULTS) merged[key] = toNumber(value);
      else clientOptions[key] = value;
    }
    checkPoolOption('minConnections', merged.minConnections, { min: 0, integer: true });
    checkPoolOption('maxConnections', merged.maxConnections, { min: 1, integer: true });
    checkPoolOption('acquireTimeout', merged.acquireTimeout, { min: 1, infinite: true });
    checkPoolOption('idleTimeout', merged.idleTimeout, { min: 1, infinite: true });
    checkPoolOption('leaseThreshold', merged.leaseThreshold, { min: 1, integer: true, infinite: true });
    if (merged.minConnections > merged.maxConnections) throw new RangeError('option minConnections must be <= maxConnections');
    this.appId = appId;
    this.minConnections = merged.minConnections;
    this.maxConnections = merged.maxConnections;
    this.acquireTimeout = merged.acquireTimeout;
    this.idleTimeout = merged.idleTimeout;
    this.leaseThreshold = merged.leaseThreshold;
    this._clientOptions = Object.freeze({ ...clientOptions, reconnect: false, waitOnFirstConnect: false });
    const parsed = parseOptions(this._clientOptions); // a bad value fails here, not at the first connection
    this.host = parsed.host;
    this.port = parsed.port;
    this._refillDelay = parsed.initialDelay ?? parsed.reconnectDelay ?? REFILL_DELAY_MS;
    this._refillDelayMax = Math.max(this._refillDelay, parsed.maxDelay ?? parsed.reconnectDelayMax ?? REFILL_DELAY_MAX_MS);
    this._members = new Map(); // client -> {client, inUse, shared, idleTimer}
    this._idle = []; // members neither acquired nor leased, most recently used last
    this._waiters = []; // acquire() and lease() calls waiting, oldest first
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
    return this._wait(false, timeout).then((member) => member.client);
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
   */
  async lease(fn, { timeout = this.acquireTimeout } = {}) {
    if (typeof fn !== 'function') throw new TypeError('fn must be a function');
    const member = await this._share(timeout);
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
    const start = performance.now();
    let client = null;
    for (const member of this._members.values()) {
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
      clearTimeout(w.timer);
      w.reject(new NotConnectedError('the pool is closed'));
    }
    const members = [...this._members.values()];
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
   * Queues an acquire() (`shared` false) or lease() (`shared` true) until a
   * member is handed over, rejecting with timeout after `timeout` ms.
   * @param {boolean} shared
   * @param {number} timeout
   * @returns {Promise<object>} the member, already marked in use or shared.
   * @private
   */
  _wait(shared, timeout) {
    return new Promise((resolve, reject) => {
      const waiter = { shared, resolve, reject, timer: null };
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
   * A member for one more lease() call, counted as shared.
   * @param {number} timeout
   * @returns {Promise<object>}
   * @private
   */
  _share(timeout) {
    if (this._closed) return Promise.reject(new NotConnectedError('the pool is closed'));
    const member = this._pickShared();
    if (member === null) return this._wait(true, timeout);
    member.shared++;
    return Promise.resolve(member);
  }

  /**
   * The member a lease should use now, or null when none is usable: the
   * busiest-below-threshold rule keeps calls on few connections, so extra
   * members only open (and then age out) under real load.
   * @returns {object|null}
   * @private
   */
  _pickShared() {
    let best = null;
    for (const member of this._members.values()) {
      if (member.inUse || member.shared === 0 || !member.client.connected) continue;
      if (best === null || member.shared < best.shared) best = member;
    }
    if (best !== null && best.shared < this.leaseThreshold) return best;
    const idle = this._takeIdle();
    if (idle !== null) return idle;
    if (best !== null) this._grow();
    return best;
  }

  /**
   * Opens one more member in the background, while below `maxConnections`
   * and none is already opening; later leases pick it up once connected.
   * @private
   */
  _grow() {
    if (this._opening > 0 || this._capacity() <= 0) return;
    this._spawnOpen().catch(() => {}); // the failure went to a waiter or to 'error'
  }

  /**
   * One lease() call on a member ended; the last one frees the member.
   * @param {object} member
   * @private
   */
  _unshare(member) {
    member.shared--;
    if (member.shared > 0 || member.inUse || !this._members.has(member.client)) return;
    if (!member.client.connected) {
      this._destroy(member, new NotConnectedError('lease ended while not connected'));
      return;
    }
    this._recycle(member);
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
      this._offer(member);
    }
    let uncovered = this._membersWanted() - this._opening;
    while (uncovered > 0 && this._capacity() > 0) {
      this._spawnOpen().catch(() => {}); // the failure went to a waiter or to 'error'
      uncovered--;
    }
  }

  /**
   * Members the waiters need: one per acquire(), one for all the leases.
   * @returns {number}
   * @private
   */
  _membersWanted() {
    let exclusive = 0;
    let leases = 0;
    for (const waiter of this._waiters) {
      if (waiter.shared) leases = 1;
      else exclusive++;
    }
    return exclusive + leases;
  }

  /**
   * Gives a member to a waiter: lent out to an acquire(), shared with a lease().
   * @param {object} waiter
   * @param {object} member
   * @private
   */
  _handTo(waiter, member) {
    clearTimeout(waiter.timer);
    if (waiter.shared) member.shared++;
    else member.inUse = true;
    waiter.resolve(member);
  }

  /**
   * Hands a free member to the oldest waiter. When that is a lease, every
   * waiting lease shares the member: none of them needs it alone.
   * @param {object} member
   * @returns {boolean} false when nobody waits.
   * @private
   */
  _offer(member) {
    const head = this._waiters[0];
    if (head === undefined) return false;
    if (!head.shared) {
      this._handTo(this._waiters.shift(), member);
      return true;
    }
    const leases = this._waiters.filter((w) => w.shared);
    this._waiters = this._waiters.filter((w) => !w.shared);
    for (const waiter of leases) this._handTo(waiter, member);
    return true;
  }

  /**
   * A member is free: the oldest waiter gets it, else it goes idle (and is
   * closed after `idleTimeout` while the pool is above `minConnections`).
   * @param {object} member
   * @private
   */
  _recycle(member) {
    if (this._offer(member)) return;
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
      if (member.inUse || member.shared > 0 || !this._members.has(member.client)) return;
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
    const member = { client, inUse: false, shared: 0, idleTimer: null };
    this._members.set(client, member);
    this.totalCreated++;
    this._refillAttempt = 0;
    client.on('disconnected', (arg) => this._onLost(member, lostError(arg)));
    this.emit('created', { client });
    this._recycle(member);
    this._pump();
  }

  /**
   * After a failed open: the oldest waiter fails now (with every waiting
   * lease when it is one: they were all counting on that connection), the
   * others get a new attempt; below `minConnections` a retry is scheduled.
   * @param {NotConnectedError} error
   * @private
   */
  _onOpenFailed(error) {
    if (this._closed) return;
    const head = this._waiters[0];
    if (head !== undefined) {
      const failed = head.shared ? this._waiters.filter((w) => w.shared) : [head];
      this._waiters = this._waiters.filter((w) => !failed.includes(w));
      for (const waiter of failed) {
        clearTimeout(waiter.timer);
        waiter.reject(error);
      }
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
