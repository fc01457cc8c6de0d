'use strict';

/**
 * Which servers a LoadBalancedClient sends calls to (docs/resilience.md §8):
 * a server leaves the rotation when a call or its pool says it is gone,
 * and a round of health checks every `healthCheckInterval` takes it out or
 * brings it back ('server_down', 'server_up').
 */

const { NotConnectedError } = require('./errors');

/**
 * The servers' health and the timer of the checks.
 */
class ServerHealth {
  /**
   * @param {object} owner
   * @param {ServerState[]} owner.servers
   * @param {Map<ServerState, ConnectionPool>} owner.pools
   * @param {number} owner.intervalMs between two rounds (a round never overlaps the next).
   * @param {number} owner.timeoutMs of each server's ping.
   * @param {(event: string, arg: object) => void} owner.emit emits 'server_down' / 'server_up'.
   * @param {(err: unknown) => void} owner.report an error no caller waits for.
   * @param {(server: ServerState) => void} owner.onUp a check passed (registrations catch up).
   */
  constructor({ servers, pools, intervalMs, timeoutMs, emit, report, onUp }) {
    this._servers = servers;
    this._pools = pools;
    this._intervalMs = intervalMs;
    this._timeoutMs = timeoutMs;
    this._emit = emit;
    this._report = report;
    this._onUp = onUp;
    this._timer = null;
    this._stopped = false;
  }

  /**
   * Takes a server out of the rotation.
   * @param {ServerState} server
   * @param {Error|null} error
   */
  markDown(server, error) {
    if (!server.healthy || this._stopped) return;
    server.healthy = false;
    this._emit('server_down', { host: server.host, port: server.port, error });
  }

  /**
   * Puts a server back in the rotation.
   * @param {ServerState} server
   */
  markUp(server) {
    if (server.healthy || this._stopped) return;
    server.healthy = true;
    this._emit('server_up', { host: server.host, port: server.port });
  }

  /**
   * One round: a server whose ping fails leaves the rotation, one whose
   * ping passes comes back.
   * @returns {Promise<void>}
   */
  async check() {
    await Promise.all(
      this._servers.map(async (server) => {
        const res = await this._pools.get(server).healthCheck({ timeout: this._timeoutMs });
        if (this._stopped) return;
        if (res.healthy) {
          this.markUp(server);
          this._onUp(server);
        } else {
          this.markDown(server, new NotConnectedError(`health check failed: ${res.error ?? 'unhealthy'}`));
        }
      })
    );
  }

  /** Runs a round every `intervalMs` from now on. */
  schedule() {
    if (this._stopped) return;
    this._timer = setTimeout(() => {
      this._timer = null;
      this.check()
        .catch((err) => this._report(err)) // a throwing server_up/server_down listener: never an unhandled rejection
        .finally(() => this.schedule());
    }, this._intervalMs);
    this._timer.unref();
  }

  /** No more rounds, and no more events. */
  stop() {
    this._stopped = true;
    clearTimeout(this._timer);
    this._timer = null;
  }
}

module.exports = { ServerHealth };
