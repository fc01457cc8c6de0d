'use strict';

/**
 * The client's side of one protocol connection, sans-I/O: the handshake
 * (docs/protocol.md §3) with version detection (§10), the frame limit it
 * negotiates (§1), the heartbeat it enables (§9), and what a client does
 * with frames it cannot use. The Node twin of the Python core's
 * ClientProtocol; lib/connection.js pumps a socket through it.
 *
 *     const proto = new ClientProtocol({ appId, connectionId, token, maxFrameSize });
 *     proto.connect();                   // queues the connect request
 *     write(proto.dataToSend());
 *     ... receiveData / receiveFrame: Connected (state open), or
 *         HandshakeRefused / ProtocolViolation (state error: the pump closes)
 *     proto.startHeartbeat(now);         // after Connected: true if pings are due
 *     proto.tick(now);                   // the base's heartbeat: PING queued, or DEAD
 *
 * The names and events are those of ipc_protocol/client_protocol.py; what
 * differs is what each client did before this module: a frame other than
 * the connect's reply before it is a violation here (Python hands it to
 * its pump), and a bad envelope is InvalidMessage (Python: a violation).
 * A binary frame the server did not grant, or whose attachments do not fit
 * its envelope (AttachmentError), is a violation in both (§16.1 item 2).
 *
 * A client reports what the server got wrong and closes; it never answers
 * with an error frame (`sendsErrorFrames` is false): the server is not
 * told, as before this module existed. A frame that is JSON but no valid
 * envelope leaves the stream in sync: it is reported (InvalidMessage) and
 * skipped, before the handshake as after it.
 */

const { CLIENT_NAME, PROTOCOL_VERSION, SYSTEM_CHANNEL, DEFAULT_MAX_FRAME_SIZE_BYTES } = require('../constants');
const { buildMessage, decodeMessage } = require('../envelope');
const { Heartbeat } = require('../heartbeat');
const { FramingFailure } = require('../framing');
const { FrameError, FrameTooLargeError, MessageError, errorFromWire } = require('../errors');
const { Protocol, Event, ProtocolState } = require('./protocol');
const { negotiate } = require('./streams');
const { AttachmentError } = require('./payload_paths');
const { CLUSTER, clusterOf } = require('./cluster_info');

/** The heartbeat interval when the server does not advertise one (§9.3), ms. */
const DEFAULT_HEARTBEAT_INTERVAL_MS = 15_000;

/**
 * @typedef {object} HandshakeInfo
 * @property {string} connectionId the server's name for the connection.
 * @property {number} protocol 2, or 1 for a legacy server (§10).
 * @property {string|null} server the server's name/version.
 * @property {number|null} heartbeatIntervalMs the server's advertised interval; 0 = heartbeats off, null = not advertised.
 * @property {number|null} maxFrameSize the largest frame this side sends (`sendLimit`); what it
 *   accepts is the protocol's `maxFrameSize`: the same, or a 2.0.0 server's own advertised limit.
 * @property {boolean} legacy true for a version-1 server.
 * @property {boolean} negotiates the reply carried `features` (§15.1): the server knows §15.1 and
 *   what came with it (§12.3, §6.6, §1.1); false is a 2.0.0 (or version-1) server.
 * @property {boolean} keysPerUser the server scopes idempotency keys per user
 *   (a users file, §3 item 2): a responder cannot tell whose keyed request it serves (§6.6 item 10).
 */

/**
 * The server accepted the connect: the state is `open`. The fields are
 * Python's `Connected`; `info` gathers them as the client reports them.
 */
class Connected extends Event {
  /**
   * @param {object} message the reply.
   * @param {HandshakeInfo} info
   */
  constructor(message, info) {
    super();
    this.message = message;
    this.serverInfo = message.payload;
    this.legacy = info.legacy;
    this.negotiates = info.negotiates;
    this.connectionId = info.connectionId;
    this.maxFrameSize = info.maxFrameSize;
    this.heartbeatIntervalMs = info.heartbeatIntervalMs;
    this.info = info;
  }
}

/**
 * The server refused the connect (e.g. `unauthorized`), or answered it
 * with something else than `connected`: `error` is the typed error. The
 * state is `error`; the pump closes.
 */
class HandshakeRefused extends Event {
  /**
   * @param {object} message the reply.
   * @param {Error} error the typed error.
   */
  constructor(message, error) {
    super();
    this.message = message;
    this.error = error;
  }
}

/** A frame that is JSON but no valid envelope: reported and skipped, the connection stays. */
class InvalidMessage extends Event {
  /** @param {Error} error the MessageError. */
  constructor(error) {
    super();
    this.error = error;
  }
}

/**
 * One client connection's protocol state.
 */
