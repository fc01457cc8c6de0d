'use strict';

/**
 * The subscriptions and responders of a LoadBalancedClient
 * (docs/resilience.md §8): kept in one list, applied through one
 * reconnecting IPCClient per server (a pool member per registration would
 * receive each publish several times), and applied again on a server that
 * missed them while it was unreachable. Responders go on every server;
 * where a subscription goes (every standalone server, one node of a
 * cluster) is balanced_subscriptions.js's decision.
 */

const { IPCClient } = require('./client');
const { NotConnectedError, RemoteError, RequestTimeoutError } = require('./errors');
const { BalancedSubscriptions } = require('./balanced_subscriptions');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');

/**
 * The registrations and the per-server clients that carry them.
 */
class BalancedRegistrations {
  /**
   * @param {object} owner
   * @param {string} owner.appId
   * @param {object} owner.clientOptions options of each registration client.
   * @param {ServerState[]} owner.servers
   * @param {number} owner.requestTimeout for the registrations a health check re-applies.
   * @param {(err: Error) => void} owner.onRefused a server refused a registration.
   * @param {(event: string, arg: object) => void} owner.emit 'subscription_moved'.
   */
  constructor({ appId, clientOptions, servers, requestTimeout, onRefused, emit }) {
    this.appId = appId;
    this._clientOptions = clientOptions;
    this._servers = servers;
    this._requestTimeout = requestTimeout;
    this._onRefused = onRefused;
    this._registrations = []; // {kind, channel, handler, applied, refused, pending: Set<ServerState>, removed}
    this._controls = new Map(); // server -> IPCClient carrying the registrations
    this._subs = new BalancedSubscriptions({
      servers,
      control: (server) => this._control(server),
      apply: (server, reg, timeout) => this._apply(server, reg, timeout),
      connect: (server, client, timeout) => this._connectControl(server, client, timeout),
      registrations: () => this._registrations.filter((r) => r.kind === 'subscribe' && !r.failed),
      requestTimeout,
      emit
    });
  }

  /** A server came, went or is leaving: a subscription may move (balanced_subscriptions.js). */
  changed() {
    this._subs.changed();
  }

  /**
   * Whether a channel is served already.
   * @param {string} channel
   * @returns {boolean}
   */
  isServed(channel) {
    return this._registrations.some((r) => r.kind === 'serve' && r.channel === channel);
  }

  /**
   * Removes a subscription (one handler, or all) or a responder on every server.
   * @param {'subscribe'|'serve'} kind
   * @param {string} channel
   * @param {Function} [handler] only this subscription handler.
   * @returns {Promise<void>}
   */
  async remove(kind, channel, handler) {
    const gone = this._registrations.filter((r) => r.kind === kind && r.channel === channel && (handler === undefined || r.handler === handler));
    this._registrations = this._registrations.filter((r) => !gone.includes(r));
    for (const reg of gone) reg.removed = true; // an _apply() still connecting must not register it afterwards
    const clients = [...this._controls.values()];
    if (kind === 'serve' || handler === undefined) {
      await Promise.allSettled(clients.map((c) => (kind === 'serve' ? c.unserve(channel) : c.unsubscribe(channel))));
    } else {
      await Promise.allSettled(gone.flatMap((r) => clients.map((c) => c.unsubscribe(channel, r.deliver))));
    }
  }

  /**
   * Disconnects every registration client.
   * @returns {Promise<void>}
   */
  async close() {
    this._subs.close();
    const controls = [...this._controls.values()];
    this._controls.clear();
    await Promise.all(controls.map((c) => c.disconnect().catch(() => {})));
  }

