'use strict';

/**
 * The request lifecycle (docs/architecture.md, "The client, by concern"):
 * the one send path every outgoing call passes (`submit()`), the pending
 * table, deadlines and the remaining-time budget a request carries as
 * `timeout_ms` (§6.5), and settling each call exactly once: by its
 * response, its deadline, or the loss of the connection.
 *
 * Host interface (the IPCClient that owns it): `appId`, `_state`,
 * `options`, `_outbox` (`idle`, `replaying`, `enqueue()`, `startReplay()`),
 * `_breakers` (`for()`, `refuse()`), `_metrics`.
 */

const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { buildMessage } = require('./envelope');
const { COPY_BELOW_BYTES, snapshot } = require('./protocol/attachments');
const { validateChannel } = require('./channels');
const { now } = require('./connection');
const { NAMED_TIMEOUT, callOptions, checkTimeout, timeoutText, countsAsFailed, isLocalRefusal } = require('./call_options');
const { State } = require('./state');
const { traceOutgoing, endSpan } = require('./tracing');
const { keyedHeaders, resendOnLoss, keysKept, keysIgnored, notResent } = require('./idempotency');
const { checkSignal, abortError, abortable } = require('./cancellation');
const { WriteLine, notSent } = require('./write_line');
const { isClosing, failUnsent, lossHandled } = require('./closing');
const {
  ConnectionLostError,
  NotConnectedError,
  RequestTimeoutError,
  errorFromWire
} = require('./errors');

/** How many ids of calls that expired locally are remembered, to drop their late answers. */
const SETTLED_IDS_KEPT = 1024;

/**
 * The error object of a version-1 error answer: a payload that is exactly
 * `{"error": {...}}` (docs/protocol.md §10), else null.
 * @param {unknown} payload
 * @returns {object|null}
 */
function legacyError(payload) {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return null;
  const keys = Object.keys(payload);
  if (keys.length !== 1 || keys[0] !== 'error') return null;
  const error = payload.error;
  return error !== null && typeof error === 'object' && !Array.isArray(error) ? error : null;
}

/**
 * The calls of one client: what is in flight, and the one way out.
 */
