'use strict';

/**
 * The health of the connection (docs/resilience.md §5): the latency of the
 * last pong, the time of the last heartbeat, and the reports built on them
 * (health(), getConnectionHealth()). The heartbeat itself (when to ping a
 * silent server, when to declare it dead) is the protocol's
 * (lib/protocol/), on the clock the pump (lib/connection.js) passes in.
 *
 * Host interface (the IPCClient that owns it): `appId`, `_state`, `_conn`,
 * `_info`, `_lastReceived`, `_calls` (`call()`), `_emitSafely()`.
 */

const { performance } = require('node:perf_hooks');
const { SYSTEM_CHANNEL } = require('./constants');
const { buildMessage } = require('./envelope');
const { now } = require('./connection');
const { State } = require('./state');
const { ErrorCode } = require('./errors');
const { checkTimeout } = require('./call_options');

/**
 * What the heartbeat and health checks measured.
 */
class KeepAlive {
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
}

module.exports = { KeepAlive };
