'use strict';

/**
 * The calls a ConnectionPool makes itself (docs/resilience.md §7), as the
 * Python pool makes them: sendRequest/request/publish/notify on a member
 * shared with other calls (a client multiplexes, as lease() shares it), and
 * subscribe/serve (with unsubscribe/unserve) on one member, the registrar,
 * replayed on its replacement (pool_registrations.js). ConnectionPool
 * (pool.js) extends it. Mirrors the calls of ipc_client/pool.py.
 */

const { checkTimeout, namingTimeout } = require('./call_options');
const { requestKey } = require('./coalescing');
const { readOnce } = require('./json_profile');
const { checkChannelOf, checkSubscription, checkUnsubscription } = require('./publishing');
const { NotConnectedError, RequestTimeoutError } = require('./errors');
const { PoolCore } = require('./pool_core');
const { pickShared } = require('./pool_plan');
const { foldRetired } = require('./pool_metrics');

/**
 * Shared use of members, and the calls made on them.
 */
class PoolCalls extends PoolCore {
  /**
   * Sends a request on a member shared with other calls (see lease()): the
   * one with the fewest calls in flight, or, with `coalesce: true`, the one
   * where an identical call is in flight, which it joins (§11).
   * @param {string} channelId a concrete channel.
   * @param {unknown} [payload]
   * @param {number|object} [timeout] ms, the whole call's, the wait for a
   *   member (at most `acquireTimeout`) included; default the members'
   *   `requestTimeout`. May also be the options object, as on IPCClient.
   * @param {object} [options] IPCClient.sendRequest()'s (`headers`,
   *   `idempotencyKey`, `coalesce`, `cacheTtl`, `signal`, `priority`...).
   * @returns {Promise<object>} the response message.
   * @throws {TypeError} `timeout` is not a positive number.
   * @throws {RequestTimeoutError} no member in time, or no answer in time.
   * @throws {NotConnectedError} the pool is closed, or a connection could not be opened.
   */
  sendRequest(channelId, payload = null, timeout, options = {}) {
    if (timeout !== null && typeof timeout === 'object') {
      options = timeout; // the options object in third place, as IPCClient.sendRequest() takes it
      timeout = options.timeout;
    }
    options = options ?? {};
    payload = readOnce(payload); // an iterator, read once: the key and the member's call both read it (§16.3)
    const join = options.coalesce === true ? requestKey(channelId, payload) : null;
    return this._onMember(channelId, timeout, (client, left, total) => client.sendRequest(channelId, payload, left, namingTimeout(options, total)), join);
  }

  /**
   * sendRequest() resolving the response's payload only: same arguments, same errors.
   * @returns {Promise<unknown>}
   */
  async request(channelId, payload = null, timeout, options = {}) {
    return (await this.sendRequest(channelId, payload, timeout, options)).payload;
  }

  /**
   * Publishes on a shared member.
   * @param {string} channelId
   * @param {unknown} data
   * @param {object} [options] IPCClient.publish()'s; `timeout` covers the wait for a member.
   * @returns {Promise<{delivered: number|null}|undefined>}
   */
  publish(channelId, data, options = {}) {
    checkChannelOf('publish', channelId); // argument errors throw at the call, as IPCClient's (lib/publishing.js)
    const { timeout, ...rest } = options ?? {};
    return this._onMember(channelId, timeout, (client, left) => client.publish(channelId, data, { ...rest, timeout: left }));
  }

  /**
   * Sends a one-way request on a shared member.
   * @param {string} channelId
   * @param {unknown} data
   * @param {object} [options] IPCClient.notify()'s; `timeout` covers the wait for a member.
   * @returns {Promise<void>}
   */
  notify(channelId, data, options = {}) {
    checkChannelOf('notify', channelId);
    const { timeout, ...rest } = options ?? {};
    return this._onMember(channelId, timeout, (client, left) => client.notify(channelId, data, { ...rest, timeout: left }));
  }

  /**
   * Subscribes on one member (the registrar), replayed on its replacement
   * before that one is handed out: each publish reaches the handler once.
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object) => unknown} handler
   * @param {{timeout?: number}} [options] ms, default `requestTimeout`.
   * @returns {Promise<boolean>} true when active now; false when no member
   *   could be reached (kept, and applied once one connects).
   * @throws {RequestTimeoutError} the registrar did not ack in time (nothing is kept).
   */
  subscribe(channelId, handler, { timeout } = {}) {
    checkSubscription(channelId, handler); // argument errors throw at the call, as IPCClient's
    const ms = checkTimeout(timeout ?? this._requestTimeout);
    if (this._closed) return Promise.reject(new NotConnectedError('the pool is closed'));
    return this._registrations.subscribe(channelId, handler, ms);
  }