class Calls {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    this.host = host;
    /** The connection calls are written on; set and cleared by the client. */
    this.conn = null;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} message_id -> call */
    this.pending = new Map();
    /** Ids of calls that expired locally, oldest first (bounded). */
    this.settled = new Set();
    /** @type {WriteLine|null} the calls waiting for the connection's full send buffer. */
    this.line = null;
  }

  /**
   * IPCClient.sendRequest(): the deadline starts now; the circuit breaker is asked first.
   * @returns {Promise<object|undefined>}
   */
  async sendRequest(channelId, payload, timeout, options) {
    if (timeout !== null && typeof timeout === 'object') {
      options = timeout;
      timeout = undefined;
    }
    validateChannel(channelId);
    this.host._drain.check(); // none while draining (docs/resilience.md §12)
    const call = callOptions(options ?? {}, this.host.options.requestTimeout, this.host.options.onDisconnect);
    if (timeout != null) call.timeout = checkTimeout(timeout); // the positional argument wins
    const signal = checkSignal(options && options.signal); // the caller may give up (§15.4)
    if (signal !== undefined && signal.aborted) throw abortError(signal);
    const deadline = now() + call.timeout;
    if (options && options[NAMED_TIMEOUT] !== undefined) call.timeout = options[NAMED_TIMEOUT]; // a pool's call: named, its budget what is left
    const keyed = call.idempotencyKey !== undefined; // run once per key (§6.6), each resend with the payload of the call (§16.3)
    if (keyed) call.headers = keyedHeaders(call.headers, call.idempotencyKey);
    const msg = buildMessage('request', this.host.appId, channelId, keyed ? snapshot(payload, COPY_BELOW_BYTES) : payload, call.headers ? { headers: call.headers } : undefined);
    const breaker = this.host._breakers.for(channelId);
    const permit = breaker === null ? null : breaker.acquire();
    if (breaker !== null && permit === null) return this.host._breakers.refuse(breaker, msg, payload, this.host._metrics);
    const span = traceOutgoing(msg, 'request', this.host); // a traceparent on every message (docs/tracing.md)
    let reply;
    let failure = null;
    try {
      reply = await abortable(this.host, msg, signal, call.idempotencyKey === undefined
        ? this.submit(msg, deadline, call, true)
        : resendOnLoss(this.host, () => this.submit(msg, deadline, call, true), deadline, call.onDisconnect));
    } catch (err) {
      failure = err;
    }
    if (permit !== null) {
      // once, outside the try: a throwing circuit_* listener must not release it again
      if (failure !== null && isLocalRefusal(failure)) breaker.cancel(permit); // never reached the service
      else breaker.release(permit, failure);
    }
    endSpan(span, failure);
    if (failure !== null) {
      this.countFailure(failure);
      throw failure;
    }
    this.host._metrics.delivered();
    return reply;
  }
  /**
   * The choke point of every request and one-way message (docs/resilience.md §4).
   *
   * Connected with nothing queued: sent now, or, when the socket's buffer
   * is full, once its turn comes (lib/write_line.js). Connecting or reconnecting
   * (or connected while the queue is replayed, to keep order): queued,
   * unless the call's policy is 'fail' or queueing is off. Disconnected:
   * not_connected, since nothing would ever send it.
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @param {{priority: number, onDisconnect: string}} call
   * @param {boolean} expectReply a request, or a publish with ack.
   * @param {(err: Error) => void} [onUnsent] told why a call sent now (expectReply) failed unwritten.
   * @returns {Promise<object>|Promise<void>|undefined} the reply (expectReply), else when written/queued.
   */
  submit(msg, deadline, call, expectReply, onUnsent) {
    const host = this.host;
    const state = host._state;
    const outbox = host._outbox;
    if (state === State.CONNECTED && outbox.idle) {
      if (outbox.resendCause !== null && !keysKept(this.conn)) throw keysIgnored(outbox.resendCause); // a keyed resend
      return expectReply ? this.request(msg, deadline, onUnsent, call.timeout) : this.sendOneWay(msg, deadline);
    }
    if (state === State.DISCONNECTED || state === State.DISCONNECTING) {
      throw new NotConnectedError(`not connected (${state})`);
    }
    if (state !== State.CONNECTED && (call.onDisconnect === 'fail' || host.options.queueMaxSize === 0)) {
      const why = call.onDisconnect === 'fail' ? "the call asked to fail fast (onDisconnect 'fail')" : 'its offline queue holds nothing (queueMaxSize 0)';
      throw new NotConnectedError(`the client is ${state} and ${why}`); // the same words as Python's (outbox.py submit)
    }
    const promise = outbox.enqueue(msg, deadline, call.priority, expectReply, call.timeout);
    if (state === State.CONNECTED && outbox.replaying === null) outbox.startReplay(this.conn);
    return promise;
  }

  /**
   * Sends a call that expects an answer on the current connection.
   * @param {object} msg
   * @param {number} deadline
   * @param {(err: Error) => void} [onUnsent] called when it fails without being written.
   * @param {number} [timeout] the call's own timeout (ms), named when it expires.
   * @returns {Promise<object>} the reply message.
   */
  request(msg, deadline, onUnsent, timeout) {
    if (msg.message_type === 'publish' && this.conn !== null && this.conn.legacy) {
      // a version-1 server has no publish acks (§10): written is all there is
      let sent;
      try {
        sent = this.inTurn(msg, deadline, () => this.host._metrics.sent()); // delivered is counted once, by publish()
      } catch (err) {
        if (onUnsent !== undefined) onUnsent(err);
        return Promise.reject(err);
      }
      return sent === undefined ? Promise.resolve({ payload: null }) : sent.then(() => ({ payload: null }));
    }
    return this.call(msg, deadline, true, onUnsent, timeout);
  }

  /**
   * Sends a message that expects a response and resolves with it. Rejects
   * with the remote error, a local timeout, or connection_lost. A request
   * carries what is left of its deadline as `timeout_ms` (§6.5), counted
   * when it is written: one that waits for a full send buffer (WriteLine)
   * and reaches its deadline there rejects `timeout` unsent.
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @param {boolean} [counted] an application call (counted in `messagesSent`).
   * @param {(err: Error) => void} [onUnsent] called when it fails without being written.
   * @param {number} [timeout] the call's own timeout (ms), named when it expires (default: what is left now).
   * @returns {Promise<object>} the response message.
   */
  call(msg, deadline, counted = false, onUnsent, timeout) {
    return new Promise((resolve, reject) => {
      const remaining = deadline - now();
      if (remaining <= 0) {
        const err = new RequestTimeoutError('the deadline passed before the call was sent');
        if (onUnsent !== undefined) onUnsent(err);
        reject(err);
        return;
      }
      // Infinity: no deadline here, and none sent (the server's default applies, §6.5)
      const timed = Number.isFinite(remaining);
      const budget = msg.message_type === 'request' && timed;
      if (budget) msg.timeout_ms = Math.ceil(remaining);
      const id = msg.message_id;
      const conn = this.conn;
      // unsent: it fails once the client has handled the loss (lib/closing.js)
      if (isClosing(conn)) return void failUnsent(this.host, conn, deadline).catch((err) => reject((onUnsent?.(err), err)));
      const line = conn === null ? null : this.lineOf(conn);
      const entry = { resolve, reject, timer: null };
      const unsent = (err) => {
        if (this.pending.get(id) !== entry) return;
        this.pending.delete(id);
        clearLongTimeout(entry.timer);
        if (onUnsent !== undefined) onUnsent(err);
        reject(err);
      };
      if (timed) {
        entry.timer = setLongTimeout(() => {
          if (line !== null && line.leave(id) !== undefined) return unsent(notSent(msg, remaining));
          if (this.pending.delete(id)) {
            this.rememberSettled(id); // its answer may still come: drop it then
            reject(new RequestTimeoutError(`no response on '${msg.channel_id}' within ${timeoutText(timeout ?? remaining)} ms`));
          }
        }, remaining); // past setTimeout's 2^31-1 ms too (30 days...)
      }
      this.pending.set(id, entry);
      try {
        if (line === null || !line.blocked) {
          this.send(msg);
          if (counted) this.host._metrics.sent();
          return;
        }
        conn.encode(msg); // what cannot be sent is refused now, not at its turn
        const later = { ...msg, payload: snapshot(msg.payload, COPY_BELOW_BYTES) }; // encoded again then: as it is now (§16.3)
        line.wait(id, {
          write: () => {
            const left = deadline - now();
            if (left <= 0) throw notSent(msg, remaining); // its timer is due: never late
            if (budget) later.timeout_ms = Math.ceil(left); // what is left now (§6.5)
            conn.write(conn.encode(later));
            if (counted) this.host._metrics.sent();
          },
          fail: unsent
        });
      } catch (err) {
        unsent(err);
      }
    });
  }

  /**
   * Sends a one-way message: resolves once written (counted sent and
   * delivered then), at once when the socket has room. See inTurn().
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @returns {Promise<void>|undefined} undefined: written now.
   */
  sendOneWay(msg, deadline) {
    const metrics = this.host._metrics;
    return this.inTurn(msg, deadline, () => {
      metrics.sent();
      metrics.delivered();
    });
  }

  /**
   * Writes a one-way message and counts it as sent and delivered (the
   * offline queue's replay, which waits for its turn itself).
   * @param {object} msg
   * @param {(err?: Error|null) => void} [onWritten] see Connection.write().
   * @returns {boolean} false when the socket buffer is full.
   */
  writeOneWay(msg, onWritten) {
    const flushed = this.send(msg, onWritten);
    this.host._metrics.sent();
    this.host._metrics.delivered();
    return flushed;
  }

  /**
   * A message nobody answers (a version-1 subscribe, §10): see inTurn().
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @returns {Promise<void>|undefined}
   */
  sendInTurn(msg, deadline) {
    return this.inTurn(msg, deadline, () => {});
  }

  /**
   * Writes `msg` now, or, when the socket's buffer is full or calls wait
   * ahead of it, once its turn comes in the connection's WriteLine; never
   * after its deadline. Written is final: the promise then resolves. Unsent
   * at its deadline, it rejects `timeout`; aborted (cancellation.js
   * withdraw()), with the AbortError; the connection lost, connection_lost.
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @param {() => void} written called once its bytes are handed to the socket.
   * @returns {Promise<void>|undefined} undefined: written now.
   * @throws {MessageError|FrameTooLargeError|ConnectionLostError} at once, nothing sent.
   */
  inTurn(msg, deadline, written) {
    const conn = this.conn;
    if (conn === null) throw new ConnectionLostError('the connection is closed');
    if (isClosing(conn)) return failUnsent(this.host, conn, deadline); // once the loss is handled (lib/closing.js)
    const line = this.lineOf(conn);
    if (!line.blocked) {
      this.send(msg);
      written();
      return undefined;
    }
    return line.writeLater(msg, deadline, written);
  }

  /**
   * The line of writes waiting on `conn` (made on its first use).
   * @param {import('./connection').Connection} conn
   * @returns {WriteLine}
   */
  lineOf(conn) {
    if (this.line === null || this.line.conn !== conn) this.line = new WriteLine(conn);
    return this.line;
  }

  /**
   * Writes a message on the current connection.
   * @param {object} msg
   * @param {(err?: Error|null) => void} [onWritten] see Connection.write().
   * @returns {boolean} false when the socket buffer is full.
   */
  send(msg, onWritten) {
    if (this.conn === null) throw new ConnectionLostError('the connection is closed');
    return this.conn.send(msg, onWritten);
  }

  /**
   * Settles the pending call a response answers. A late answer to a call
   * that already timed out locally (typically the server's own `timeout`,
   * a little after ours) is taken and dropped. From a version-1 server, a
   * payload that is exactly `{"error": {...}}` is an error answer (§10).
   * @param {Connection} conn the connection it came on.
   * @param {object} msg a response.
   * @returns {boolean} false when it answers no call of ours.
   */
  settle(conn, msg) {
    const pending = msg.reply_to === null ? undefined : this.pending.get(msg.reply_to);
    if (pending === undefined) return msg.reply_to !== null && this.settled.delete(msg.reply_to);
    this.pending.delete(msg.reply_to);
    clearLongTimeout(pending.timer);
    const error = msg.error ?? (conn.legacy ? legacyError(msg.payload) : null);
    if (error) pending.reject(errorFromWire(error));
    else pending.resolve(msg);
    return true;
  }


  /**
   * Counts a failed call in the metrics: failed, or delivered when the
   * other side answered it (countsAsFailed(): a `timeout` answer is failed).
   * @param {unknown} err
   */
  countFailure(err) {
    if (countsAsFailed(err)) this.host._metrics.failed();
    else this.host._metrics.delivered();
  }

  /**
   * Remembers the id of a call that ended without its answer (a local
   * timeout), so that a late answer is dropped instead of being taken for
   * an unsolicited error frame. Bounded: the oldest ids are forgotten.
   * @param {string} id
   */
  rememberSettled(id) {
    this.settled.add(id);
    if (this.settled.size > SETTLED_IDS_KEPT) this.settled.delete(this.settled.values().next().value);
  }

  /**
   * The connection is gone: every call in flight rejects with `reason`
   * (it may have run, so it is never resent).
   * @param {Error} reason
   */
  failAll(reason) {
    // A keyed request it ran may have run behind a server that ignores keys: not resent (§6.6 item 8).
    if (this.conn !== null && !keysKept(this.conn)) notResent(reason);
    lossHandled(this.conn); // the calls that found it closing fail now (lib/closing.js)
    this.conn = null;
    const line = this.line;
    this.line = null;
    if (line !== null) {
      // never written: they say so (they cannot have run)
      line.failAll(new ConnectionLostError(`${reason.message}; the call was not sent (it waited for the full send buffer)`, { cause: reason.cause }));
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      clearLongTimeout(p.timer);
      p.reject(reason);
    }
  }
}

module.exports = { Calls };
