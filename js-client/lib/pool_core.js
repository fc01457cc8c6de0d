'use strict';

/**
 * The connection pool's state and I/O (docs/resilience.md §7).
 *
 * PoolCore keeps the members and the FIFO queue of waiting callers, asks
 * planPool() (pool_plan.js) what to do whenever they change, and does it:
 * hands members over, rejects waiters, opens connections, closes dead and
 * idle members, and brings the pool back to `minConnections` (and its
 * registrations to a member, pool_registrations.js) with backoff. Timers
 * only wake it up; what is due is the plan's decision. ConnectionPool
 * (pool.js, pool_calls.js) puts the public API on top. Mirrors
 * ipc_client/pool_core.py.
 */

const { EventEmitter } = require('node:events');
const { IPCClient } = require('./client');
const { backoffDelay } = require('./backoff');
const { ConnectionLostError, NotConnectedError, RequestTimeoutError, UnauthorizedError } = require('./errors');
const { revokedForGood } = require('./reconnect');
const { planPool, DEAD, OPEN_FAILED } = require('./pool_plan');
const { foldRetired, zeroMetrics } = require('./pool_metrics');
const { PoolRegistrations } = require('./pool_registrations');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { emitEach, reportError } = require('./listeners');
const { Member, lostError } = require('./pool_member');

/**
 * Members, waiters and the plan applied to them.
 *
 * Events: 'created' ({client}), 'destroyed' ({client, reason}),
 * 'connection_lost' ({client, error}) when a member's connection dropped,
 * 'error' (err, only when listened to) when an open nobody waited for fails.
 */
class PoolCore extends EventEmitter {
  /**
   * @param {string} appId
   * @param {{minConnections: number, maxConnections: number, acquireTimeout: number,
   *   idleTimeout: number, leaseThreshold: number}} limits checked by the caller.
   * @param {object} clientOptions every member's IPCClient options.
   * @param {{host: string, port: number, refillDelay: number, refillDelayMax: number}} where
   */
  constructor(appId, limits, clientOptions, { host, port, refillDelay, refillDelayMax }) {
    super();
    this.appId = appId;
    this.minConnections = limits.minConnections;
    this.maxConnections = limits.maxConnections;
    this.acquireTimeout = limits.acquireTimeout;
    this.idleTimeout = limits.idleTimeout;
    this.leaseThreshold = limits.leaseThreshold;
    this.host = host;
    this.port = port;
    this._settings = Object.freeze({ ...limits, leaseGrowth: 'background' });
    this._clientOptions = clientOptions;
    this._refillDelay = refillDelay;
    this._refillDelayMax = refillDelayMax;
    this._members = new Set(); // Member
    this._waiters = []; // acquire() and lease() calls waiting, oldest first
    this._opening = 0;
    this._openingClients = new Set(); // so close() can stop their handshakes
    this._started = false;
    this._closed = false;
    this._settling = false; // a plan is being applied
    this._settleAgain = false;
    this._refillTimer = null;
    this._refillAttempt = 0;
    this._refused = false; // the last open was refused unauthorized: no refill until one succeeds
    this._retired = null; // final metrics of destroyed members and failed opens, and the pool's own failed calls
    // Every key of a member's KPIs at 0 (a client made and dropped names them): the pool reports them all, always.
    this._blankMetrics = zeroMetrics(new IPCClient(appId, clientOptions).getMetrics());
    this._totalCreated = 0;
    this._totalDestroyed = 0;
    this._registrations = new PoolRegistrations({
      members: () => this._members,
      openMember: () => this._openRegistrar(),
      defer: () => this._scheduleRefill(),
      report: (err) => this._reportError(err)
    });
  }

  /**
   * Emits a pool event from the pool's own paths (an idle timer, an open,
   * close()): each listener runs on its own, and one that throws (or an
   * async one that rejects) is reported on 'error', or as a process warning
   * with no 'error' listener (lib/listeners.js), instead of breaking them.
   * @param {string} event
   * @param {object} arg
   * @private
   */
  _emitSafely(event, arg) {
    if (this.listenerCount(event) > 0) emitEach(this, event, [arg]);
  }

  /**
   * Emits 'error' for a failure nobody waits for, only when listened to;
   * an 'error' listener that throws becomes a process warning. Never throws.
   * @param {Error} err
   * @private
   */
  _reportError(err) {
    if (this.listenerCount('error') > 0) reportError(this, err);
  }

  /**
   * The member of a client this pool holds, or null.
   * @param {IPCClient} client
   * @returns {Member|null}
   * @private
   */
  _find(client) {
    for (const m of this._members) if (m.client === client) return m;
    return null;
  }

  /**
   * Marks a member lent out (`shared` false) or shared with one more lease.
   * @private
   */
  _take(member, shared) {
    clearLongTimeout(member.idleTimer);
    member.idleTimer = null;
    if (shared) member.shared++;
    else member.leased = true;
  }

