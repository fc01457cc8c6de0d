'use strict';

/**
 * The socket pump of one client connection (docs/architecture.md, layer 2):
 * bytes in -> ClientProtocol (lib/protocol/client_protocol.js) -> messages
 * out to the owner's `onMessage`; frames out -> the socket. The handshake,
 * the frame limit, pings and heartbeat decisions are the protocol's; this
 * owns the socket and the timers and passes the protocol its clock.
 *
 * It knows nothing about requests, subscriptions or reconnection; the client
 * owns those. Socket listeners are module-level functions that find their
 * connection through a symbol, so no closures are created per connection
 * (as in `ws`). Writes of one tick are corked and leave in one writev;
 * those that a read of n frames woke, in writevs of n / 4 frames.
 */

const { performance } = require('node:perf_hooks');
const { MAX_TIMER_MS } = require('./constants');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { HeartbeatAction } = require('./heartbeat');
const { ConnectionLostError, IpcError, NotConnectedError, RequestTimeoutError } = require('./errors');
const { Event, PingReceived, PongReceived, ProtocolViolation, writeFrame } = require('./protocol/protocol');
const { ClientProtocol, Connected, HandshakeRefused, InvalidMessage } = require('./protocol/client_protocol');
const { openSocket, handshakeFailure } = require('./tls_options');
const { readsInto } = require('./reads');

const kConnection = Symbol('kConnection');
const CLOSE_TIMEOUT_MS = 1000;
// What a read of n frames wakes (requesters, handlers) leaves in writevs of
// n / 4 frames (at least one, at most 16): in one, a whole round of requests
// in flight, client and server ran in lock step, each idle while the other
// worked (16 in flight: 33k -> 51k round trips/s).
const WRITES_PER_READ = 4;
const MAX_FRAMES_PER_READ_WRITE = 16;

/**
 * A monotonic clock in milliseconds (timers must not follow wall-clock jumps).
 * @returns {number}
 */
function now() {
  return performance.now();
}

/**
 * A socket speaking the bridge protocol.
 */
class Connection {
  /**
   * @param {object} options
   * @param {string} options.host
   * @param {number} options.port
   * @param {string} options.appId
   * @param {string} options.connectionId proposed connection id.
   * @param {string|null} options.token
   * @param {string|null} [options.user] the user of a server's users file (docs/security.md §3).
   * @param {number|null} options.maxFrameSize local cap, or null for the server's value.
   * @param {number|null} [options.heartbeatInterval] ms; null: the server's advertised one.
   * @param {number|null} [options.heartbeatTimeout] ms; null: twice the interval.
   * @param {object|null} [options.tls] the parsed `tls` option (lib/tls_options.js); null: plaintext.
   * @param {object} owner callbacks: `onMessage(msg)`, `onError(err)`, `onClose(err|null)`
   *   (exactly once, after the handshake succeeded), `onPing(msg)` (answered already),
   *   `onPong(latencyMs)`, `onHeartbeatTimeout(silentMs)`.
   */
  constructor(options, owner) {
    this.options = options;
    this.owner = owner;
    this.info = /** @type {import('./protocol/client_protocol').HandshakeInfo|null} */ (null);
    this.legacy = false;
    this.goingAway = false; // the server's goaway notice came on it (lib/going_away.js)
    this.lastReceived = now();
    this.closed = false;
    this._proto = new ClientProtocol(options);
    this._socket = null;
    this._corkedFrames = 0; // written this tick since the last writev: corked while > 0
    this._corkCap = Infinity; // frames per writev this tick: set by a read of several frames
    this.error = null; // what ended (or is ending) it, when not a plain close: the first socket error, a violation, a revoked credential
    this.refusal = null; // the server's answer refusing the connect, as the handshake rejects with it
    this._handshake = null;
    this._drainWaiters = [];
    this._heartbeatTimer = null;
    this._stage = { connected: false, secured: false }; // TCP connected, TLS handshake done (or no TLS)
  }

