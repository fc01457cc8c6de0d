'use strict';

/**
 * Subscriptions and responder registrations (docs/protocol.md §4, §7):
 * the local tables, their subscribe/unsubscribe frames and acks, their
 * restoration on every new connection, and the routing of an inbound
 * publish or served request to its handler.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`,
 * `_state`, `_conn`, `_connectionId`, `_calls` (`conn`, `call()`,
 * `sendInTurn()`), `_admission` (`admit()`, `invoke()`), `_drain`
 * (`check()`), `_reconnector` (`ready()`), `_emitSafely()`, `_emitError()`.
 */

const { SYSTEM_CHANNEL } = require('./constants');
const { buildMessage } = require('./envelope');
const { validatePattern, isPattern, isReserved, patternMatches } = require('./channels');
const { deliverPublish } = require('./deliveries');
const { checkSubscription, checkUnsubscription } = require('./publishing');
const { now } = require('./connection');
const { State } = require('./state');
const { reply } = require('./replies');
const { checkTimeout } = require('./call_options');
const { checkSchemaOption, bindContract } = require('./contracts');
const { unavailable, isUnavailable } = require('./legacy_server');
const { AlreadyServingError, ConnectionLostError, ErrorCode, ForbiddenError, NotConnectedError, RemoteError, RequestTimeoutError } = require('./errors');

/** An unsubscribe/unserve whose connection is lost before the ack resolves: the server dropped it with the connection, and it is not restored. */
const goneAnyway = (err) => { if (!(err instanceof ConnectionLostError)) throw err; };

/** The connection's end or silence: the restore's attempt fails and the next one restores (a pool's replay: the next member's, pool_registrations.js); any other error is the registration's own. */
const endsTheAttempt = (err) => err instanceof ConnectionLostError || err instanceof NotConnectedError || err instanceof RequestTimeoutError;

