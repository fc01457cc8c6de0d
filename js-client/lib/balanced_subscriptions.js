'use strict';

/**
 * Where a LoadBalancedClient's subscriptions live (docs/resilience.md §8,
 * docs/cluster.md §6). The Python client's `ipc_client/balanced_subscriptions.py`
 * is its twin.
 *
 * Standalone servers are islands: a publish reaches the subscribers of its
 * own server only, so a subscription is kept on every one of them. Servers
 * that name the same cluster in their connect reply (docs/protocol.md §3
 * item 10) deliver every publish on each of them: there a subscription is
 * kept on ONE server, the first healthy one of the list, and stays there
 * while its connection lives. When that connection drops or the server says
 * it is leaving (lame duck), the subscription is made on the next healthy
 * node first, then dropped from the old one ('subscription_moved'); a
 * publish both deliver during the overlap is handed to the handler once
 * (the cluster relays a publish with its `message_id`).
 */

const { RemoteError, NotConnectedError } = require('./errors');

/** Message ids a subscription remembers, to drop what two nodes delivered after a move. */
const SEEN_LIMIT = 1024;

/**
 * The placement of the subscriptions; the I/O is the registrations' (balanced_registrations.js).
 */
class BalancedSubscriptions {
  /**
   * @param {object} owner
   * @param {ServerState[]} owner.servers in list order.
   * @param {(server: ServerState) => import('./client').IPCClient} owner.control the server's registration client.
   * @param {(server: ServerState, reg: object, timeout: number) => Promise<void>} owner.apply subscribes there (records reg.applied).
   * @param {(server: ServerState, client: import('./client').IPCClient, timeout: number) => Promise<void>} owner.connect
   * @param {() => object[]} owner.registrations the subscriptions.
   * @param {number} owner.requestTimeout for what a change re-applies.
   * @param {(event: string, arg: object) => void} owner.emit 'subscription_moved'.
   */
  constructor({ servers, control, apply, connect, registrations, requestTimeout, emit }) {
    this._servers = servers;
    this._control = control;
    this._apply = apply;
    this._connect = connect;
    this._registrations = registrations;
    this._requestTimeout = requestTimeout;
    this._emit = emit;
    /** @type {Map<ServerState, string|null>} what each server's latest connect reply said */
    this.clusters = new Map();
    this._leaving = new Set(); // servers whose registration client was told they leave
    this._tail = Promise.resolve();
    this._again = false;
    this._running = false;
    this._closed = false;
  }

  /**
   * Follows a server's registration client: its cluster, its drops, its lame duck.
   * @param {ServerState} server
   * @param {import('./client').IPCClient} client
   */
  watch(server, client) {
    client.on('connected', (info) => {
      this.clusters.set(server, info.cluster ?? null);
      this._leaving.delete(server);
      this.changed();
    });
    client.on('disconnected', () => this.changed());
    client.on('lame_duck', () => {
      this._leaving.add(server);
      this.changed();
    });
  }

  /**
   * A handler that hands a publish both nodes delivered after a move to `handler` once.
   * @param {object} reg
   * @param {Function} handler
   * @returns {Function}
   */
  deliverer(reg, handler) {
    reg.moved = false;
    reg.seen = new Set();
    return (msg) => {
      // Ids are remembered from the start: the old node may have delivered a
      // publish just before the move that reaches the new one just after.
      if (reg.seen.has(msg.message_id)) {
        if (reg.moved) return undefined;
      } else {
        reg.seen.add(msg.message_id);
        if (reg.seen.size > SEEN_LIMIT) reg.seen.delete(reg.seen.values().next().value);
      }
      return handler(msg);
    };
  }

  /**
   * Whether a server keeps every subscription (standalone, or not known
   * yet while no server names a cluster).
   * @param {ServerState} server
   * @returns {boolean}
   */
  isIsland(server) {
    const name = this.clusters.get(server);
    if (name === undefined) return ![...this.clusters.values()].some((n) => n !== null);
    return name === null;
  }

  /**
   * Places a new subscription: on every island and on one node of each
   * cluster. Rejects when no server took it (the caller keeps nothing);
   * resolves when it was removed meanwhile.
   * @param {object} reg
   * @param {number} timeout ms.
   * @returns {Promise<void>}
   */
  place(reg, timeout) {
    return this._exclusive(async () => {
      // every server's reply says what it is: connect the registration clients first
      const reached = await Promise.allSettled(this._servers.map((s) => this._connected(s, timeout)));
      if (reg.removed) return; // unsubscribed while connecting: nothing to place
      const { islands, clusters } = this._layout();
      const results = await Promise.allSettled([
        // a server not reached gets it when a health check finds it back (sync)
        ...islands.filter((s) => reached[this._servers.indexOf(s)].status === 'fulfilled').map((s) => this._apply(s, reg, timeout)),
        ...[...clusters.values()].map((nodes) => this._pick(reg, nodes, [], timeout))
      ]);
      if (reg.applied.size > 0 || reg.removed) return;
      reg.failed = true; // nothing is kept: no move may apply it meanwhile
      await Promise.allSettled([...this._servers].map((s) => this._drop(s, reg)));
      const failures = [...results, ...reached].filter((r) => r.status === 'rejected').map((r) => r.reason);
      throw failures.find((e) => e instanceof RemoteError) ?? failures[0] ?? new NotConnectedError('no server took the subscription');
    });
  }

