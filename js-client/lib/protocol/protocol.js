'use strict';

/**
 * One protocol connection, sans-I/O: bytes in, messages and events out,
 * frames to send out (docs/protocol.md §1-§3, §6.4, §9). The Node twin of
 * ipc_protocol/protocol.py, with the same names (camelCase), states,
 * transition table and events; the role adds its handshake
 * (client_protocol.js). Nothing here does I/O or reads a clock: the pump
 * (lib/connection.js) feeds the bytes it read, acts on what comes back,
 * writes what is queued, and passes its clock in.
 *
 *     const frames = proto.receiveData(chunk, now);   // complete frame bodies, in order
 *     for (const frame of frames) {
 *       if (!proto.live) break;                       // failed or closed: read no more
 *       const item = proto.receiveFrame(frame);       // a message (route it) or an Event
 *     }
 *     write(proto.dataToSend());                      // frames queued since the last call
 *
 *     proto.send(message)   proto.sendFrame(frame)   proto.encode(message)
 *     proto.fail(code, text, replyTo)   proto.close()   proto.connectionLost()
 *     proto.tick(now)       // heartbeat (§9): queues a ping, or says the peer is dead
 *
 * Two steps, receiveData then receiveFrame per frame, so that a frame is
 * applied only when the pump reaches it: what the pump writes in answer to
 * one message goes out before anything the core queues for the next. An
 * ordinary message comes back as itself, with no event object around it:
 * it is nearly all the traffic.
 *
 * States, every move checked against TRANSITIONS:
 *
 *     handshake -> open -> closing -> closed
 *         \          \
 *          +----------+--> error   (sticky: nothing more is read)
 */

const { SYSTEM_CHANNEL, DEFAULT_MAX_FRAME_SIZE_BYTES } = require('../constants');
const { buildMessage, decodeMessage } = require('../envelope');
const { FrameDecoder, FramingFailure } = require('../framing');
const { HeartbeatAction } = require('../heartbeat');
const { MessageError, FrameError } = require('../errors');
const { Event, PingReceived, PongReceived, MessageRefused, ProtocolViolation } = require('./events');
const { FLOW_TYPES, flowProblem } = require('./streams');
const { peekMessageId } = require('../json_profile');
const { BINARY, BINARY_MARKER, decodeBinaryFrame, encodeOutgoing, writeFrame } = require('./attachments');

/** The state of one protocol connection (the same strings in every language). */
const ProtocolState = Object.freeze({
  HANDSHAKE: 'handshake',
  OPEN: 'open',
  CLOSING: 'closing',
  CLOSED: 'closed',
  ERROR: 'error'
});

const { HANDSHAKE, OPEN, CLOSING, CLOSED, ERROR } = ProtocolState;

/**
 * The one table of legal moves. `error` and `closed` are final: after a
 * violation the byte stream cannot be trusted again (§1.4).
 */
const TRANSITIONS = Object.freeze({
  [HANDSHAKE]: Object.freeze([OPEN, CLOSING, CLOSED, ERROR]),
  [OPEN]: Object.freeze([CLOSING, CLOSED, ERROR]),
  [CLOSING]: Object.freeze([CLOSED]),
  [CLOSED]: Object.freeze([]),
  [ERROR]: Object.freeze([])
});

/** A move the state table forbids: a bug in the caller, never the peer's doing. */
class ProtocolStateError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolStateError';
  }
}

/** The state and rules of one connection, shared by the roles. */
class Protocol {
  /**
   * @param {{maxFrameSize?: number|null}} [options] largest frame body
   *   accepted, checked on the length prefix (§1); null: the protocol maximum.
   */
  constructor({ maxFrameSize = DEFAULT_MAX_FRAME_SIZE_BYTES } = {}) {
    this.state = HANDSHAKE;
    this.appId = ''; // the handshake's, once open
    this.legacy = false; // the peer speaks version 1: send only its fields (§10)
    this.screened = false; // the peer refuses numbers that overflow a double on the way in (a version-2 server, §1.1)
    /** @type {Heartbeat|null} set by the role when the handshake enables it */
    this.heartbeat = null;
    /** @type {ProtocolViolation|null} why the state is `error` */
    this.violation = null;
    /** The pump's clock at the last read (any byte proves the peer alive, §9.2). */
    this.lastReceived = null;
    /** Whether the peer is told of a violation with an error frame (the server's rule, §6.4). */
    this.sendsErrorFrames = true;
    /** Largest frame sent; a role lowers it to what the handshake agreed. */
    this.sendLimit = maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE_BYTES;
    this.live = true; // state is handshake or open, kept as a flag for the hot paths
    this._decoder = new FrameDecoder({ maxFrameSize });
    this._out = [];
    this._pings = new Map(); // unanswered pings: message_id -> sent at
    /** @type {Set<string>} what the handshake granted (§15.1) */
    this.features = new Set();
  }

