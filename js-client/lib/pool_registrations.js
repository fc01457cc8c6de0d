'use strict';

/**
 * Subscriptions and responders made through a pool (docs/resilience.md §7).
 *
 * They live on one member, the *registrar*; when it dies they are replayed
 * on its replacement before that replacement is handed out, so a pool's
 * subscriber hears each message once, whatever happens to its connections.
 * Mirrors ipc_client/pool_registrations.py.
 */

const { SYSTEM_CHANNEL } = require('./constants');
const { validatePattern, isReserved } = require('./channels');
const { checkSchemaOption } = require('./contracts');
const { AlreadyServingError, ErrorCode, ForbiddenError } = require('./errors');
const { endsTheAttempt } = require('./subscriptions');

/**
 * The pool's registrations and the member carrying them.
 */
class PoolRegistrations {
  /**
   * @param {object} pool
   * @param {() => Iterable<object>} pool.members the pool's members now (each with `client` and `usable`).
   * @param {() => Promise<object>} pool.openMember opens a new member for the
   *   registrations (it adopts them while opening) and lists it; rejects
   *   not_connected when the pool is full or the server unreachable.
   * @param {() => void} pool.defer called when a registration could not be
   *   applied now: the pool brings a registrar back in the background.
   * @param {(err: Error) => void} pool.report a registration a replay
   *   could not make, dropped (nobody waits for it).
   */
  constructor({ members, openMember, defer, report }) {
    this._members = members;
    this._openMember = openMember;
    this._defer = defer;
    this._report = report;
    /** @type {Set<{serve: boolean, channel: string, what: unknown, error: Error|null}>} _apply() calls replaying their own */
    this._pending = new Set();
    /** @type {Map<string, Set<Function>>} channel or pattern -> handlers */
    this.subscriptions = new Map();
    /** @type {Map<string, {handler: Function, schema: object|undefined}>} channel or pattern -> responder */
    this.services = new Map();
    /** The member carrying them, or null. */
    this.registrar = null;
    this._lock = Promise.resolve();
  }

  /** Whether anything is subscribed or served. */
  get any() {
    return this.subscriptions.size > 0 || this.services.size > 0;
  }

  /** Registrations exist but no member carries them. */
  get missing() {
    return this.any && this.registrar === null;
  }

  /** Whether the registrar is there and connected. */
  get _live() {
    return this.registrar !== null && this.registrar.usable;
  }

  /**
   * `member` is gone: a later registration needs another registrar.
   * @param {object} member
   */
  forget(member) {
    if (this.registrar === member) this.registrar = null;
  }

  /**
   * `member`'s client dropped a registration the server withdrew
   * (`forbidden`, details.revoked: the user's rights shrank): the pool drops
   * it too, so no replacement ever replays it (docs/security.md §3.4).
   * @param {object} member
   * @param {{operation: string, channel: string}} withdrawal
   */
  withdrawn(member, { operation, channel }) {
    if (this.registrar !== member) return;
    if (operation === 'subscribe') this.subscriptions.delete(channel);
    else if (operation === 'serve') this.services.delete(channel);
  }

  /**
   * Makes `member` (being opened) the registrar unless there is a live one.
   * @param {object} member
   * @returns {Promise<void>}
   */
  adopt(member) {
    return this._locked(async () => {
      if (this._live) return;
      await this._registerAll(member.client);
      this.registrar = member;
    });
  }

  /**
   * The registrar, a live member made one, or a new member.
   * @returns {Promise<object>}
   */
  async ensure() {
    const member = await this._locked(async () => {
      if (this._live) return this.registrar;
      for (const candidate of this._members()) {
        if (!candidate.usable) continue;
        await this._registerAll(candidate.client);
        this.registrar = candidate;
        return candidate;
      }
      return null;
    });
    return member ?? this._openMember(); // adopts the registrar role itself
  }

  /**
   * Runs `fn` once the registrations made before it are done (one at a time).
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   * @private
   */
  _locked(fn) {
    const run = this._lock.then(fn);
    this._lock = run.catch(() => {});
    return run;
  }

  /**
   * Replays every registration on `client`, looping until it holds exactly
   * the tables: one made while this runs is not lost to the race, and one
   * dropped meanwhile (unsubscribe/unserve found no registrar to tell) is
   * withdrawn from it. One refused, by the server (`forbidden`,
   * `limit_exceeded`) or here (`too_large`: over the new server's frame
   * limit), is dropped and the others go on: given to the _apply() that
   * waits for it, else reported. A lost or silent connection fails the replay.
   * @param {IPCClient} client
   * @returns {Promise<void>}
   * @private
   */
  async _registerAll(client) {
    const done = []; // [serve, channel, handler or responder entry]
    const has = (serve, channel, what) => done.some(([s, c, w]) => s === serve && c === channel && w === what);
    for (;;) {
      const subs = [];
      for (const [channel, handlers] of this.subscriptions) {
        for (const handler of handlers) if (!has(false, channel, handler)) subs.push([channel, handler]);
      }
      const services = [...this.services].filter(([channel, entry]) => !has(true, channel, entry));
      const stale = done.filter(([serve, channel, what]) => !this._wanted(serve, channel, what));
      if (subs.length === 0 && services.length === 0 && stale.length === 0) return;
      for (const item of stale) {
        done.splice(done.indexOf(item), 1);
        const [serve, channel, what] = item;
        await (serve ? client.unserve(channel) : client.unsubscribe(channel, what));
      }
      for (const [channel, handler] of subs) {
        if (await this._replayed(false, channel, handler, () => client.subscribe(channel, handler))) done.push([false, channel, handler]);
      }
      await Promise.all(
        services.map(async ([channel, entry]) => {
          const serve = () => client.serve(channel, entry.handler, { schema: entry.schema });
          if (await this._replayed(true, channel, entry, serve)) done.push([true, channel, entry]);
        })
      );
    }
  }

