'use strict';

/**
 * Keeping a connection honest (docs/protocol.md §9, docs/resilience.md §5):
 * the heartbeat timer that pings a silent server and drops a dead one,
 * the latency of the last pong, and the health reports built on them. The
 * decisions are lib/heartbeat.js's, on the clock this passes in; this owns
 * the timer and the ping frames.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`,
 * `_state`, `_conn`, `_info`, `_lastReceived`, `_calls` (`call()`),
 * `_emitSafely()`.
 */

const { performance } = require('node:perf_hooks');
const { SYSTEM_CHANNEL } = require('./constants');
const { buildMessage } = require('./envelope');
const { Heartbeat, HeartbeatAction } = require('./heartbeat');
const { now } = require('./connection');
const { State } = require('./state');
const { ErrorCode, RequestTimeoutError } = require('./errors');
const { checkTimeout } = require('./call_options');

const DEFAULT_HEARTBEAT_INTERVAL_MS = 15_000; // §9.3, when the server does not say

/**
 * The heartbeat of the current connection and what it measured.
 */
class KeepAlive {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    /** @type {Heartbeat|null} */
    this.heartbeat = null;
    this.timer = null;
    this.latencyMs = null;
    this.lastHeartbeat = null; // epoch ms of the last pong
    this._ping = null; // {id, sentAt} of the heartbeat ping awaiting its pong
  }

  /**
   * Starts the heartbeat with the server's advertised interval unless the
   * options override it (§9.2). A version-1 server is never pinged (§10),
   * nor a server advertising `heartbeat_interval_ms: 0` (heartbeats off)
   * unless `heartbeatInterval` is set.
   * @param {Connection} conn
   */
  start(conn) {
    if (conn.legacy) return;
    const { options } = this.host;
    const advertised = conn.info.heartbeatIntervalMs;
    if (options.heartbeatInterval === null && advertised === 0) return;
    const interval = options.heartbeatInterval ?? advertised ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    const timeout = options.heartbeatTimeout ?? Math.max(2 * interval, interval + 1);
    this.heartbeat = new Heartbeat(interval, timeout, now());
    this._schedule();
  }

  /** The connection is gone: no more pings. */
  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.heartbeat = null;
    this._ping = null;
  }

  /**
   * Takes the pong of the heartbeat's ping.
   * @param {object} msg a response that answers no call.
   * @returns {boolean} whether it was that pong.
   */
  onPong(msg) {
    if (this._ping === null || msg.reply_to !== this._ping.id) return false;
    const { sentAt } = this._ping;
    this._ping = null;
    this.pong(now() - sentAt);
    return true;
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
    const hb = this.heartbeat;
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
   * Arms the heartbeat timer for the next moment it has something to decide.
   * @private
   */
  _schedule() {
    const delay = Math.max(1, this.heartbeat.nextCheck(now()));
    this.timer = setTimeout(() => this._onTimer(), delay);
    this.timer.unref();
  }

  /**
   * Pings a silent server, or declares it dead and drops the socket, which
   * starts a reconnection (docs/resilience.md §5: a black hole is noticed
   * within interval + timeout of the last frame).
   * @private
   */
  _onTimer() {
    const conn = this.host._conn;
    const hb = this.heartbeat;
    if (conn === null || hb === null) return;
    const t = now();
    hb.received(conn.lastReceived);
    const action = hb.poll(t);
    if (action === HeartbeatAction.DEAD) {
      const silent = t - hb.lastReceived;
      this.host._emitSafely('heartbeat_timeout', { silent });
      conn.destroy(new RequestTimeoutError(`heartbeat timeout: nothing received for ${Math.round(silent)} ms`));
      return;
    }
    if (action === HeartbeatAction.PING) {
      const ping = buildMessage('request', this.host.appId, SYSTEM_CHANNEL, { action: 'ping' });
      try {
        conn.send(ping);
        this._ping = { id: ping.message_id, sentAt: t };
      } catch {
        // closed meanwhile: the close path takes over
      }
    }
    if (this.host._conn === conn) this._schedule();
  }
}

module.exports = { KeepAlive };