  /**
   * A server came, went or is leaving: move what must move (in the background).
   */
  changed() {
    if (this._closed) return;
    this._again = true;
    if (this._running) return;
    this._running = true;
    this._exclusive(async () => {
      while (this._again && !this._closed) {
        this._again = false;
        for (const reg of this._registrations()) {
          try {
            await this._settle(reg);
          } catch {
            // a later change (a connection, a health check) tries again
          }
        }
      }
    }).finally(() => {
      this._running = false;
    });
  }

  /**
   * A passing health check: a server never reached says what it is once connected.
   * @param {ServerState} server
   */
  learn(server) {
    if (this._registrations().length === 0) return;
    if (!this.clusters.has(server)) this._connected(server, this._requestTimeout).catch(() => {});
    this.changed();
  }

  /** No more moves. */
  close() {
    this._closed = true;
  }

  // ---------------------------------------------------------------- internals

  /**
   * Runs `fn` after every placement or move before it.
   * @param {() => Promise<void>} fn
   * @returns {Promise<void>}
   * @private
   */
  _exclusive(fn) {
    const run = this._tail.then(fn);
    this._tail = run.catch(() => {});
    return run;
  }

  /** @private */
  async _connected(server, timeout) {
    const client = this._control(server);
    if (!client.connected) await this._connect(server, client, timeout);
  }

  /**
   * The islands and each cluster's nodes, in list order.
   * @returns {{islands: ServerState[], clusters: Map<string, ServerState[]>}}
   * @private
   */
  _layout() {
    const islands = [];
    const clusters = new Map();
    for (const server of this._servers) {
      const name = this.clusters.get(server);
      if (this.isIsland(server)) islands.push(server);
      else if (typeof name === 'string') {
        if (!clusters.has(name)) clusters.set(name, []);
        clusters.get(name).push(server);
      }
    }
    return { islands, clusters };
  }

  /** @private */
  _usable(server) {
    return server.healthy && !server.leaving && !this._leaving.has(server) && this._control(server).connected;
  }

  /**
   * Subscribes on the first usable node not in `held`; rejects with the
   * server's refusal (every node would say the same) or the last failure.
   * @returns {Promise<ServerState|null>} where, or null when no node could take it.
   * @private
   */
  async _pick(reg, nodes, held, timeout) {
    let last = null;
    for (const server of nodes) {
      if (held.includes(server) || !this._usable(server)) continue;
      try {
        await this._apply(server, reg, timeout);
        return server;
      } catch (err) {
        if (err instanceof RemoteError) throw err;
        last = err;
      }
    }
    if (last !== null && held.length === 0) throw last;
    return null;
  }

  /** @private */
  async _drop(server, reg) {
    reg.applied.delete(server);
    try {
      await this._control(server).unsubscribe(reg.channel, reg.deliver);
    } catch {
      // its connection went meanwhile: nothing is left there
    }
  }

  /**
   * Brings a subscription where the layout wants it: on every island, on
   * one live node of each cluster (kept where it is while that node lives).
   * @private
   */
  async _settle(reg) {
    if (reg.removed) return;
    const { islands, clusters } = this._layout();
    for (const server of islands) {
      if (!reg.applied.has(server) && !reg.refused.has(server) && !reg.pending.has(server)) {
        await this._apply(server, reg, this._requestTimeout).catch(() => {}); // retried at the next change
      }
    }
    for (const nodes of clusters.values()) {
      const held = nodes.filter((s) => reg.applied.has(s));
      let keep = held.find((s) => this._usable(s)) ?? null;
      if (keep === null) {
        if (held.length > 0) reg.moved = true; // from now on, a message both nodes deliver counts once
        keep = await this._pick(reg, nodes, held, this._requestTimeout);
        if (reg.removed) return; // unsubscribed meanwhile: remove() let go of it everywhere
        if (keep === null) continue; // nowhere to go: it stays where it is, restored when that server is back
      }
      for (const server of held) {
        if (server !== keep) await this._drop(server, reg);
      }
      if (held.length > 0 && !held.includes(keep)) {
        const where = (s) => ({ host: s.host, port: s.port });
        this._emit('subscription_moved', { channel: reg.channel, from: where(held[0]), to: where(keep) }); // once the old node let go
      }
    }
  }
}

module.exports = { BalancedSubscriptions };
