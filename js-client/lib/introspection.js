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

const { performance } = require('node:perf_hooks');
const { SYSTEM_CHANNEL } = require('./constants');
const { buildMessage } = require('./envelope');
const { now } = require('./connection');
const { State } = require('./state');
const { ErrorCode } = require('./errors');
const { checkTimeout } = require('./call_options');

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
    this.lastHeartbeat = null; // epoch ms of the last pong
  }

  /**
   * A pong arrived (heartbeat or health()).
   * @param {number} latencyMs
   */
  pong(latencyMs) {
    this.latencyMs = latencyMs;
    this.lastHeartbeat = Date.now();
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
      await host._calls.call(buildMessage('request', host.appId, SYSTEM_CHANNEL, { action: 'ping' }), start + checkTimeout(timeout));
      const latencyMs = now() - start;
      this.pong(latencyMs);
      return { healthy: true, latencyMs, ...base };
    } catch (err) {
      return { healthy: false, latencyMs: null, ...base, error: err.code ?? String(err) };
    }
  }

  /**
   * IPCClient.getConnectionHealth(): without a round trip; times are epoch ms.
   * @returns {object}
   */
  snapshot() {
    const host = this.host;
    const conn = host._conn;
    const hb = conn !== null ? conn.heartbeat : null;
    const received = conn !== null ? conn.lastReceived : host._lastReceived;
    const healthy = host._state === State.CONNECTED && conn !== null && (hb === null || now() - conn.lastReceived <= hb.intervalMs);
    return {
      healthy,
      state: host._state,
      lastHeartbeat: this.lastHeartbeat,
      lastReceived: received === null ? null : performance.timeOrigin + received,
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

module.exports = { Introspection };
