'use strict';

/**
 * What the client reports of itself (the Python client's introspection.py):
 * health (docs/resilience.md §5) from a ping round trip or, without one,
 * from the heartbeat's view (the latency of the last pong, the time of the
 * last heartbeat), and the connection's snapshot for logs and dashboards.
 * The heartbeat itself (when to ping a silent server, when to declare it
 * dead) is the protocol's (lib/protocol/), on the pump's clock.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`,
 * `_state`, `_conn`, `_info`, `_connectionId`, `_lastReceived`, `_calls`
 * (`call()`, `pending`), `_outbox` (`queue`), `_admission` (`running`,
 * `heldCount`), `_subs` (the tables), `_reconnector` (`attempt`,
 * `waiters`), `_emitSafely()`.
 */

const { SYSTEM_CHANNEL } = require('./constants');
const { buildMessage } = require('./envelope');
const { now } = require('./connection');
const { epochMs } = require('./clock');
const { State } = require('./state');
const { ErrorCode } = require('./errors');
const { checkTimeout } = require('./call_options');
const { ClientExtensions } = require('./client_extensions');

/**
 * The client's reports on itself, and what the heartbeat measured.
 */
class Introspection {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    this.latencyMs = null;
    this.lastPong = null; // monotonic ms of the last pong: snapshot() converts it to epoch ms
  }

  /**
   * A pong arrived (heartbeat or health()).
   * @param {number} latencyMs
   */
  pong(latencyMs) {
    this.latencyMs = latencyMs;
    this.lastPong = now();
    this.host._emitSafely('heartbeat', { latency: latencyMs });
  }

  /**
   * IPCClient.health(): a ping round trip (§9.1), never throwing.
   * @param {number} timeout
   * @returns {Promise<object>}
   */
  async health(timeout) {
    const host = this.host;
    const base = { state: host._state, connectionId: host._info?.connectionId ?? null, server: host._info?.server ?? null };
    if (host._state !== State.CONNECTED) return { healthy: false, latencyMs: null, ...base, error: ErrorCode.NOT_CONNECTED };
    const conn = host._conn;
    if (conn !== null && conn.legacy) return { healthy: !conn.closed, latencyMs: null, ...base };
    const start = now();
    try {
      const ms = checkTimeout(timeout);
      await host._calls.call(buildMessage('request', host.appId, SYSTEM_CHANNEL, { action: 'ping' }), start + ms, false, undefined, ms);
      const latencyMs = now() - start;
      this.pong(latencyMs);
      return { healthy: true, latencyMs, ...base };
    } catch (err) {
      return { healthy: false, latencyMs: null, ...base, error: err.code ?? String(err) };
    }
  }

  /**
   * IPCClient.getConnectionHealth(): without a round trip; times are epoch
   * ms, converted from their monotonic stamps now (lib/clock.js), so a
   * wall-clock step since does not shift them.
   * @returns {object}
   */
  snapshot() {
    const host = this.host;
    const conn = host._conn;
    const hb = conn !== null ? conn.heartbeat : null;
    const received = conn !== null ? conn.lastReceived : host._lastReceived;
    const t = now();
    const wall = Date.now();
    const healthy = host._state === State.CONNECTED && conn !== null && (hb === null || t - conn.lastReceived <= hb.intervalMs);
    return {
      healthy,
      state: host._state,
      lastHeartbeat: this.lastPong === null ? null : epochMs(this.lastPong, t, wall),
      lastReceived: received === null ? null : epochMs(received, t, wall),
      latencyMs: this.latencyMs,
      heartbeatIntervalMs: hb ? hb.intervalMs : null,
      heartbeatTimeoutMs: hb ? hb.timeoutMs : null
    };
  }
  /**
   * IPCClient.getConnectionInfo(): every concern's part of the picture, for logs and dashboards.
   * @returns {object}
   */
  info() {
    const host = this.host;
    const info = host._info;
    const hb = host._conn !== null ? host._conn.heartbeat : null;
    return {
      appId: host.appId,
      host: host.options.host,
      port: host.options.port,
      state: host._state,
      connected: host._state === State.CONNECTED,
      connectionId: info ? info.connectionId : host._connectionId,
      protocol: info ? info.protocol : null,
      server: info ? info.server : null,
      maxFrameSize: info ? info.maxFrameSize : null,
      heartbeatIntervalMs: hb ? hb.intervalMs : null,
      heartbeatTimeoutMs: hb ? hb.timeoutMs : null,
      reconnectAttempt: host._reconnector.attempt,
      pendingRequests: host._calls.pending.size,
      queuedCalls: host._outbox.queue.size + host._reconnector.waiters.size,
      runningHandlers: host._admission.running,
      heldMessages: host._admission.heldCount,
      subscriptions: [...host._subs.subscriptions.keys()],
      responders: [...host._subs.responders.keys()]
    };
  }
}