  /** @returns {number} the largest frame body accepted. */
  get maxFrameSize() {
    return this._decoder.maxFrameSize;
  }

  /** @param {number} limit a role may change it once the handshake agreed on one. */
  set maxFrameSize(limit) {
    this._decoder.maxFrameSize = limit;
  }

  /**
   * Where the pump's next read should land: `fallback`, or the rest of a
   * large frame's own buffer, so that its bytes are read in place instead
   * of copied (feed the part read to receiveData()).
   * @template T
   * @param {T} fallback
   * @returns {Buffer|T}
   */
  readBuffer(fallback) {
    return this._decoder.readBuffer(fallback);
  }

  /**
   * Feeds bytes as read; returns the frame bodies they complete. A framing
   * violation (§1.4) fails the connection and returns none; `violation` says why.
   * @param {Buffer} data
   * @param {number} [now] the pump's clock.
   * @returns {Buffer[]}
   */
  receiveData(data, now) {
    if (!this.live) return [];
    if (now !== undefined) {
      this.lastReceived = now;
      if (this.heartbeat !== null) this.heartbeat.received(now);
    }
    try {
      return this._decoder.feed(data);
    } catch (err) {
      this._violated(err.code, err.message, null, null, err);
      return [];
    }
  }

  /**
   * Decodes one frame and applies the protocol's rules to it: the message
   * itself when it is the pump's to route, else an Event. Only while live.
   * @param {Buffer} frame
   * @returns {object|Event}
   */
  receiveFrame(frame) {
    if (this.state !== OPEN) {
      if (this.state !== HANDSHAKE) throw new ProtocolStateError(`nothing is read in state ${this.state}`);
      return this._receiveBeforeOpen(frame);
    }
    let msg;
    try {
      msg = frame[0] === BINARY_MARKER ? decodeBinaryFrame(frame, this.features.has(BINARY)) : decodeMessage(frame, this.screened); // §16.2
    } catch (err) {
      return this._invalidFrame(frame, err);
    }
    const flow = FLOW_TYPES.has(msg.message_type) || msg.window !== undefined ? flowProblem(msg, this.features) : null; // §15
    if (flow !== null) return this._flowRefused(msg, flow);
    if (msg.channel_id === SYSTEM_CHANNEL) return this._systemMessage(msg) ?? msg;
    return msg;
  }

  /**
   * Queues `message`, encoded for the peer's version.
   * @param {object} message
   * @returns {number} frames now queued; 0 when the connection no longer sends.
   * @throws {MessageError|FrameTooLargeError} (before queueing) it cannot be sent.
   */
  send(message) {
    if (!this.live) return 0;
    return this.sendFrame(this.encode(message));
  }

  /**
   * The frame of `message` for this connection (its version, its limit),
   * not queued: the pump's own send path writes it at once.
   * @param {object} message
   * @returns {Buffer|Buffer[]} a binary frame's parts are written as they are (writeFrame).
   */
  encode(message) {
    return encodeOutgoing(message, this); // a binary frame when the payload holds bytes (§16)
  }

  /**
   * Queues an encoded frame (prefix included) as is.
   * @param {Buffer} frame
   * @returns {number} frames now queued; 0 when the connection no longer sends.
   */
  sendFrame(frame) {
    if (!this.live) return 0;
    this._out.push(frame);
    return this._out.length;
  }

  /** @returns {number} frames waiting for dataToSend(). */
  get framesQueued() {
    return this._out.length;
  }

  /**
   * The frames queued since the last call, oldest first; the caller owns the list.
   * @returns {Buffer[]}
   */
  dataToSend() {
    const out = this._out;
    if (out.length === 0) return out;
    this._out = [];
    return out;
  }

  /**
   * Moves to `error`, queueing the typed error frame (§6.4) where the role
   * sends one; the pump writes what is queued, then closes. Nothing once
   * the connection no longer sends.
   * @param {string} code
   * @param {string} text
   * @param {string|null} [replyTo]
   * @returns {ProtocolViolation|null}
   */
  fail(code, text, replyTo = null) {
    return this.live ? this._violated(code, text, replyTo, null, null) : null;
  }

  /** Stops reading and sending: `closing`. Nothing once closing or ended. */
  close() {
    if (this.live) this._move(CLOSING);
  }

  /** The socket is gone: `closed` (an `error` stays one); nothing queued will be sent. */
  connectionLost() {
    if (this.state !== ERROR && this.state !== CLOSED) this._move(CLOSED);
    this._out = [];
  }

  /**
   * Heartbeat on the pump's clock: PING when a ping was queued, DEAD when
   * the peer has been silent past the timeout (the pump closes).
   * @param {number} now
   * @returns {'none'|'ping'|'dead'}
   */
  tick(now) {
    const hb = this.heartbeat;
    if (hb === null || this.state !== OPEN) return HeartbeatAction.NONE;
    const action = hb.poll(now);
    if (action === HeartbeatAction.PING) this.sendPing(now);
    return action;
  }

