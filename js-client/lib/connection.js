'use strict';

/**
 * One TCP connection to the server: socket <-> frame decoder <-> envelope,
 * plus the handshake (docs/protocol.md §3).
 *
 * It has one rhythm: bytes in -> decoder -> messages out to the owner's
 * `onMessage`; frames in -> one socket write each. It knows nothing about
 * requests, subscriptions or reconnection; the client owns those. Socket
 * listeners are module-level functions that find their connection through a
 * symbol, so no closures are created per connection (as in `ws`).
 */

const net = require('node:net');
const { performance } = require('node:perf_hooks');
const {
  CLIENT_NAME,
  PROTOCOL_VERSION,
  SYSTEM_CHANNEL,
  DEFAULT_MAX_FRAME_SIZE_BYTES
} = require('./constants');
const { buildMessage, decodeMessage, encodeMessage } = require('./envelope');
const { FrameDecoder, encodeFrame } = require('./framing');
const {
  ConnectionLostError,
  FrameError,
  IpcError,
  MessageError,
  NotConnectedError,
  RequestTimeoutError,
  errorFromWire
} = require('./errors');

const kConnection = Symbol('kConnection');
const CLOSE_TIMEOUT_MS = 1000;
/** setTimeout's ceiling; a longer wait gets no timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A monotonic clock in milliseconds (timers must not follow wall-clock jumps).
 * @returns {number}
 */
function now() {
  return performance.now();
}