class ClientProtocol extends Protocol {
  /**
   * @param {object} options
   * @param {string} options.appId
   * @param {string} options.connectionId proposed connection id.
   * @param {string|null} [options.token]
   * @param {string|null} [options.user] the user the token belongs to (docs/security.md §3).
   * @param {number|null} [options.maxFrameSize] local cap; null: the server's value.
   * @param {number|null} [options.heartbeatInterval] ms; null: the server's advertised one.
   * @param {number|null} [options.heartbeatTimeout] ms; null: twice the interval.
   * @param {string[]|null} [options.features] the optional parts of the protocol to ask for (§15.1);
   *   null asks for none, and the connect is §3's byte for byte. Once open, `features` holds those granted.
   */
  constructor({ appId, connectionId, token = null, user = null, maxFrameSize = null, heartbeatInterval = null, heartbeatTimeout = null, features = null }) {
    // §1: before the handshake, and for good against a version-1 server,
    // the local limit if set, else the default.
    // Until the reply says whether the server read ours, accept what a server at its
    // default may send: the reply then lowers it, or raises it no further (§12.3), so
    // what came in one read with the reply meets the limit it would meet read later.
    super({ maxFrameSize: Math.max(maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE_BYTES, DEFAULT_MAX_FRAME_SIZE_BYTES) });
    this.sendLimit = maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE_BYTES;
    this.appId = appId;
    this.connectionId = connectionId;
    this.token = token;
    this.user = user;
    this.localMaxFrameSize = maxFrameSize;
    this.heartbeatInterval = heartbeatInterval;
    this.heartbeatTimeout = heartbeatTimeout;
    this.sendsErrorFrames = false;
    /** @type {HandshakeInfo|null} once open */
    this.info = null;
    this._connectId = null;
    this._offered = features;
    /** Once open: the reply carried `features`; a 2.0.0 server's has none (§15.1 item 3). */
    this.negotiates = false;
  }

  /**
   * Queues the connect request (§3.1).
   * @returns {string} its message_id.
   */
  connect() {
    const hello = buildMessage('request', this.appId, SYSTEM_CHANNEL, {
      action: 'connect',
      connection_id: this.connectionId,
      protocol: PROTOCOL_VERSION,
      client: CLIENT_NAME,
      ...(this.user != null ? { user: this.user } : {}),
      ...(this.token != null ? { token: this.token } : {}),
      // Our own receive limit: the server sends nothing larger (§3, §12).
      ...(this.localMaxFrameSize != null ? { max_frame_size: this.localMaxFrameSize } : {}),
      // §15.1: only when asked, so the connect is otherwise §3's.
      ...(this._offered !== null ? { features: [...this._offered] } : {})
    });
    this._connectId = hello.message_id;
    this.send(hello);
    return hello.message_id;
  }

  /**
   * The base's receiveFrame, the frame first held to the limit the
   * handshake agreed: one read in the same chunk as the reply was split off
   * under the limit before it, and the split must not change the outcome
   * (§1 items 1-2).
   * @param {Buffer} frame
   * @returns {object|Event}
   */
  receiveFrame(frame) {
    if (frame.length > this.maxFrameSize && this.state === ProtocolState.OPEN) {
      return this._violatedBy(new FrameTooLargeError(frame.length, this.maxFrameSize), null);
    }
    return super.receiveFrame(frame);
  }

  /**
   * The handshake's reply (§3.2, §3.7); a 1.1.x server answers the connect
   * with reply_to null (§10).
   * @param {Buffer} frame
   * @returns {Event}
   * @protected
   */
  _receiveBeforeOpen(frame) {
    let msg;
    try {
      msg = decodeMessage(frame);
    } catch (err) {
      return this._invalidFrame(frame, err);
    }
    const answersConnect = msg.reply_to === null || (this._connectId !== null && msg.reply_to === this._connectId);
    if (msg.message_type !== 'response' || !answersConnect) {
      return this._violatedBy(new MessageError(`unexpected ${msg.message_type} frame before the handshake reply`), msg);
    }
    const p = msg.payload && typeof msg.payload === 'object' ? msg.payload : {};
    const legacyError = !msg.error && p.error && typeof p.error === 'object' ? p.error : null;
    if (msg.error || legacyError) return this._refused(msg, errorFromWire(msg.error || legacyError));
    if (p.status !== 'connected') {
      return this._refused(msg, new MessageError(`unexpected handshake reply ${JSON.stringify(p).slice(0, 200)}`));
    }
    return new Connected(msg, this._accept(p));
  }