/**
 * The client's introspection API (the Python client's ClientIntrospection):
 * health, metrics, the queue and breakers, the connection's snapshot and
 * the system channel. A base class of IPCClient, above ClientExtensions.
 * Host interface: `options`, `sendRequest()`, `_introspection`, `_outbox`,
 * `_metrics`, `_producers`, `_breakers`.
 */
class ClientIntrospection extends ClientExtensions {
  /**
   * Asks the `system` channel (§8): the server answers `ping`, `stats`,
   * `channels`, `services` and `describe` itself; any other action goes to
   * whoever serves `system` in this app (`no_responders` when nobody does).
   * @param {string} action e.g. 'stats', or an application action such as 'get_time'.
   * @param {{timeout?: number, params?: object}} [options] `timeout`: milliseconds, default
   *   `requestTimeout`; `params`: more fields of the payload, such as a page's `offset` and
   *   `limit` (`channels`, `services`, `describe`, `connections`).
   * @returns {Promise<unknown>} the answer's payload.
   */
  async system(action, { timeout, params } = {}) {
    if (typeof action !== 'string' || action.length === 0) throw new TypeError('action must be a non-empty string');
    if (params !== undefined && params !== null && (typeof params !== 'object' || Array.isArray(params))) {
      throw new TypeError(`params must be an object, got ${Array.isArray(params) ? 'an array' : typeof params}`);
    }
    return (await this.sendRequest(SYSTEM_CHANNEL, { ...(params || {}), action }, timeout)).payload;
  }

  /**
   * Whether a ping round trip (§9.1) succeeds within the timeout; never
   * throws. Against a version-1 server, which never answers pings (§10), it
   * is whether the connection is up. health() gives the details.
   * @param {{timeout?: number}} [options] milliseconds, default min(requestTimeout, 5 s).
   * @returns {Promise<boolean>}
   */
  async healthCheck(options) {
    return (await this.health(options)).healthy;
  }

  /**
   * Round-trips a ping to the server (§9.1) and describes the outcome; never
   * throws. Against a version-1 server health is the connection state.
   * @param {{timeout?: number}} [options] milliseconds, default min(requestTimeout, 5 s).
   * @returns {Promise<{healthy: boolean, state: string, latencyMs: number|null, connectionId: string|null, server: string|null, error?: string}>}
   */
  async health({ timeout = Math.min(this.options.requestTimeout, 5000) } = {}) {
    return this._introspection.health(timeout);
  }

  /**
   * The connection's health without a round trip (docs/resilience.md §5); times are epoch ms.
   * @returns {{healthy: boolean, state: string, lastHeartbeat: number|null, lastReceived: number|null, latencyMs: number|null, heartbeatIntervalMs: number|null, heartbeatTimeoutMs: number|null}}
   */
  getConnectionHealth() {
    return this._introspection.snapshot();
  }

  /**
   * The KPI counters since the client was created (docs/resilience.md §2).
   * @returns {object} see index.d.ts (ClientMetrics).
   */
  getMetrics() {
    const { queue } = this._outbox;
    const snapshot = this._metrics.snapshot({ queued: queue.size, queuedBytes: queue.bytes, queueDropped: queue.dropped });
    snapshot.lateAnswers = this._producers.lateAnswers; // answers not sent: the requester gave up (§15.4)
    snapshot.producersDetached = this._producers.detached; // Node only: a cancel freed a slot its generator's next() held
    return snapshot;
  }

  /** @returns {object} the offline queue's counters (docs/resilience.md §4). */
  queueStats() {
    return this._outbox.queue.stats();
  }

  /** @returns {Record<string, object>} every circuit breaker's snapshot, by channel (or '*' with scope 'client'). */
  circuitBreakers() {
    return this._breakers.snapshot();
  }

  /** @returns {object} a snapshot of the connection, for logs and dashboards. */
  getConnectionInfo() {
    return this._introspection.info();
  }
}

module.exports = { Introspection, ClientIntrospection };