  /**
   * Records a registration and applies it on every server; resolves once
   * one server took it, else nothing is kept. One removed meanwhile
   * resolves: nothing is left to register.
   * @param {'subscribe'|'serve'} kind
   * @param {string} channel
   * @param {Function} handler
   * @param {number} timeout a checked duration, ms.
   * @param {object} [schema] a responder's declared JSON Schemas (docs/typed-contracts.md).
   * @returns {Promise<void>}
   */
  async add(kind, channel, handler, timeout, schema) {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    const reg = { kind, channel, handler, schema, applied: new Set(), refused: new Set(), pending: new Set(), removed: false };
    this._registrations.push(reg);
    if (kind === 'subscribe') {
      reg.deliver = this._subs.deliverer(reg, handler); // the function the servers' clients hold
      try {
        await this._subs.place(reg, timeout);
      } catch (err) {
        this._registrations = this._registrations.filter((r) => r !== reg);
        throw err;
      }
      return;
    }
    const results = await Promise.allSettled(this._servers.map((server) => this._apply(server, reg, timeout)));
    if (reg.applied.size > 0 || reg.removed) return;
    this._registrations = this._registrations.filter((r) => r !== reg);
    const failures = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    throw failures.find((e) => e instanceof RemoteError) ?? failures[0] ?? new NotConnectedError('no server took the registration');
  }

  /**
   * Applies one registration on one server's registration client; not one
   * removed while the client was connecting (remove() found nothing there).
   * @param {ServerState} server
   * @param {object} reg
   * @param {number} timeout
   * @returns {Promise<void>}
   * @private
   */
  async _apply(server, reg, timeout) {
    reg.pending.add(server);
    const client = this._control(server);
    try {
      if (!client.connected) await this._connectControl(server, client, timeout);
      if (reg.removed) return;
      if (reg.kind === 'serve') await client.serve(reg.channel, reg.handler, { timeout, schema: reg.schema });
      else await client.subscribe(reg.channel, reg.deliver, { timeout });
      reg.applied.add(server);
    } catch (err) {
      if (err instanceof RemoteError) {
        reg.refused.add(server); // the server said no: asking again would not help
        this._onRefused(err);
      }
      throw err;
    } finally {
      reg.pending.delete(server);
    }
  }

  /**
   * The reconnecting client that carries a server's registrations.
   * @param {ServerState} server
   * @returns {IPCClient}
   * @private
   */
  _control(server) {
    let client = this._controls.get(server);
    if (client === undefined) {
      // bounded by _connectControl(); the health checks retry a server that was down
      client = new IPCClient(this.appId, { ...this._clientOptions, host: server.host, port: server.port, reconnect: true, waitOnFirstConnect: false });
      client.on('error', () => {}); // failures of calls reach their callers; the rest is health checks' business
      this._controls.set(server, client);
      this._subs.watch(server, client); // its cluster, its drops, its lame duck
    }
    return client;
  }

  /**
   * Connects a registration client, bounded by `timeout`: a client that
   * is already reconnecting is left to finish on its own.
   * @param {ServerState} server
   * @param {IPCClient} client
   * @param {number} timeout
   * @returns {Promise<void>}
   * @private
   */
  _connectControl(server, client, timeout) {
    if (client.state === 'reconnecting') {
      return Promise.reject(new NotConnectedError(`${server.address} is reconnecting`));
    }
    return new Promise((resolve, reject) => {
      const timer = setLongTimeout(() => reject(new RequestTimeoutError(`no connection to ${server.address} within ${timeout} ms`)), timeout);
      client.connect().then(
        () => {
          clearLongTimeout(timer);
          resolve();
        },
        (err) => {
          clearLongTimeout(timer);
          reject(err);
        }
      );
    });
  }

  /**
   * After a passing health check: applies the registrations this server
   * missed while it was unreachable.
   * @param {ServerState} server
   */
  sync(server) {
    const missing = this._registrations.filter(
      (r) => (r.kind === 'serve' || this._subs.isIsland(server)) && !r.applied.has(server) && !r.refused.has(server) && !r.pending.has(server)
    );
    this._subs.learn(server);
    if (missing.length === 0) return;
    for (const reg of missing) {
      this._apply(server, reg, this._requestTimeout).catch(() => {}); // retried at the next check
    }
  }
}

module.exports = { BalancedRegistrations };