/**
 * @typedef {object} HandshakeInfo
 * @property {string} connectionId the server's name for the connection.
 * @property {number} protocol 2, or 1 for a legacy server (§10).
 * @property {string|null} server the server's name/version.
 * @property {number|null} heartbeatIntervalMs the server's advertised interval; 0 = heartbeats off, null = not advertised.
 * @property {number|null} maxFrameSize the server's advertised limit.
 * @property {boolean} legacy true for a version-1 server.
 */

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
   * @param {number|null} options.maxFrameSize local cap, or null for the server's value.
   * @param {{onMessage: (msg: object) => void, onError: (err: Error) => void, onClose: (err: Error|null) => void}} owner
   *   callbacks; `onClose` is called exactly once, after the handshake succeeded.
   */
  constructor(options, owner) {
    this.options = options;
    this.owner = owner;
    this.info = null;
    this.legacy = false;
    this.lastReceived = now();
    this.closed = false;
    this.sendLimit = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE_BYTES;
    this._decoder = new FrameDecoder({ maxFrameSize: options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE_BYTES });
    this._socket = null;
    this._corked = false;
    this._error = null;
    this._handshake = null;
    this._drainWaiters = [];
  }

  /**
   * Connects and performs the handshake within `timeoutMs`.
   *
   * @param {number} timeoutMs time for TCP connect plus handshake.
   * @returns {Promise<HandshakeInfo>}
   * @throws {NotConnectedError} the TCP connection failed (cause: the socket error).
   * @throws {RequestTimeoutError} no handshake reply in time.
   * @throws {RemoteError} the server refused (e.g. UnauthorizedError).
   */
  open(timeoutMs) {
    return new Promise((resolve, reject) => {
      const { host, port } = this.options;
      const hello = buildMessage('request', this.options.appId, SYSTEM_CHANNEL, {
        action: 'connect',
        connection_id: this.options.connectionId,
        protocol: PROTOCOL_VERSION,
        client: CLIENT_NAME,
        ...(this.options.token != null ? { token: this.options.token } : {})
      });
      const timer = setTimeout(() => {
        this.destroy(new RequestTimeoutError(`no handshake with ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      this._handshake = {
        id: hello.message_id,
        resolve: (info) => {
          clearTimeout(timer);
          this._handshake = null;
          resolve(info);
        },
        reject: (err) => {
          clearTimeout(timer);
          this._handshake = null;
          reject(err);
        }
      };
      // Every address of a name, in turn: 'localhost' may resolve to ::1
      // first while the server listens on 127.0.0.1 (Node 20 does this by
      // default; Node 18 needs it asked for).
      const socket = net.connect({ host, port, autoSelectFamily: true });
      socket[kConnection] = this;
      this._socket = socket;
      socket.setNoDelay(true); // §1.5: a frame never waits for Nagle
      socket.setKeepAlive(true);
      socket.on('data', socketOnData);
      socket.on('error', socketOnError);
      socket.on('close', socketOnClose);
      socket.on('drain', socketOnDrain);
      socket.once('connect', () => this.write(encodeFrame(encodeMessage(hello))));
    });
  }

  /**
   * Writes one complete frame. Writes made in the same tick are corked and
   * leave in one writev, so a burst of small frames costs one syscall.
   *
   * @param {Buffer} frame prefix + body.
   * @param {(err?: Error|null) => void} [onWritten] called once the socket handed the bytes to the OS (or failed to).
   * @returns {boolean} false when the socket buffer is over its high water mark.
   * @throws {ConnectionLostError} the connection is closed.
   */
  write(frame, onWritten) {
    if (this.closed || this._socket.destroyed) throw new ConnectionLostError('the connection is closed');
    const socket = this._socket;
    if (!this._corked) {
      this._corked = true;
      socket.cork();
      process.nextTick(uncork, this);
    }
    return onWritten === undefined ? socket.write(frame) : socket.write(frame, onWritten);
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
    return this.write(encodeFrame(encodeMessage(msg, { legacy: this.legacy }), this.sendLimit), onWritten);
  }

  /**
   * Whether a write would reach the socket now.
   * @returns {boolean}
   */
  get writable() {
    return !this.closed && this._socket !== null && !this._socket.destroyed;
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
        clearTimeout(timer);
        resolve(true);
      };
      const timer =
        timeoutMs <= MAX_TIMER_MS
          ? setTimeout(() => {
              const i = this._drainWaiters.indexOf(waiter);
              if (i !== -1) this._drainWaiters.splice(i, 1);
              resolve(false);
            }, timeoutMs)
          : null;
      this._drainWaiters.push(waiter);
    });
  }

  /**
   * Closes gracefully: flushes what was written, then ends the socket;
   * destroys it if the peer does not close within a second.
   * @returns {Promise<void>} resolves once the socket is closed.
   */
  close() {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this._socket.once('close', () => resolve());
      this._socket.end();
      setTimeout(() => this._socket.destroy(), CLOSE_TIMEOUT_MS).unref();
    });
  }

  /**
   * Tears the connection down at once; `err` becomes the close reason.
   * @param {Error} [err]
   */
  destroy(err) {
    if (err && this._error === null) this._error = err;
    if (this._socket) this._socket.destroy();
  }

  /**
   * Handles bytes from the socket: any byte is a sign of life (§9.2).
   * @param {Buffer} chunk
   * @private
   */
  _onData(chunk) {
    this.lastReceived = now();
    let bodies;
    try {
      bodies = this._decoder.feed(chunk);
    } catch (err) {
      this.destroy(err); // §1.4: framing errors are fatal
      return;
    }
    for (let i = 0; i < bodies.length && !this.closed; i++) {
      let msg;
      try {
        msg = decodeMessage(bodies[i]);
      } catch (err) {
        if (err instanceof FrameError) {
          this.destroy(err);
          return;
        }
        // A bad envelope does not desynchronise the stream: report, skip.
        this.owner.onError(err);
        continue;
      }
      if (this._handshake !== null) this._onHandshakeReply(msg);
      else this.owner.onMessage(msg);
    }
  }

  /**
   * Completes the handshake from the connect reply (§3.2, §3.7).
   * @param {object} msg
   * @private
   */
  _onHandshakeReply(msg) {
    // A 1.1.x server answers the connect with reply_to null (§10).
    const answersConnect = msg.reply_to === this._handshake.id || msg.reply_to === null;
    if (msg.message_type !== 'response' || !answersConnect) {
      this.destroy(new MessageError(`unexpected ${msg.message_type} frame before the handshake reply`));
      return;
    }
    const p = msg.payload && typeof msg.payload === 'object' ? msg.payload : {};
    const legacyError = !msg.error && p.error && typeof p.error === 'object' ? p.error : null;
    if (msg.error || legacyError) {
      this.destroy(errorFromWire(msg.error || legacyError));
      return;
    }
    if (p.status !== 'connected') {
      this.destroy(new MessageError(`unexpected handshake reply ${JSON.stringify(p).slice(0, 200)}`));
      return;
    }
    const legacy = p.protocol === undefined;
    const advertised = Number.isInteger(p.max_frame_size) && p.max_frame_size > 0 ? p.max_frame_size : null;
    const local = this.options.maxFrameSize;
    const limit = advertised === null ? local ?? DEFAULT_MAX_FRAME_SIZE_BYTES : Math.min(local ?? Infinity, advertised);
    this.legacy = legacy;
    this.sendLimit = limit;
    this._decoder.maxFrameSize = limit;
    this.info = Object.freeze({
      connectionId: typeof p.connection_id === 'string' ? p.connection_id : this.options.connectionId,
      protocol: legacy ? 1 : p.protocol,
      server: typeof p.server === 'string' ? p.server : null,
      heartbeatIntervalMs:
        typeof p.heartbeat_interval_ms === 'number' && Number.isFinite(p.heartbeat_interval_ms) && p.heartbeat_interval_ms >= 0
          ? p.heartbeat_interval_ms
          : null,
      maxFrameSize: limit,
      legacy
    });
    this._handshake.resolve(this.info);
  }

  /**
   * The socket closed: fail the handshake, or tell the owner, exactly once.
   * @private
   */
  _onClose() {
    this.closed = true;
    for (const resolve of this._drainWaiters.splice(0)) resolve();
    const err = this._error;
    if (this._handshake !== null) {
      const { host, port } = this.options;
      const reason =
        err instanceof IpcError
          ? err
          : new NotConnectedError(`could not connect to ${host}:${port}${err ? `: ${err.message}` : ''}`, { cause: err ?? undefined });
      this._handshake.reject(reason);
      return;
    }
    this.owner.onClose(err);
  }
}

/**
 * @this {net.Socket}
 * @param {Buffer} chunk
 * @private
 */
function socketOnData(chunk) {
  this[kConnection]._onData(chunk);
}

/**
 * Keeps the first error as the close reason; 'close' always follows.
 * @this {net.Socket}
 * @param {Error} err
 * @private
 */
function socketOnError(err) {
  const conn = this[kConnection];
  if (conn._error === null) conn._error = err;
}

/**
 * @this {net.Socket}
 * @private
 */
function socketOnClose() {
  this[kConnection]._onClose();
}

/**
 * @this {net.Socket}
 * @private
 */
function socketOnDrain() {
  for (const resolve of this[kConnection]._drainWaiters.splice(0)) resolve();
}

/**
 * Flushes the writes corked during this tick.
 * @param {Connection} conn
 * @private
 */
function uncork(conn) {
  conn._corked = false;
  if (!conn.closed) conn._socket.uncork();
}

module.exports = { Connection, now };