/** What this client listens to and serves, kept across reconnections. */
class Subscriptions {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    /** @type {Map<string, Set<Function>>} pattern -> handlers */
    this.subscriptions = new Map();
    /** @type {Map<string, Function>} pattern -> handler, in registration order */
    this.responders = new Map();
    /** @type {Map<string, object>} pattern -> the schemas its responder declared (docs/typed-contracts.md) */
    this.schemas = new Map();
    /** @type {Set<{wanted: () => boolean, controller: AbortController}>} subscribe()/serve() calls waiting for a connection */
    this._waiting = new Set();
    /** @type {Set<string>} responders unserve() is withdrawing (answered until the server's ack) */
    this._unserving = new Set();
    /** @type {Set<Function>} told of each registration the server withdrew (iterators, a pool) */
    this._withdrawnListeners = new Set();
  }

  /**
   * Calls `listener({operation, channel, handlers, error})` whenever the
   * server withdraws a registration this client held (withdrawn()):
   * `handlers` are the functions it dropped.
   * @param {Function} listener
   * @returns {() => void} removes it.
   */
  onWithdrawn(listener) {
    this._withdrawnListeners.add(listener);
    return () => this._withdrawnListeners.delete(listener);
  }

  /**
   * IPCClient.subscribe(): the handler is added before the frame is sent,
   * so a publish right after the ack finds it; a refusal removes it again.
   * One unsubscribed while it waits for a connection resolves at once and
   * is never sent. Argument errors throw, the rest rejects (lib/publishing.js).
   * @param {{timeout?: number}} [options]
   * @returns {Promise<void>}
   * @throws {MessageError|TypeError} an invalid pattern, handler or timeout.
   */
  subscribe(channelId, handler, { timeout = this.host.options.requestTimeout } = {}) {
    checkSubscription(channelId, handler);
    return this._subscribe(channelId, handler, now() + checkTimeout(timeout));
  }

  /** subscribe() once its arguments are checked. @private */
  async _subscribe(channelId, handler, deadline) {
    this.host._drain.check(); // none while draining (docs/resilience.md §12)
    let handlers = this.subscriptions.get(channelId);
    if (handlers === undefined) this.subscriptions.set(channelId, (handlers = new Set()));
    const known = handlers.has(handler);
    handlers.add(handler);
    try {
      const wanted = () => this.subscriptions.get(channelId) === handlers && handlers.has(handler);
      if (!(await this._untilConnected(deadline, wanted)) || !wanted()) return; // again after the await: an unsubscribe()/unserve() may have gone first
      await this._register('subscribe', channelId, false, deadline);
    } catch (err) {
      if (!known) handlers.delete(handler);
      if (handlers.size === 0 && this.subscriptions.get(channelId) === handlers) this.subscriptions.delete(channelId);
      if (!this.subscriptions.has(channelId)) this._withdraw(channelId, false, err);
      throw err;
    }
  }

  /**
   * IPCClient.unsubscribe(): the server is told once no handler is left.
   * A name nothing is subscribed under, an invalid one included, resolves
   * (as in Python): it runs in cleanup code ('close' listeners), where a
   * throw is uncaught. Wrong argument types throw (TypeError).
   * @returns {Promise<void>}
   */
  unsubscribe(channelId, handler) {
    checkUnsubscription(channelId, handler);
    return this._unsubscribe(channelId, handler);
  }

  /** unsubscribe() once its arguments are checked. @private */
  async _unsubscribe(channelId, handler) {
    const handlers = this.subscriptions.get(channelId);
    if (handlers === undefined) return;
    if (handler !== undefined) {
      handlers.delete(handler);
      if (handlers.size > 0) return;
    }
    this.subscriptions.delete(channelId);
    this._withdrawWaiting();
    if (this._mayHold()) await this._register('unsubscribe', channelId, false, now() + this.host.options.requestTimeout).catch(goneAnyway);
  }

  /**
   * IPCClient.serve(): one handler per channel or pattern; `system` may be
   * served, no other reserved channel. A declared `schema` is sent with the
   * registration and checked on every request (lib/contracts.js). One
   * unserved while it waits for a connection resolves at once and is never sent.
   * @param {string} channelId
   * @param {Function} handler
   * @param {{timeout?: number, schema?: {request?: object|boolean, response?: object|boolean}}} [options]
   * @returns {Promise<void>}
   */
  async serve(channelId, handler, { timeout = this.host.options.requestTimeout, schema } = {}) {
    validatePattern(channelId);
    this.host._drain.check();
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    const declared = checkSchemaOption(schema);
    if (channelId !== SYSTEM_CHANNEL && isReserved(channelId)) {
      throw new ForbiddenError(`channel ${JSON.stringify(channelId)} is reserved for the server`);
    }
    if (this.responders.has(channelId)) throw new AlreadyServingError(channelId);
    const deadline = now() + checkTimeout(timeout);
    handler = bindContract(handler, declared);
    this.responders.set(channelId, handler);
    if (declared !== null) this.schemas.set(channelId, declared);
    try {
      const wanted = () => this.responders.get(channelId) === handler && !this._unserving.has(channelId);
      if (!(await this._untilConnected(deadline, wanted)) || !wanted()) return; // again after the await: an unsubscribe()/unserve() may have gone first
      await this._register('subscribe', channelId, true, deadline);
    } catch (err) {
      if (this.responders.get(channelId) === handler) this._forgetResponder(channelId);
      if (!this.responders.has(channelId)) this._withdraw(channelId, true, err);
      throw err;
    }
  }

  /**
   * Withdraws a subscribe()/serve() that failed (timed out) after its frame
   * went out, or once restore() had sent it: the server may hold it yet (a
   * refusal holds nothing). Called only while the client holds no
   * registration of the channel, and written at once (the check and the
   * write are one step): the server applies a connection's frames in order,
   * so this lands after what it withdraws and before any later subscribe,
   * which it never undoes. Its ack is awaited by nobody.
   * @param {string} channelId
   * @param {boolean} serve
   * @param {Error} err why it failed.
   * @private
   */
  _withdraw(channelId, serve, err) {
    if (err instanceof RemoteError || !this._mayHold() || this.host._calls.conn === null || this.host._calls.conn.legacy) return;
    this._register('unsubscribe', channelId, serve, now() + this.host.options.requestTimeout).catch(() => {});
  }

  /** Drops a responder and the schemas it declared. @private */
  _forgetResponder(channelId) {
    this.responders.delete(channelId);
    this.schemas.delete(channelId);
  }

  /**
   * IPCClient.unserve(): keeps answering until the server acknowledged, as
   * requests it forwarded before that arrive first, and run here instead
   * of failing with no_responders while another responder could take them.
   * @param {string} channelId
   * @returns {Promise<void>}
   */
  async unserve(channelId) {
    const handler = this.responders.get(channelId);
    if (handler === undefined) return;
    this._unserving.add(channelId);
    this._withdrawWaiting(); // a serve() still waiting for the connection ends now, unsent
    try {
      if (this._mayHold()) await this._register('unsubscribe', channelId, true, now() + this.host.options.requestTimeout).catch(goneAnyway);
    } finally {
      this._unserving.delete(channelId);
      if (this.responders.get(channelId) === handler) this._forgetResponder(channelId);
    }
  }

  /**
   * Whether the server may hold this client's registrations: connected, or
   * a (re)connection restoring them (restore() sent them all already, so
   * an unsubscribe sent now arrives after them).
   * @returns {boolean}
   * @private
   */
  _mayHold() {
    return this.host._state === State.CONNECTED || this.host._conn !== null;
  }

  /**
   * Waits for the connection a subscribe()/serve() needs, unless the
   * registration is withdrawn meanwhile (unsubscribe()/unserve()).
   * @param {number} deadline
   * @param {() => boolean} wanted whether the registration is still in the tables.
   * @returns {Promise<boolean>} false: withdrawn, nothing to send.
   * @private
   */
  async _untilConnected(deadline, wanted) {
    if (this.host._state !== State.CONNECTED) {
      const waiter = { wanted, controller: new AbortController() };
      this._waiting.add(waiter);
      try {
        await this.host._reconnector.ready(deadline, waiter.controller.signal);
      } catch (err) {
        const { aborted, reason } = waiter.controller.signal;
        if (aborted && isUnavailable(reason)) throw reason; // restore() found a 1.1.x server (lib/legacy_server.js)
        if (aborted) return false;
        throw err;
      } finally {
        this._waiting.delete(waiter);
      }
    }
    return wanted();
  }

  /**
   * Ends the waits of the registrations no longer in the tables.
   * @param {Error} [reason] what they throw: an unavailable() refusal; else they end quietly.
   * @private
   */
  _withdrawWaiting(reason) {
    for (const waiter of this._waiting) if (!waiter.wanted()) waiter.controller.abort(reason);
  }

  /**
   * Re-sends every subscription and responder registration and waits for
   * the acks. A registration refused, by the server or here (too large for
   * the new server's frame limit), is reported and dropped, so it cannot
   * fail every attempt; a lost or silent connection fails the attempt.
   * @param {Connection} conn
   * @returns {Promise<void>}
   */
  async restore(conn) {
    const deadline = now() + this.host.options.requestTimeout;
    const work = [];
    for (const pattern of this.subscriptions.keys()) work.push([pattern, false]);
    for (const pattern of this.responders.keys()) work.push([pattern, true]);
    const results = await Promise.allSettled(work.map(([p, serve]) => this._register('subscribe', p, serve, deadline)));
    for (let i = 0; i < results.length; i++) {
      const { status, reason } = results[i];
      if (status === 'fulfilled') continue;
      if (endsTheAttempt(reason)) {
        conn.destroy(reason);
        throw reason;
      }
      const [pattern, serve] = work[i];
      if (serve) this._forgetResponder(pattern);
      else this.subscriptions.delete(pattern);
      if (isUnavailable(reason)) this._withdrawWaiting(reason); // a serve()/subscribe() waiting for this connection throws it too
      this.host._emitError(reason);
    }
  }

  /**
   * An error frame that withdraws a registration (docs/protocol.md §3:
   * `forbidden` with `details.revoked`, the user's rights shrank on the
   * server): drops it here too, so it is never restored, and tells the
   * onWithdrawn() listeners (an iterator on it ends, a pool drops it).
   * @param {Error} err the error the frame carried.
   */
  withdrawn(err) {
    const details = err && err.details;
    if (!err || err.code !== ErrorCode.FORBIDDEN || details === null || typeof details !== 'object' || details.revoked !== true) return;
    const { operation, channel } = details;
    let handlers = [];
    if (operation === 'subscribe') {
      handlers = [...(this.subscriptions.get(channel) ?? [])];
      this.subscriptions.delete(channel);
    } else if (operation === 'serve') {
      const responder = this.responders.get(channel);
      if (responder !== undefined) handlers = [responder];
      this._forgetResponder(channel);
    }
    if (handlers.length === 0) return;
    const withdrawal = { operation, channel, handlers, error: err };
    for (const listener of [...this._withdrawnListeners]) {
      try {
        listener(withdrawal);
      } catch (listenerErr) {
        this.host._emitError(listenerErr);
      }
    }
  }

  /**
   * Delivers a publish to every local handler whose pattern matches, each
   * handler once even when several of its patterns match (§5.3).
   * @param {Connection} conn the connection it came on.
   * @param {object} msg
   */
  onPublish(conn, msg) {
    deliverPublish(this.subscriptions, this.host._admission, conn, msg);
    this.host._emitSafely('message', msg);
  }

  /**
   * Runs a responder for a forwarded request (answer = true) or a
   * notification (answer = false).
   * @param {Connection} conn
   * @param {object} msg
   * @param {boolean} answer
   */
  onServed(conn, msg, answer) {
    const handler = this._findResponder(msg.channel_id);
    if (handler === undefined) {
      if (msg.window !== undefined) this.host._producers.forget(msg);
      if (answer) reply(conn, this.host.appId, msg, null, { code: ErrorCode.NO_RESPONDERS, message: `no responder for ${msg.channel_id}` });
      return;
    }
    this.host._admission.invoke(handler, msg, conn, answer);
  }

  /**
   * A `system` request the server routed to this client because it serves
   * `system` (§8; pings never get here, the protocol answers them): it runs
   * the `system` responder like any served request; without one it is
   * answered `no_responders`, as the server answers when nobody serves `system`.
   * @param {Connection} conn
   * @param {object} msg
   */
  onSystemRequest(conn, msg) {
    const action = msg.payload && msg.payload.action;
    if (this.responders.has(SYSTEM_CHANNEL)) {
      this.host._admission.admit(conn, msg);
    } else {
      reply(conn, this.host.appId, msg, null, { code: ErrorCode.NO_RESPONDERS, message: `no responder for system action ${JSON.stringify(action)}` });
    }
  }

  /**
   * Finds the responder for a channel: exact registration first, then
   * patterns in registration order, as the server matches (§7.2).
   * @param {string} channel
   * @returns {Function|undefined}
   * @private
   */
  _findResponder(channel) {
    const exact = this.responders.get(channel);
    if (exact !== undefined) return exact;
    for (const [pattern, handler] of this.responders) {
      if (isPattern(pattern) && patternMatches(pattern, channel)) return handler;
    }
    return undefined;
  }

  /**
   * Sends a subscribe/unsubscribe (for a responder: with `{"serve": true}`,
   * §7.1) and waits for the ack; a version-1 server sends none (§10).
   * @param {'subscribe'|'unsubscribe'} type
   * @param {string} pattern
   * @param {boolean} serve
   * @param {number} deadline
   * @returns {Promise<void>}
   * @private
   */
  async _register(type, pattern, serve, deadline) {
    const calls = this.host._calls;
    if (calls.conn === null) throw new ConnectionLostError('the connection is closed');
    const legacy = calls.conn.legacy;
    const refused = legacy && type === 'subscribe' ? unavailable(pattern, serve) : null;
    if (refused !== null) throw refused; // what a 1.1.x server lacks, never sent (lib/legacy_server.js)
    const payload = serve ? { serve: true } : legacy ? { connection_id: this.host._connectionId } : null;
    const schema = serve && type === 'subscribe' && !legacy ? this.schemas.get(pattern) : undefined;
    if (schema !== undefined) payload.schema = schema; // the declared contract (§7.1)
    const msg = buildMessage(type, this.host.appId, pattern, payload);
    if (legacy) await calls.sendInTurn(msg, deadline);
    else await calls.call(msg, deadline);
  }
}

module.exports = { Subscriptions, endsTheAttempt };
