'use strict';

/**
 * A client's connections, one after another (docs/resilience.md §2-§3):
 * connect(), one attempt (`establish()`: open, restore registrations, go
 * CONNECTED, then replay the outbox), the loss of a connection, and
 * disconnect(). The state moves only through the host's `_setState()`,
 * checked against lib/state.js.
 *
 * `generation` ties an attempt to one connect() or reconnect loop: once
 * disconnect() (and maybe a new connect()) moved on, the attempt closes
 * its own socket and touches nothing of the client's.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options`,
 * `_state`, `_setState()`, `_conn`, `_opening`, `_info`, `_connectionId`,
 * `_sendLimit`, `_lastReceived`, `_generation`, `_connecting`, `_closing`,
 * `_establish()`, `_metrics`, `_emitSafely()`, `_emitError()` and the
 * concerns `_calls`, `_outbox`, `_admission`, `_subs`, `_reconnector`,
 * `_introspection` (`pong()`).
 */

const { SYSTEM_CHANNEL } = require('./constants');
const { Connection } = require('./connection');
const { State } = require('./state');
const { ConnectionLostError, IpcError, NotConnectedError, RequestTimeoutError, UnauthorizedError, errorFromWire } = require('./errors');
const tlsOptions = require('./tls_options');
const { ASKED_FEATURES } = require('./protocol/cluster_info');
const { lameDuckDeadlineMs } = require('./protocol/restarts');
const { revokedForGood } = require('./reconnect');
const { goAway, leaveToldWhileConnecting } = require('./going_away');

/**
 * The Unauthorized a reload revoked the connection with (it ended it), or
 * null: an attempt it ends fails with it, final as a refused connect is.
 * @param {Connection} conn
 * @returns {Error|null}
 * @private
 */
function revokedBy(conn) {
  return conn.error instanceof UnauthorizedError ? conn.error : null;
}

/**
 * Opens, restores, loses and closes the client's connections.
 */
