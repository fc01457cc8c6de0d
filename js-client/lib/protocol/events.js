'use strict';

/**
 * What a protocol connection reports besides ordinary messages (the Python
 * core's events in ipc_protocol/protocol.py, with the same names). The
 * roles add theirs (client_protocol.js: HandshakeAccepted, HandshakeRefused,
 * InvalidMessage).
 */

/** Base of what receiveFrame() returns besides an ordinary message. */
class Event {}

/** The peer pinged (§9); a request has already been answered with a pong. */
class PingReceived extends Event {
  constructor(message) {
    super();
    this.message = message;
  }
}

/** The answer to a ping this connection sent (§9); `latencyMs` since the first unanswered one. */
class PongReceived extends Event {
  constructor(message, latencyMs) {
    super();
    this.message = message;
    this.latencyMs = latencyMs;
  }
}

/** The core answered `message` with an error response (a request) or dropped it; the connection stays open. */
class MessageRefused extends Event {
  constructor(message, code, text) {
    super();
    this.message = message;
    this.code = code;
    this.text = text;
  }
}

/**
 * The peer broke the protocol: the state is `error` (and, where the role
 * sends one, the error frame is queued); the pump writes what is queued
 * and closes (§6.4). `error`: the typed IpcError, for the pump to report.
 */
class ProtocolViolation extends Event {
  constructor(code, text, message = null, error = null) {
    super();
    this.code = code;
    this.text = text;
    this.message = message;
    this.error = error;
  }
}

module.exports = { Event, PingReceived, PongReceived, MessageRefused, ProtocolViolation };
