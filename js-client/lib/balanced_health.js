'use strict';

/**
 * Which servers a LoadBalancedClient sends calls to (docs/resilience.md §8):
 * a server leaves the rotation when a call or its pool says it is gone,
 * and a round of health checks every `healthCheckInterval` takes it out or
 * brings it back ('server_down', 'server_up'); a server that says it is
 * leaving (lame duck) gets no new calls while another can take them
 * ('server_leaving'). The Python client's `ipc_client/balanced_health.py` is its twin.
 */

const { NotConnectedError } = require('./errors');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');

/**
 * The servers' health and the timer of the checks.
 */
class ServerHealth {
  /**
   * @param {object} owner
   * @param {ServerState[]} owner.servers
   * @param {Map<ServerState, ConnectionPool>} owner.pools
   * @param {number|null} owner.intervalMs between two rounds (a round never overlaps the next); null: none.
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
   * Opens every server's pool (start()): one that opens is in the
   * rotation, one that fails leaves it with its error.
   * @returns {Promise<Array<Error|null>>} each server's error in the servers' order (null: opened).
   */
  openAll() {
    return Promise.all(
      this._servers.map(async (server) => {
        try {
          await this._pools.get(server).start();
          this.markUp(server);
          return null;
        } catch (err) {
          this.markDown(server, err);
          return err;
        }
      })
    );
  }

  /**
   * Takes a server out of the rotation.
   * @param {ServerState} server
   * @param {Error|null} error
   */
  markDown(server, error) {
    server.leaving = false; // gone now, not leaving
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
   * The server said it is leaving (lame duck, docs/protocol.md §13.1):
   * calls go to the others from now on (to it only if no other is healthy)
   * until its connection goes (markDown) or a new one is made (connected);
   * health checks and calls that succeed do not undo it.
   * @param {ServerState} server
   * @param {number} deadlineMs when it closes at the latest.
   */
  leaving(server, deadlineMs) {
    if (server.leaving || this._stopped) return;
    server.leaving = true;
    this._emit('server_leaving', { host: server.host, port: server.port, deadlineMs });
  }

  /**
   * A new connection to `server`: it is in rotation (a server leaving
   * accepts none, so this is its successor), and it says if it leaves.
   * @param {ServerState} server
   * @param {import('./client').IPCClient} client
   */
  connected(server, client) {
    client.on('lame_duck', ({ deadlineMs }) => this.leaving(server, deadlineMs));
    server.leaving = false;
    this.markUp(server);
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

  /** Runs a round every `intervalMs` from now on (none when it is null). */
  schedule() {
    if (this._stopped || this._intervalMs === null) return;
    // healthCheckInterval past 2^31-1 ms waits in steps (a plain setTimeout would check every ms).
    this._timer = setLongTimeout(() => {
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
    clearLongTimeout(this._timer);
    this._timer = null;
  }
}

/**
 * start()'s error when no server could be reached (docs/resilience.md §8):
 * the first server's error in its words, and as `.cause` what lies under
 * its not_connected wrappers (the TLS error, ECONNREFUSED, an
 * UnauthorizedError), the cause connect() gives, as the Python client does.
 * @param {Array<Error|null>} errors openAll()'s.
 * @returns {NotConnectedError}
 */
function unreachable(errors) {
  const first = errors.find((err) => err != null);
  if (first === undefined) return new NotConnectedError('no server could be reached'); // each opened, then dropped
  let cause = first;
  while (cause instanceof NotConnectedError && cause.cause != null) cause = cause.cause;
  return new NotConnectedError(`no server could be reached: ${first.message}`, { cause });
}

module.exports = { ServerHealth, unreachable };