class Lifecycle {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
  }

  /**
   * IPCClient.connect(): one attempt, shared by concurrent calls.
   * @returns {Promise<true>}
   */
  connect() {
    const host = this.host;
    if (host._state === State.CONNECTED) return Promise.resolve(true);
    if (host._state === State.CONNECTING) return host._connecting;
    if (host._state === State.RECONNECTING) return host._reconnector.waitConnected(Infinity).then(() => true);
    if (host._state === State.DISCONNECTING) return host._closing.then(() => host.connect());
    try {
      host._outbox.reclaim();
    } catch (err) {
      return Promise.reject(err);
    }
    const generation = ++host._generation;
    host._setState(State.CONNECTING);
    host._emitSafely('connecting');
    const attempt = host._establish(generation).then(
      () => {
        if (host._connecting === attempt) host._connecting = null;
        return true;
      },
      (err) => {
        if (host._connecting === attempt) host._connecting = null;
        const current = host._state === State.CONNECTING && host._generation === generation;
        // A refused token or certificate stops it: retrying cannot fix either (lib/tls_options.js).
        if (current && host.options.waitOnFirstConnect && !(err instanceof UnauthorizedError) && !tlsOptions.refused(err)) {
          return host._reconnector.keepConnecting(generation, err);
        }
        if (current) {
          host._setState(State.DISCONNECTED);
          this._abandon(new NotConnectedError('the connection attempt failed', { cause: err }));
        }
        throw err;
      }
    );
    host._connecting = attempt;
    return attempt;
  }

  /**
   * IPCClient.disconnect().
   * @returns {Promise<void>}
   */
  disconnect() {
    const host = this.host;
    if (host._state === State.DISCONNECTED) {
      if (host._conn !== null) return this._letGo(host._conn); // told goaway with reconnect off: what it carries ends now
      host._outbox.release();
      return Promise.resolve();
    }
    if (host._state === State.DISCONNECTING) return host._closing;
    const wasConnected = host._state === State.CONNECTED;
    host._generation++; // an attempt still opening is now stale
    host._setState(State.DISCONNECTING);
    const conn = host._conn;
    this.detach(new ConnectionLostError('the client disconnected'));
    host._metrics.closed(false);
    if (host._opening !== null) host._opening.destroy(new NotConnectedError('the client disconnected'));
    host._reconnector.wake();
    this._abandon(new NotConnectedError('the client disconnected'));
    const closing = (conn ? conn.close() : Promise.resolve()).then(() => {
      host._closing = null;
      try {
        host._outbox.release(); // the file is another client's to take until connect()
      } finally {
        host._setState(State.DISCONNECTED); // whatever the release met
        host._emitSafely('close');
      }
    });
    host._closing = closing;
    if (wasConnected) host._emitSafely('disconnected', null); // once _closing is set: a listener's connect()/disconnect() waits for it
    return closing;
  }

  /**
   * disconnect() after a goaway with reconnect off: the state is already
   * 'disconnected', but the connection was still held for its answers
   * (lib/going_away.js). It ends now as a disconnect() ends one (calls
   * connection_lost, then 'close'), not at the last answer or the 2 s bound.
   * @param {Connection} conn
   * @returns {Promise<void>}
   * @private
   */
  _letGo(conn) {
    const host = this.host;
    host._generation++; // the goaway's wait lets go of it: the 'close' is emitted here
    this.detach(new ConnectionLostError('the client disconnected'));
    host._metrics.closed(false);
    return conn.close().then(() => {
      if (host._state !== State.DISCONNECTED) return; // a connect() meanwhile
      host._outbox.release();
      host._emitSafely('close');
    });
  }

  /**
   * One connection attempt: opens a connection and restores subscriptions
   * and responders; then emits 'reconnected' (after a loss) and
   * 'connected', and only then replays the offline queue.
   *
   * A 'reconnected' or 'connected' listener that throws is reported; the
   * connection stays up and the queue is sent. No handshake within
   * `connectTimeout` is a NotConnectedError whose `.cause` is the timeout:
   * the server was not reached, as far as the caller is concerned, exactly
   * as when the TCP connect fails. The server's own `timeout` refusal of the
   * connect (its auth timeout) is a NotConnectedError with the server's text,
   * the refusal its `.cause`.
   * @param {number} generation the host's `_generation` when the attempt started.
   * @returns {Promise<void>}
   */
  async establish(generation) {
    const host = this.host;
    const { options } = host;
    const conn = new Connection(
      {
        host: options.host,
        port: options.port,
        appId: host.appId,
        connectionId: host._connectionId,
        token: options.token,
        user: options.user,
        maxFrameSize: options.maxFrameSize,
        heartbeatInterval: options.heartbeatInterval,
        heartbeatTimeout: options.heartbeatTimeout,
        tls: options.tls, // every attempt, a reconnection's too, makes a new TLS handshake
        features: ASKED_FEATURES // streams, cancellation, ... and cluster (docs/protocol.md §15.1)
      },
      {
        onMessage: (msg) => this.onMessage(conn, msg),
        onError: (err) => host._emitError(err),
        onClose: (err) => this.onClosed(conn, err),
        onPing: (msg) => conn === host._conn && host._emitSafely('ping', { messageId: msg.message_id }),
        onPong: (latencyMs) => conn === host._conn && host._introspection.pong(latencyMs),
        onHeartbeatTimeout: (silent) => host._emitSafely('heartbeat_timeout', { silent })
      }
    );
    host._opening = conn;
    host._metrics.attempt();
    let info;
    try {
      info = await conn.open(options.connectTimeout);
    } catch (err) {
      if (!(err instanceof RequestTimeoutError)) throw err;
      const peer = `${options.host}:${options.port}`;
      if (err === conn.refusal) {
        // The server's answer, code timeout (its auth timeout passed first): its words, not ours.
        throw new NotConnectedError(`cannot connect to ${peer}: the server refused the connect (${err.code}): ${err.message}`, { cause: err });
      }
      throw new NotConnectedError(`no handshake with ${peer} within ${options.connectTimeout} ms`, { cause: err });
    } finally {
      if (host._opening === conn) host._opening = null;
    }
    if (generation !== host._generation) {
      conn.destroy();
      throw new NotConnectedError('the client disconnected');
    }
    host._metrics.opened();
    host._info = info;
    host._connectionId = info.connectionId;
    host._sendLimit = conn.sendLimit;
    host._conn = conn;
    host._calls.conn = conn;
    host._admission.restart(); // inbound flow control starts afresh on every connection; held publishes stay
    try {
      await host._subs.restore(conn);
    } catch (err) {
      throw revokedBy(conn) ?? err;
    }
    if (generation !== host._generation) {
      conn.destroy(); // disconnect() already let go of it
      throw new NotConnectedError('the client disconnected');
    }
    if (host._conn !== conn) {
      throw revokedBy(conn) ?? new NotConnectedError('the connection was lost while restoring subscriptions'); // never CONNECTED on a dead socket
    }
    if (conn.goingAway) await leaveToldWhileConnecting(host, conn); // the notice came while connecting: never CONNECTED on it
    const reconnector = host._reconnector;
    // a first connection reached through waitOnFirstConnect is no reconnection
    const reconnected = host._state === State.RECONNECTING && !reconnector.firstWait;
    const attempts = reconnector.attempt;
    host._setState(State.CONNECTED);
    reconnector.attempt = 0;
    const outbox = host._outbox;
    outbox.replaying = conn; // calls made by the listeners below queue behind the replay
    reconnector.resolveWaiters();
    if (reconnected) host._emitSafely('reconnected', { attempts, elapsed: host._metrics.reconnected() });
    if (host._conn === conn && host._state === State.CONNECTED) host._emitSafely('connected', info);
    if (host._conn === conn && host._state === State.CONNECTED) host._admission.resume(); // publishes held since a loss
    if (outbox.replaying === conn) outbox.replaying = null;
    if (host._conn === conn && host._state === State.CONNECTED) outbox.startReplay(conn);
  }

  /**
   * The connection-dropped path: in-flight calls fail at once (they may
   * have run, so they are never resent), queued calls stay, then the
   * reconnect loop starts (single flight).
   *
   * The state changes before any event is emitted, so a listener sees the
   * new state and may call disconnect() (or connect()): 'disconnected' is
   * emitted once, and what follows the events re-checks the state.
   * @param {Connection} conn
   * @param {Error|null} err
   */
  onClosed(conn, err) {
    const host = this.host;
    if (conn !== host._conn) return; // an old connection, or disconnect() already cleaned up
    const reason = new ConnectionLostError(`connection to ${host.options.host}:${host.options.port} lost${err ? `: ${err.message}` : ''}`, { cause: err ?? undefined });
    const retry = host.options.reconnect && !revokedForGood(err); // a changed credential gets one reconnect
    host._metrics.closed(retry && host._state !== State.CONNECTING);
    this.detach(reason, false);
    if (host._state !== State.CONNECTED) {
      host._admission.resume(); // held publishes are handled meanwhile
      return; // failed during restore: establish() rejects
    }
    const next = retry ? State.RECONNECTING : State.DISCONNECTED;
    host._setState(next);
    if (!retry) {
      const text = err instanceof UnauthorizedError ? `the server closed the connection unauthorized: ${err.message}` : 'the connection was lost and reconnection is off';
      this._abandon(new NotConnectedError(text, { cause: err ?? undefined }));
    }
    // connection_lost, its cause the raw error (a heartbeat timeout, a socket error), as Python's;
    // a reload's cut as itself. Never null: that is disconnect()'s.
    host._emitSafely('disconnected', err instanceof UnauthorizedError ? err : reason);
    if (err instanceof IpcError) host._emitError(err); // a protocol error or a heartbeat timeout
    if (host._state !== next) return; // a listener called disconnect() or connect()
    host._admission.resume(); // held publishes were delivered: handled now, whatever the connection
    if (host._state !== next) return;
    if (retry) host._reconnector.start();
    else host._emitSafely('close');
  }

  /**
   * Forgets the current connection: drops held inbound work (publishes only
   * when disconnecting: Admission.restart()) and rejects every pending call with `reason`.
   * @param {Error} reason
   * @param {boolean} [disconnecting] false for a loss: keyed runs go on (lib/keyed_runs.js).
   */
  detach(reason, disconnecting = true) {
    const host = this.host;
    if (host._conn !== null) host._lastReceived = host._conn.lastReceived;
    host._conn = null;
    if (disconnecting) host._admission.reset();
    else host._admission.restart();
    host._calls.failAll(reason);
    host._streams.failAll(reason);
    host._producers.connectionLost(disconnecting);
  }

  /**
   * Dispatches one message from the server to its concern: a response
   * settles its call (or is an error frame that answers none, §6.4); what
   * runs handlers goes through admission. Pings and the heartbeat's pongs
   * never get here: the protocol takes them (lib/protocol/).
   * @param {Connection} conn the connection it came on.
   * @param {object} msg
   */
  onMessage(conn, msg) {
    const host = this.host;
    if (conn !== host._conn) {
      // The notice in the same read as the connect answer: remembered (lib/going_away.js).
      if (conn === host._opening && msg.message_type === 'publish' && msg.channel_id === SYSTEM_CHANNEL) goAway(this, conn, msg);
      return; // after disconnect() or from a replaced connection: nobody's
    }
    switch (msg.message_type) {
      case 'response':
        if (!host._calls.settle(conn, msg) && !host._streams.settle(msg) && msg.error) {
          const err = errorFromWire(msg.error);
          // A reload revoked the connection's credentials (docs/security.md §3.4): its end,
          // reported with its close (onClosed): final but for a changed credential (one reconnect); this side closes it at once.
          if (!msg.reply_to && err instanceof UnauthorizedError) {
            conn.destroy(err);
            return;
          }
          err.replyTo = msg.reply_to;
          host._subs.withdrawn(err); // a registration the server withdrew (§3)
          host._emitError(err);
        }
        return;
      case 'request':
        if (msg.channel_id === SYSTEM_CHANNEL) {
          host._subs.onSystemRequest(conn, msg);
          return;
        }
        if (msg.window !== undefined) host._producers.expect(conn, msg); // a credit right behind it counts (§15.3)
        host._admission.admit(conn, msg);
        return;
      case 'publish':
        if (msg.channel_id === SYSTEM_CHANNEL && (this._lameDuck(msg) || goAway(this, conn, msg))) return; // §13.1, §13 item 3
        host._admission.admit(conn, msg);
        return;
      case 'notification':
        host._admission.admit(conn, msg);
        return;
      case 'stream_item':
      case 'stream_end':
        host._streams.onFrame(msg); // §15.3
        return;
      case 'credit':
      case 'cancel':
        host._producers.onFrame(conn, msg); // §15.3, §15.4
        return;
      default:
      // subscribe/unsubscribe are never sent to clients
    }
  }

  /**
   * The server is leaving (docs/protocol.md §13.1): says so with
   * 'lame_duck'. The connection carries on until the server closes it, then
   * the client reconnects as after any loss (a load-balanced client moves at once).
   * @param {object} msg a publish on `system`.
   * @returns {boolean} whether it was the notice.
   * @private
   */
  _lameDuck(msg) {
    const deadlineMs = lameDuckDeadlineMs(msg);
    if (deadlineMs === null) return false;
    this.host._emitSafely('lame_duck', { deadlineMs });
    return true;
  }

  /**
   * No connection is coming: waiting registrations and queued calls fail.
   * @param {Error} reason
   * @private
   */
  _abandon(reason) {
    this.host._reconnector.failWaiters(reason);
    this.host._outbox.abandon(reason);
  }
}

module.exports = { Lifecycle };