  /**
   * Keeps a heartbeat from `now` on the pump's clock, if one is due (§9.2):
   * the server's advertised interval unless the options set one (half
   * `heartbeatTimeout` if that is not over it: Heartbeat). A version-1
   * server is never pinged (§10), nor a server advertising 0 (heartbeats
   * off) unless `heartbeatInterval` is set.
   * @param {number} now
   * @returns {boolean} whether one is kept (then call tick()).
   */
  startHeartbeat(now) {
    if (this.state !== ProtocolState.OPEN || this.legacy) return false;
    const advertised = this.info.heartbeatIntervalMs;
    if (this.heartbeatInterval === null && advertised === 0) return false;
    const interval = this.heartbeatInterval ?? advertised ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    const timeout = this.heartbeatTimeout ?? Math.max(2 * interval, interval + 1);
    this.heartbeat = new Heartbeat(interval, timeout, now);
    return true;
  }

  /**
   * @param {object} msg the reply.
   * @param {Error} error
   * @returns {HandshakeRefused}
   * @private
   */
  _refused(msg, error) {
    this._move(ProtocolState.ERROR);
    return new HandshakeRefused(msg, error);
  }

  /**
   * The connection is open: version, frame limit, heartbeat.
   * @param {object} p the reply's payload.
   * @returns {HandshakeInfo}
   * @private
   */
  _accept(p) {
    const legacy = p.protocol === undefined;
    // Today's server answers a connect that asked with a features list (maybe
    // empty); a 2.0.0 server's reply has none: it knows nothing of §15.1.
    const negotiates = !legacy && Array.isArray(p.features);
    const advertised = Number.isInteger(p.max_frame_size) && p.max_frame_size > 0 ? p.max_frame_size : null;
    const local = this.localMaxFrameSize;
    const limit = advertised === null ? local ?? DEFAULT_MAX_FRAME_SIZE_BYTES : Math.min(local ?? Infinity, advertised);
    // Send no more than both sides allow; accept as much from a server that honours
    // ours, up to its own limit from one that never read it (§12.3).
    const accepted = negotiates || advertised === null ? limit : Math.min(advertised, Math.max(limit, DEFAULT_MAX_FRAME_SIZE_BYTES));
    const interval =
      typeof p.heartbeat_interval_ms === 'number' && Number.isFinite(p.heartbeat_interval_ms) && p.heartbeat_interval_ms >= 0
        ? p.heartbeat_interval_ms
        : null;
    this.legacy = legacy;
    this.negotiates = negotiates;
    // No number that overflows a double in what a server that negotiates sends;
    // a 2.0.0 server relays a 309-digit integer as it came (§1.1).
    this.screened = negotiates;
    this.sendLimit = limit;
    this.maxFrameSize = accepted;
    if (this._offered !== null && !legacy && Array.isArray(p.features)) {
      // What both sides speak; a server older than §15 says nothing: none.
      this.features = new Set(negotiate(p.features.filter((f) => typeof f === 'string'), this._offered));
    }
    this.info = Object.freeze({
      connectionId: typeof p.connection_id === 'string' ? p.connection_id : this.connectionId,
      protocol: legacy ? 1 : p.protocol,
      server: typeof p.server === 'string' ? p.server : null,
      heartbeatIntervalMs: interval,
      maxFrameSize: limit,
      legacy,
      negotiates,
      cluster: this.features.has(CLUSTER) ? clusterOf(p) : null, // §3 item 10
      keysPerUser: !legacy && p.users === true // §3 item 2, §6.6 item 10
    });
    this._move(ProtocolState.OPEN);
    return this.info;
  }

  /**
   * Bad JSON desynchronises nothing we could trust: a violation (§1.4). A
   * bad envelope is the server's mistake on one message: reported, skipped.
   * Binary frames the server did not grant, or attachments that do not fit,
   * break the protocol (§16.1 item 2): a violation, as in Python; waiting
   * for the answer such a frame stood for would only end at its deadline.
   * @param {Buffer} frame
   * @param {Error} err
   * @returns {Event}
   * @protected
   */
  _invalidFrame(frame, err) {
    if (frame instanceof FramingFailure) return this._violatedBy(frame.error, null);
    if (err instanceof FrameError || err instanceof AttachmentError) return this._violatedBy(err, null);
    return new InvalidMessage(err);
  }

  /**
   * A server that sends a frame of §15 it did not grant broke the protocol
   * (§15.1 item 4): a violation, as for a binary frame not granted (§16.1)
   * and as the Python client takes it.
   * @param {object} msg
   * @param {string} text
   * @returns {Event}
   * @protected
   */
  _flowRefused(msg, text) {
    return this._violated('bad_message', text, msg.message_id ?? null, msg, null);
  }

  /**
   * @param {Error} err a typed IpcError.
   * @param {object|null} msg
   * @returns {Event}
   * @private
   */
  _violatedBy(err, msg) {
    return this._violated(err.code, err.message, null, msg, err);
  }
}

module.exports = { ClientProtocol, Connected, HandshakeRefused, InvalidMessage, DEFAULT_HEARTBEAT_INTERVAL_MS };