  /** @returns {Set<string>} the optional parts of the protocol the handshake granted (§15.1). */
  get features() {
    return this._proto.features;
  }

  /** @returns {number} the largest frame sent (the negotiated limit once open). */
  get sendLimit() {
    return this._proto.sendLimit;
  }

  /** @returns {import('./heartbeat').Heartbeat|null} the heartbeat, when the handshake enabled one. */
  get heartbeat() {
    return this._proto.heartbeat;
  }

  /**
   * Connects and performs the handshake within `timeoutMs`.
   * @param {number} timeoutMs time for TCP connect plus handshake.
   * @returns {Promise<HandshakeInfo>}
   * @throws {NotConnectedError} the TCP connection failed (cause: the socket error).
   * @throws {RequestTimeoutError} no handshake reply in time.
   * @throws {RemoteError} the server refused (e.g. UnauthorizedError).
   */
  open(timeoutMs) {
    return new Promise((resolve, reject) => {
      const { host, port } = this.options;
      // Past setTimeout's ceiling it waits in steps (a plain setTimeout would fire at once).
      const timer = setLongTimeout(() => this.destroy(new RequestTimeoutError(`no handshake with ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
      this._handshake = {
        resolve: (info) => {
          clearLongTimeout(timer);
          this._handshake = null;
          resolve(info);
        },
        reject: (err) => {
          clearLongTimeout(timer);
          this._handshake = null;
          reject(err);
        }
      };
      const { socket, ready } = openSocket(this.options.tls ?? null, host, port, readsInto(this._proto, (chunk) => this._onData(chunk)));
      socket[kConnection] = this;
      this._socket = socket;
      socket.setNoDelay(true).setKeepAlive(true); // §1.5: a frame never waits for Nagle
      socket.once('end', () => socket.destroy()); // the server's EOF: an end() would wait to flush what a peer that stopped reading never takes
      if (this.options.tls) socket.on('data', socketOnData); // else read through onread
      socket.on('error', socketOnError);
      socket.on('close', socketOnClose);
      socket.on('drain', socketOnDrain);
      socket.once('connect', () => (this._stage.connected = true));
      socket.once(ready, () => {
        this._stage.secured = true;
        this._proto.connect();
        this._flush();
      });
    });
  }

  /**
   * Writes one complete frame. Writes made in the same tick are corked and
   * leave in one writev, so a burst of small frames costs one syscall.
   *
   * @param {Buffer|Buffer[]} frame prefix + body (a binary frame: its parts).
   * @param {(err?: Error|null) => void} [onWritten] called once the socket handed the bytes to the OS (or failed to).
   * @returns {boolean} false when the socket buffer is over its high water mark.
   * @throws {ConnectionLostError} the connection is closed.
   */
  write(frame, onWritten) {
    if (this.closed || this._socket.destroyed) throw new ConnectionLostError('the connection is closed');
    const socket = this._socket;
    if (this._corkedFrames === 0) {
      socket.cork();
      process.nextTick(uncork, this);
    } else if (this._corkedFrames >= this._corkCap) {
      this._corkedFrames = 0;
      socket.uncork(); // the frames so far leave now; this tick's uncork still comes
      socket.cork();
    }
    this._corkedFrames++;
    return writeFrame(socket, frame, onWritten); // a binary frame's parts, uncopied, in the same writev (§16)
  }

  /**
   * Encodes and writes one message, in the legacy field set for a version-1
   * server (§10), within the frame size limit in force.
   *
   * @param {object} msg
   * @param {(err?: Error|null) => void} [onWritten] see write().
   * @returns {boolean} see write().
   * @throws {MessageError|FrameTooLargeError} the message cannot be sent.
   * @throws {ConnectionLostError} the connection is closed.
   */
  send(msg, onWritten) {
    if (this.closed || this._socket.destroyed) throw new ConnectionLostError('the connection is closed');
    return this.write(this._proto.encode(msg), onWritten);
  }

  /** The frame send() writes for `msg` (a call that waits for its turn is refused now). @throws {MessageError|FrameTooLargeError} */
  encode(msg) {
    return this._proto.encode(msg);
  }

  /** @returns {boolean} whether a write would reach the socket now. */
  get writable() {
    return !this.closed && this._socket !== null && !this._socket.destroyed;
  }

  /** @returns {boolean} whether the socket's buffer is over its high-water mark, until 'drain'. */
  get needsDrain() {
    return this._socket !== null && this._socket.writableNeedDrain;
  }

  /**
   * Waits for the socket's write buffer to drain, but never past `timeoutMs`.
   * @param {number} [timeoutMs] Infinity (the default) waits as long as it takes.
   * @returns {Promise<boolean>} true once drained (or closed: the close path
   *   takes over), false if the buffer is still full after `timeoutMs`.
   */
  drained(timeoutMs = Infinity) {
    if (this.closed || !this._socket.writableNeedDrain) return Promise.resolve(true);
    if (!(timeoutMs > 0)) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = () => {
        clearLongTimeout(timer);
        resolve(true);
      };
      const expired = () => {
        const i = this._drainWaiters.indexOf(waiter);
        if (i !== -1) this._drainWaiters.splice(i, 1);
        resolve(false);
      };
      const timer = Number.isFinite(timeoutMs) ? setLongTimeout(expired, timeoutMs) : null; // past 2^31-1 ms in steps
      this._drainWaiters.push(waiter);
    });
  }

  /**
   * Closes gracefully: reads no more, flushes what was written, then closes
   * the socket (not only its writing side: `end()` alone is a half-close,
   * and the server answers a half-closed peer's requests in flight before it
   * closes, docs/protocol.md §6.2); destroys it if the flush does not finish
   * within a second.
   * @returns {Promise<void>} resolves once the socket is closed.
   */
  close() {
    if (this.closed) return Promise.resolve();
    this._proto.close();
    this._stopHeartbeat();
    return new Promise((resolve) => {
      this._socket.once('close', () => resolve());
      this._socket.end(() => this._socket.destroy()); // once what was written has gone
      setTimeout(() => this._socket.destroy(), CLOSE_TIMEOUT_MS).unref();
    });
  }

  /**
   * Tears the connection down at once; `err` becomes the close reason.
   * @param {Error} [err]
   */
  destroy(err) {
    if (err && this.error === null) this.error = err;
    if (this._socket) this._socket.destroy();
  }

  /**
   * Handles bytes from the socket: each frame through the protocol, in
   * order; a message to the owner, an event acted on here.
   * @param {Buffer} chunk
   * @private
   */
  _onData(chunk) {
    const t = now();
    this.lastReceived = t;
    const proto = this._proto;
    const bodies = proto.receiveData(chunk, t);
    if (bodies.length > 1) this._corkCap = Math.min(MAX_FRAMES_PER_READ_WRITE, Math.max(1, Math.floor(bodies.length / WRITES_PER_READ)));
    for (let i = 0; i < bodies.length && proto.live && !this.closed; i++) {
      const item = proto.receiveFrame(bodies[i]);
      if (item instanceof Event) this._onEvent(item);
      else this.owner.onMessage(item);
    }
    if (proto.violation !== null) this.destroy(proto.violation.error); // §1.4: fatal
  }

  /**
   * Acts on what the protocol reports.
   * @param {Event} event
   * @private
   */
  _onEvent(event) {
    if (event instanceof PongReceived) this.owner.onPong(event.latencyMs);
    else if (event instanceof PingReceived) {
      this._flush(); // the pong the protocol queued
      this.owner.onPing(event.message);
    } else if (event instanceof InvalidMessage) this.owner.onError(event.error); // skipped: the stream is in sync
    else if (event instanceof Connected) {
      this.info = event.info;
      this.legacy = event.legacy;
      if (this._proto.startHeartbeat(now())) this._scheduleHeartbeat();
      this._handshake.resolve(event.info);
    } else if (event instanceof HandshakeRefused) this.destroy((this.refusal = event.error));
    else if (event instanceof ProtocolViolation) this.destroy(event.error);
  }

  /**
   * Writes what the protocol queued (the connect, pongs, pings).
   * @private
   */
  _flush() {
    const frames = this._proto.dataToSend();
    for (let i = 0; i < frames.length; i++) {
      try {
        this.write(frames[i]);
      } catch {
        return; // closed meanwhile: the close path takes over
      }
    }
  }

  /**
   * Arms the heartbeat timer for the next moment the protocol has something to decide.
   * @private
   */
  _scheduleHeartbeat() {
    const hb = this._proto.heartbeat;
    if (hb === null || this.closed) return;
    // At most setTimeout's ceiling (a longer delay would fire in 1 ms, every ms): _onHeartbeat() polls, then arms the rest.
    this._heartbeatTimer = setTimeout(heartbeatDue, Math.min(MAX_TIMER_MS, Math.max(1, hb.nextCheck(now()))), this);
    this._heartbeatTimer.unref();
  }

  /** @private */
  _stopHeartbeat() {
    clearTimeout(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  /**
   * Pings a silent server, or declares it dead and drops the socket, which
   * starts a reconnection (docs/resilience.md §5: a black hole is noticed
   * within interval + timeout of the last frame).
   * @private
   */
  _onHeartbeat() {
    this._heartbeatTimer = null;
    if (this.closed) return;
    const t = now();
    const action = this._proto.tick(t);
    if (action === HeartbeatAction.DEAD) {
      const silent = t - this._proto.heartbeat.lastReceived;
      this.owner.onHeartbeatTimeout(silent);
      this.destroy(new RequestTimeoutError(`heartbeat timeout: nothing received for ${Math.round(silent)} ms`));
      return;
    }
    if (action === HeartbeatAction.PING) this._flush();
    if (this._proto.live) this._scheduleHeartbeat();
  }

  /**
   * The socket closed: fail the handshake, or tell the owner, exactly once.
   * @private
   */
  _onClose() {
    this.closed = true;
    this._stopHeartbeat();
    this._proto.connectionLost();
    for (const resolve of this._drainWaiters.splice(0)) resolve();
    const err = this.error;
    if (this._handshake !== null) {
      const { host, port } = this.options;
      const reason =
        handshakeFailure(err, { host, port, tls: this.options.tls != null, ...this._stage }) ??
        (err instanceof IpcError
          ? err
          : new NotConnectedError(`cannot connect to ${host}:${port}${err ? `: ${err.message}` : ''}`, { cause: err ?? undefined }));
      this._handshake.reject(reason);
      return;
    }
    this.owner.onClose(err);
  }
}

/** @param {Connection} conn @private */
function heartbeatDue(conn) {
  conn._onHeartbeat();
}

/** @this {net.Socket} @param {Buffer} chunk @private */
function socketOnData(chunk) {
  this[kConnection]._onData(chunk);
}

/** Keeps the first error as the close reason; 'close' follows. @this {net.Socket} @param {Error} err @private */
function socketOnError(err) {
  const conn = this[kConnection];
  if (conn.error === null) conn.error = err;
  this.destroy(); // a TLS alert leaves the socket open until the peer closes it
}

/** @this {net.Socket} @private */
function socketOnClose() {
  this[kConnection]._onClose();
}

/** @this {net.Socket} @private */
function socketOnDrain() {
  for (const resolve of this[kConnection]._drainWaiters.splice(0)) resolve();
}

/** Flushes the writes corked during this tick. @param {Connection} conn @private */
function uncork(conn) {
  conn._corkedFrames = 0;
  conn._corkCap = Infinity;
  if (!conn.closed) conn._socket.uncork();
}

module.exports = { Connection, now };