  /**
   * Replays one registration: false when it was refused, by the server or
   * here (dropped from the tables); the connection's end or silence
   * (connection_lost, not_connected, timeout) fails the replay, as in a
   * client's own restore (subscriptions.js).
   * @private
   */
  async _replayed(serve, channel, what, register) {
    try {
      await register();
      return true;
    } catch (err) {
      if (endsTheAttempt(err)) throw err; // the connection's fault: the next member replays it
      if (serve) {
        if (this.services.get(channel) === what) this.services.delete(channel);
      } else {
        this._dropSubscription(channel, what);
      }
      const own = [...this._pending].find((p) => p.serve === serve && p.channel === channel && p.what === what);
      if (own !== undefined) own.error = err;
      else this._report(err);
      return false;
    }
  }

  /**
   * Whether a registration replayed on a client is still in the tables.
   * @private
   */
  _wanted(serve, channel, what) {
    if (serve) return this.services.get(channel) === what;
    const handlers = this.subscriptions.get(channel);
    return handlers !== undefined && handlers.has(what);
  }

  /**
   * ConnectionPool.subscribe().
   * @param {string} channel
   * @param {Function} handler
   * @param {number} timeout ms, checked by the caller.
   * @returns {Promise<boolean>}
   */
  async subscribe(channel, handler, timeout) {
    validatePattern(channel);
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    let handlers = this.subscriptions.get(channel);
    if (handlers === undefined) this.subscriptions.set(channel, (handlers = new Set()));
    const known = handlers.has(handler);
    handlers.add(handler);
    const undo = () => {
      if (!known) this._dropSubscription(channel, handler);
    };
    return this._apply((client) => client.subscribe(channel, handler, { timeout }), undo, { serve: false, channel, what: handler });
  }

  /**
   * ConnectionPool.serve().
   * @param {string} channel
   * @param {Function} handler
   * @param {number} timeout ms, checked by the caller.
   * @param {object} [schema]
   * @returns {Promise<boolean>}
   */
  async serve(channel, handler, timeout, schema) {
    validatePattern(channel);
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    checkSchemaOption(schema);
    if (channel !== SYSTEM_CHANNEL && isReserved(channel)) {
      throw new ForbiddenError(`channel ${JSON.stringify(channel)} is reserved for the server`);
    }
    if (this.services.has(channel)) throw new AlreadyServingError(channel);
    const entry = { handler, schema };
    this.services.set(channel, entry);
    const undo = () => {
      if (this.services.get(channel) === entry) this.services.delete(channel);
    };
    return this._apply((client) => client.serve(channel, handler, { timeout, schema }), undo, { serve: true, channel, what: entry });
  }

  /**
   * Applies a registration on the registrar (or a new one, which replays
   * them all): true when done, false when kept for later. One that times
   * out on a live registrar is withdrawn by its client (Node's client
   * withdraws a subscribe and a serve alike), so it is undone here and
   * thrown, as the client's own. One the replay finds refused (by the
   * server or here) is dropped and thrown too, whether a member was live or not.
   * @param {(client: IPCClient) => Promise<unknown>} action
   * @param {() => void} undo
   * @param {{serve: boolean, channel: string, what: unknown}} key the registration, as the tables hold it.
   * @returns {Promise<boolean>}
   * @private
   */
  async _apply(action, undo, key) {
    const registrar = this.registrar;
    const live = this._live;
    const pending = { ...key, error: null };
    this._pending.add(pending);
    try {
      if (live) await action(registrar.client);
      else await this.ensure(); // replays everything, this one included
      if (pending.error !== null) throw pending.error; // refused by the replay, dropped already
      return true;
    } catch (err) {
      if (err === pending.error) throw err;
      const code = err && err.code;
      if (code === ErrorCode.TIMEOUT && live) {
        undo(); // the registrar holds none of it: nothing would apply it later
        throw err;
      }
      if (code === ErrorCode.TIMEOUT || code === ErrorCode.NOT_CONNECTED || code === ErrorCode.CONNECTION_LOST) {
        this._defer(); // no registrar, or it died: its replacement replays it
        return false;
      }
      undo();
      throw err;
    } finally {
      this._pending.delete(pending);
    }
  }

  /** @private */
  _dropSubscription(channel, handler) {
    const handlers = this.subscriptions.get(channel);
    if (handlers === undefined) return;
    handlers.delete(handler);
    if (handlers.size === 0) this.subscriptions.delete(channel);
  }

  /**
   * ConnectionPool.unsubscribe(): one handler, or every one.
   * @param {string} channel
   * @param {Function} [handler]
   * @returns {Promise<void>}
   */
  async unsubscribe(channel, handler) {
    if (handler === undefined) this.subscriptions.delete(channel);
    else this._dropSubscription(channel, handler);
    if (this._live) await this.registrar.client.unsubscribe(channel, handler);
  }

  /**
   * ConnectionPool.unserve().
   * @param {string} channel
   * @returns {Promise<void>}
   */
  async unserve(channel) {
    this.services.delete(channel);
    if (this._live) await this.registrar.client.unserve(channel);
  }
}

module.exports = { PoolRegistrations };