  /**
   * Answers requests on `channelId` from the registrar; as subscribe().
   * @param {string} channelId a channel or pattern.
   * @param {(msg: object, ctx: object) => unknown} handler
   * @param {{timeout?: number, schema?: {request?: object, response?: object}}} [options]
   * @returns {Promise<boolean>}
   * @throws {AlreadyServingError} the pool already serves `channelId` (unserve() it first).
   */
  async serve(channelId, handler, { timeout, schema } = {}) {
    if (this._closed) throw new NotConnectedError('the pool is closed');
    return this._registrations.serve(channelId, handler, checkTimeout(timeout ?? this._requestTimeout), schema);
  }

  /**
   * Removes one handler of a subscription, or every one.
   * @param {string} channelId
   * @param {Function} [handler]
   * @returns {Promise<void>}
   */
  unsubscribe(channelId, handler) {
    checkUnsubscription(channelId, handler); // at the call, as IPCClient's
    return this._registrations.unsubscribe(channelId, handler);
  }

  /**
   * Stops answering `channelId`.
   * @param {string} channelId
   * @returns {Promise<void>}
   */
  unserve(channelId) {
    return this._registrations.unserve(channelId);
  }

  /**
   * Forgets every cached answer (`cacheTtl`) of every member: each keeps
   * its own cache (docs/resilience.md §11).
   */
  clearCache() {
    for (const { client } of this._members) client.clearCache();
  }

  // ---------------------------------------------------------------- internals

  /**
   * Runs `call` on a shared member within the call's deadline, with what
   * is left of it. Started at once when a member is free to share, so a
   * coalesced call is in flight on it before the next one looks. A deadline
   * spent waiting for a member fails the call before it is sent. Such a
   * failure (no member in time, none could be opened, the pool closed)
   * counts in the pool's `messagesFailed`: no member saw the call.
   * @template T
   * @param {string} channelId
   * @param {unknown} timeout
   * @param {(client: IPCClient, left: number, total: number) => Promise<T>} call
   * @param {string|null} [join] the request key of a coalesced call.
   * @returns {Promise<T>}
   * @private
   */
  _onMember(channelId, timeout, call, join = null) {
    let total;
    try {
      total = checkTimeout(timeout ?? this._requestTimeout);
    } catch (err) {
      return Promise.reject(err);
    }
    const unsent = (err) => {
      this._countUnsent();
      throw err;
    };
    if (this._closed) {
      this._countUnsent();
      return Promise.reject(new NotConnectedError('the pool is closed'));
    }
    const deadline = performance.now() + total;
    const run = (member) => {
      let result;
      try {
        const left = deadline - performance.now();
        if (left <= 0) unsent(new RequestTimeoutError(`call on ${JSON.stringify(channelId)} timed out waiting for a connection, before it was sent`));
        result = Promise.resolve(call(member.client, left, total)); // its budget what is left, its text the call's own timeout
      } catch (err) {
        result = Promise.reject(err);
      }
      return result.finally(() => this._unshare(member));
    };
    const member = this._shareNow(join);
    if (member !== null) return run(member);
    return this._wait(true, Math.min(this.acquireTimeout, total)).then(run, unsent);
  }

  /**
   * A call failed before it reached a member: failed in getMetrics(), as a
   * lone client counts a call it could not send. The load-balanced client
   * counts here an attempt that got no connection to this pool's server.
   * @private
   */
  _countUnsent() {
    this._retired = foldRetired(this._retired, { messagesFailed: 1 });
  }

  /**
   * A member for one more lease() call, counted as shared: the busiest
   * below `leaseThreshold` keeps calls on few connections, so extra members
   * only open (and then age out) under real load.
   * @param {number} timeout
   * @returns {Promise<object>}
   * @private
   */
  _share(timeout) {
    if (this._closed) return Promise.reject(new NotConnectedError('the pool is closed'));
    const member = this._shareNow(null);
    return member !== null ? Promise.resolve(member) : this._wait(true, timeout);
  }

  /**
   * A member to share now, taken, or null: the one carrying the coalesced
   * call `join` is in flight on, else one pickShared() gives while nobody
   * waits (no plan needed).
   * @param {string|null} join
   * @returns {object|null}
   * @private
   */
  _shareNow(join) {
    if (this._settling) return null;
    let member = join === null ? null : this._carrying(join);
    if (member === null && this._waiters.length === 0) [member] = pickShared(this._members, this.leaseThreshold);
    if (member !== null) this._take(member, true);
    return member;
  }

  /**
   * A usable member, not held by acquire(), with a coalesced call of `key` in flight.
   * @param {string} key
   * @returns {object|null}
   * @private
   */
  _carrying(key) {
    for (const m of this._members) {
      if (m.usable && !m.leased && m.client._shared.carries(key)) return m;
    }
    return null;
  }

  /**
   * One lease() call on a member ended; the last one frees the member.
   * @param {object} member
   * @private
   */
  _unshare(member) {
    member.shared--;
    if (member.shared === 0 && !member.leased && this._members.has(member)) this._free(member);
  }
}

module.exports = { PoolCalls };