  /**
   * Queues an acquire() (`shared` false) or lease() (`shared` true) and
   * plans; resolves with the member already taken for the caller.
   * @param {boolean} shared
   * @param {number} timeout ms; Infinity waits for ever.
   * @returns {Promise<Member>}
   * @private
   */
  _wait(shared, timeout) {
    return new Promise((resolve, reject) => {
      const waiter = { shared, deadline: performance.now() + timeout, timeout, resolve, reject, timer: null };
      this._waiters.push(waiter);
      if (timeout !== Infinity) {
        // The plan fails it once due; the timer only wakes the pool up.
        waiter.timer = setLongTimeout(() => this._settle(null, Math.max(performance.now(), waiter.deadline)), Math.max(0, timeout));
      }
      this._settle();
    });
  }

  /**
   * Plans on the pool's state and applies the plan.
   * @param {NotConnectedError|null} [failure] an open that failed, for the waiter it was for.
   * @param {number} [now]
   * @private
   */
  _settle(failure = null, now = performance.now()) {
    if (this._closed) return;
    if (this._settling) {
      // Called back from an event the plan fired ('destroyed', 'error'): plan again once this plan is applied.
      // Never with a failure or a time: those come from timers and connects, not from the plan's own events.
      this._settleAgain = true;
      return;
    }
    this._settling = true;
    try {
      do {
        this._settleAgain = false;
        this._applyPlan(failure, now);
        failure = null;
        now = performance.now();
      } while (this._settleAgain && !this._closed);
    } finally {
      this._settling = false;
    }
  }

  /**
   * One plan, applied.
   * @private
   */
  _applyPlan(failure, now) {
    const plan = planPool(this._members, this._waiters, this._settings, now, {
      opening: this._opening,
      failedOpens: failure === null ? 0 : 1,
      keep: this._registrations.registrar // never closed for idleness
    });
    for (const [member, reason] of plan.close) {
      const why = reason === DEAD ? (member.lostError ?? new NotConnectedError('connection found closed')) : new NotConnectedError('idle timeout');
      this._destroy(member, why);
    }
    if (plan.fail.length > 0 || plan.assign.length > 0) {
      const done = new Set();
      for (const [waiter, reason] of plan.fail) {
        done.add(waiter);
        clearLongTimeout(waiter.timer);
        waiter.reject(
          reason === OPEN_FAILED
            ? failure
            : new RequestTimeoutError(`no pooled connection to ${this.host}:${this.port} within ${waiter.timeout} ms`)
        );
      }
      for (const [member, waiter] of plan.assign) {
        done.add(waiter);
        clearLongTimeout(waiter.timer);
        this._take(member, waiter.shared);
        waiter.resolve(member);
      }
      this._waiters = this._waiters.filter((w) => !done.has(w));
    }
    for (let i = 0; i < plan.open; i++) this._spawnOpen().catch(() => {}); // the failure went to a waiter or to 'error'
    if (plan.unclaimed > 0) this._reportError(failure);
    if (plan.refill > 0) this._refill();
  }

  /**
   * A member is free: the plan hands it on; else it goes idle (and is
   * closed after `idleTimeout` while the pool is above `minConnections`).
   * @param {Member} member
   * @private
   */
  _free(member) {
    member.idleSince = performance.now();
    // A live member nobody waits for: nothing for the plan to decide (its idle timer plans it later).
    if (this._waiters.length > 0 || !member.usable) this._settle();
    this._armIdle(member);
  }

  /**
   * Wakes the pool when an idle member's `idleTimeout` is up.
   * @param {Member} member
   * @private
   */
  _armIdle(member) {
    if (this.idleTimeout === Infinity || member.idleTimer !== null) return;
    if (!this._members.has(member) || member.leased || member.shared > 0) return;
    let left = member.idleSince + this.idleTimeout - performance.now();
    if (left <= 0) left = this.idleTimeout; // kept at minConnections: look again later
    member.idleTimer = setLongTimeout(() => {
      member.idleTimer = null;
      this._settle();
      this._armIdle(member);
    }, Math.ceil(left)); // past setTimeout's 2^31-1 ms too (a plain one would fire every ms)
    member.idleTimer.unref();
  }