  /**
   * Queues a `system` ping; its pong comes back as PongReceived.
   * @param {number|null} [now]
   * @returns {string} its message_id.
   */
  sendPing(now = null) {
    const ping = buildMessage('request', this.appId, SYSTEM_CHANNEL, { action: 'ping' });
    this._pings.set(ping.message_id, now);
    this.send(ping);
    return ping.message_id;
  }

  /**
   * Answers `msg` with an error response (a notification gets none).
   * @param {object} msg
   * @param {string} code
   * @param {string} text
   * @returns {MessageRefused}
   */
  refuse(msg, code, text) {
    // Every type but a notification expects an answer (as the Python base).
    if (msg.message_type !== 'notification') {
      this.send(buildMessage('response', msg.app_id, msg.channel_id, null, { reply_to: msg.message_id, error: { code, message: text } }));
    }
    return new MessageRefused(msg, code, text);
  }

  /** @returns {string} */
  toString() {
    return `<${this.constructor.name} ${this.state} app=${JSON.stringify(this.appId)} v${this.legacy ? 1 : 2} queued=${this._out.length}>`;
  }

  /**
   * The role's handshake.
   * @param {Buffer} frame
   * @returns {object|Event}
   * @protected
   */
  _receiveBeforeOpen(frame) {
    throw new ProtocolStateError(`${this.constructor.name} has no handshake`);
  }

  /**
   * A frame that is no valid message: a violation.
   * @param {Buffer} frame
   * @param {Error} err from decodeMessage().
   * @returns {Event}
   * @protected
   */
  _invalidFrame(frame, err) {
    if (frame instanceof FramingFailure) return this._violated(frame.error.code, frame.error.message, null, null, frame.error);
    return this._violated(err.code, err.message, peekMessageId(frame), null, err);
  }

  /**
   * What the core answers itself on `system` (§8, §9): pings and pongs;
   * anything else (undefined) is the pump's.
   * @param {object} msg
   * @returns {Event|undefined}
   * @protected
   */
  _systemMessage(msg) {
    const type = msg.message_type;
    if (type === 'response') {
      if (this._pings.size === 0 || !this._pings.has(msg.reply_to)) return undefined;
      const sentAt = this._pings.get(msg.reply_to);
      this._pings.clear(); // one answer proves the peer alive for all of them
      let latency = null;
      const hb = this.heartbeat;
      if (hb !== null && sentAt !== null) {
        hb.pongReceived(hb.lastReceived); // the clock of the read that brought it
        latency = hb.latencyMs;
      }
      return new PongReceived(msg, latency);
    }
    const payload = msg.payload;
    if ((type === 'request' || type === 'notification') && payload !== null && typeof payload === 'object' && !Array.isArray(payload)) {
      if (payload.action === 'ping') {
        if (type === 'request') {
          this.send(buildMessage('response', this.appId, SYSTEM_CHANNEL, { status: 'pong' }, { reply_to: msg.message_id }));
        }
        return new PingReceived(msg);
      }
      return this._systemAction(msg, payload.action);
    }
    return undefined;
  }

  /**
   * A role's own `system` actions; undefined leaves the message to the pump.
   * @param {object} msg
   * @param {unknown} action
   * @returns {Event|undefined}
   * @protected
   */
  _systemAction(msg, action) {
    return undefined;
  }

  /**
   * @param {string} next
   * @protected
   */
  _move(next) {
    if (!TRANSITIONS[this.state].includes(next)) throw new ProtocolStateError(`cannot move from ${this.state} to ${next}`);
    this.state = next;
    this.live = next === HANDSHAKE || next === OPEN;
  }

  /**
   * @param {string} code
   * @param {string} text
   * @param {string|null} replyTo
   * @param {object|null} msg the offending message, when it was a valid envelope.
   * @param {Error|null} error the typed error, when one was raised.
   * @returns {ProtocolViolation}
   * @protected
   */
  _violated(code, text, replyTo, msg, error) {
    if (this.sendsErrorFrames) {
      this.send(buildMessage('response', this.appId, SYSTEM_CHANNEL, null, { reply_to: replyTo, error: { code, message: text } }));
    }
    this._move(ERROR);
    this.violation = new ProtocolViolation(code, text, msg, error ?? (code === 'bad_frame' ? new FrameError(text) : new MessageError(text)));
    return this.violation;
  }
}

module.exports = {
  ProtocolState,
  TRANSITIONS,
  ProtocolStateError,
  Protocol,
  Event,
  PingReceived,
  PongReceived,
  MessageRefused,
  ProtocolViolation,
  HeartbeatAction,
  peekMessageId,
  writeFrame
};