  /**
   * Opens one connection and frees it (to a waiter, or idle). The pool's
   * registrations are replayed on it first when no live member carries
   * them (it becomes the registrar). A failure goes to the plan, which
   * rejects the waiter it was for; below `minConnections` a retry is
   * scheduled.
   * @returns {Promise<Member>} rejects with the NotConnectedError.
   * @private
   */
  async _spawnOpen() {
    this._opening++;
    const client = new IPCClient(this.appId, this._clientOptions);
    const member = new Member(client, performance.now());
    this._openingClients.add(client);
    try {
      await client.connect();
      let lostWith;
      client.on('disconnected', (arg) => {
        lostWith = arg instanceof ConnectionLostError && arg.cause instanceof Error ? arg.cause : arg; // what 'error' reports next
        this._onLost(member, lostError(arg));
      });
      // What ended its connection is on 'connection_lost'; anything else (a handler's throw) is the pool's 'error'.
      client.on('error', (err) => err !== lostWith && reportError(this, err));
      client._subs.onWithdrawn((withdrawal) => this._registrations.withdrawn(member, withdrawal));
      if (this._registrations.any) {
        await this._registrations.adopt(member); // before anyone gets it (docs/resilience.md §7)
        if (!member.usable) throw new NotConnectedError('the connection closed while the registrations were replayed');
      }
    } catch (err) {
      this._opening--;
      this._openingClients.delete(client);
      this._retired = foldRetired(this._retired, client.getMetrics()); // its attempt counts, as a lone client's failed connect()
      this._registrations.forget(member);
      if (client.connected) client.disconnect().catch(() => {}); // its replay failed
      const error =
        err instanceof NotConnectedError
          ? err
          : new NotConnectedError(`cannot connect to ${this.host}:${this.port}${err instanceof Error ? `: ${err.message}` : ''}`, { cause: err });
      // Refused the user's token (removed, say): no refill retries it, as an IPCClient does not reconnect then.
      if (err instanceof UnauthorizedError) this._refused = true;
      if (!this._closed) {
        this._scheduleRefill(); // first, so the plan's refill waits for the backoff
        this._settle(error);
      }
      throw error;
    }
    this._opening--;
    this._openingClients.delete(client);
    if (this._closed) {
      this._registrations.forget(member);
      await client.disconnect();
      this._retired = foldRetired(this._retired, client.getMetrics());
      throw new NotConnectedError('the pool is closed');
    }
    member.idleSince = performance.now();
    this._members.add(member);
    this._totalCreated++;
    this._refillAttempt = 0;
    this._refused = false;
    this._emitSafely('created', { client });
    this._free(member);
    return member;
  }

  /**
   * Opens a member for the registrations when none is live (it adopts them).
   * @returns {Promise<Member>}
   * @private
   */
  _openRegistrar() {
    if (this._members.size + this._opening >= this.maxConnections) {
      return Promise.reject(new NotConnectedError(`no live connection to ${this.host}:${this.port} to register on`));
    }
    return this._spawnOpen();
  }

  /**
   * A member's connection dropped: it is dead (its calls fail
   * connection_lost) and the plan closes and replaces it once nobody holds
   * it: now, or at release() or the end of its last lease call. Until then
   * it stays its holder's, in inUse and toward maxConnections, as in
   * ipc_client/pool_core.py: the same options give the same outcome.
   * @param {Member} member
   * @param {Error|null} error
   * @private
   */
  _onLost(member, error) {
    this._registrations.forget(member);
    if (!this._members.has(member)) return; // destroyed by the pool itself, or still opening
    member.dead = true;
    member.lostError = error;
    if (revokedForGood(error)) this._refused = true; // revoked by a reload: as a refused open, no refill retries it (a changed credential: once)
    this._emitSafely('connection_lost', { client: member.client, error });
    this._settle(); // closes it now if nobody holds it
    if (this._registrations.missing) this._refill(); // a new registrar at once, then with backoff
  }

  /**
   * Removes a member and closes its client; its counters are kept.
   * @param {Member} member
   * @param {Error|null} reason
   * @returns {Promise<void>}
   * @private
   */
  _destroy(member, reason) {
    if (!this._members.delete(member)) return Promise.resolve();
    this._registrations.forget(member);
    clearLongTimeout(member.idleTimer);
    member.idleTimer = null;
    this._totalDestroyed++;
    if (typeof member.client.getMetrics === 'function') this._retired = foldRetired(this._retired, member.client.getMetrics());
    const closing = member.client.disconnect().catch(() => {}); // closed whatever its listeners do
    this._emitSafely('destroyed', { client: member.client, reason });
    return closing;
  }

  /**
   * Opens connections up to `minConnections` (once started), and brings
   * back a member carrying the registrations when none does; not after an
   * open refused unauthorized (until a caller's open succeeds).
   * @private
   */
  _refill() {
    if (this._closed || this._refillTimer !== null || this._refused) return;
    let missing = this._started ? this.minConnections - this._members.size - this._opening : 0;
    while (missing-- > 0) this._spawnOpen().catch(() => {});
    if (this._registrations.missing && this._opening === 0) {
      // No open under way would adopt them: a live member, or a new one.
      this._registrations.ensure().then(
        () => {
          this._refillAttempt = 0;
        },
        () => this._scheduleRefill()
      );
    }
  }

  /**
   * Retries _refill() after a backoff delay.
   * @private
   */
  _scheduleRefill() {
    if (this._closed || this._refillTimer !== null || this._refused) return;
    const below = this._started && this._members.size + this._opening < this.minConnections;
    if (!below && !this._registrations.missing) return;
    const delay = backoffDelay(this._refillAttempt++, { initial: this._refillDelay, max: this._refillDelayMax, jitter: 0.5 });
    this._refillTimer = setTimeout(() => {
      this._refillTimer = null;
      this._refill();
    }, delay);
    this._refillTimer.unref();
  }
}

module.exports = { PoolCore, Member };
