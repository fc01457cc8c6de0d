'use strict';

/**
 * A responder's requests with an idempotency key (docs/protocol.md §6.6,
 * docs/resilience.md §3).
 *
 * The server's window of keys lives in its process: once it is killed or
 * restarted, a requester's resend of a keyed request (sent again after its
 * connection dropped) is a new request there, forwarded to a responder
 * again. So that its handler still runs once, the responder itself answers
 * the resend from what it already has:
 *
 * - while the handler of that key still runs (the first attempt's run,
 *   whose connection dropped), the resend joins it: the handler does not
 *   run again, and its answer goes to every requester of the run still
 *   connected. The loss of the connection does not abort such a run's
 *   `ctx.signal` (a cancel or disconnect() does);
 * - the answer of a run that none of its requesters could be sent (their
 *   connection had dropped) is kept for KEPT_WINDOW_MS (the server's
 *   default window), at most KEPT_MAX_ANSWERS answers of KEPT_MAX_BYTES
 *   bytes in all (the oldest dropped first; a larger one is not kept), and
 *   a resend within that time is answered with it.
 *
 * A key is the requester's app and the header, and a resend must be the
 * same request: the same channel and payload (canonical JSON, as the server
 * compares them). A responder does not know the requester's user: when the
 * server has a users file (its connect reply says `"users": true`), two
 * users' keys are apart there and alike here, so admission does not use
 * these runs at all and a keyed request runs as a plain one
 * (docs/protocol.md §6.6 item 10).
 * Another request under a running or kept key runs as usual. A run stopped
 * before its answer (a cancel, disconnect()) keeps nothing, and its joiners
 * are answered responder_lost. The Python mirror is ipc_client/keyed_runs.py.
 *
 * Host interface (the IPCClient that owns it): `appId`, `options.exposeStacks`.
 */

const { createHash } = require('node:crypto');
const { requestKey } = require('./coalescing');
const { IDEMPOTENCY_HEADER } = require('./idempotency');
const { reply } = require('./replies');
const { ResponderLostError, errorToWire } = require('./errors');
const { isBinary } = require('./protocol/attachments');

/** The server's default idempotency window. */
const KEPT_WINDOW_MS = 300000;
const KEPT_MAX_ANSWERS = 1000;
const KEPT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Whether `msg` is a request (not a stream) with an idempotency key.
 * @param {object} msg
 * @returns {boolean}
 */
function isKeyed(msg) {
  const headers = msg.headers;
  return headers != null && typeof headers[IDEMPOTENCY_HEADER] === 'string' && msg.message_type === 'request' && msg.window === undefined;
}

/**
 * The keyed runs of one client's responders, and the answers kept.
 */
class KeyedRuns {
  /**
   * @param {object} host the IPCClient.
   * @param {{windowMs?: number, maxAnswers?: number, maxBytes?: number}} [limits]
   */
  constructor(host, { windowMs = KEPT_WINDOW_MS, maxAnswers = KEPT_MAX_ANSWERS, maxBytes = KEPT_MAX_BYTES } = {}) {
    this.host = host;
    this.windowMs = windowMs;
    this.maxAnswers = maxAnswers;
    this.maxBytes = maxBytes;
    /** @type {Map<string, object>} scope -> its run, while its handler runs */
    this._runs = new Map();
    /** @type {Map<string, {digest: string, payload: unknown, error: object|undefined, size: number, expires: number}>} oldest first */
    this._kept = new Map();
    this.keptBytes = 0;
    /** Resends that joined a run. */
    this.joined = 0;
    /** Resends answered with a kept answer. */
    this.replayed = 0;
  }

  /** @returns {number} runs going on. */
  get running() {
    return this._runs.size;
  }

  /** @returns {number} answers kept. */
  get kept() {
    return this._kept.size;
  }

  /**
   * The handler of the keyed request `msg` is about to run: null when it
   * must not (it joined its key's run, or was answered with its key's kept
   * answer), else the run whose answer finish() writes.
   * @param {Connection} conn the connection it came on.
   * @param {object} msg
   * @returns {{scope: string|null, digest: string, requesters: Array<[Connection, object]>}|null}
   */
  start(conn, msg) {
    const scope = `${msg.app_id}\0${msg.headers[IDEMPOTENCY_HEADER]}`;
    const canonical = requestKey(msg.channel_id, msg.payload);
    if (canonical === null) return { scope: null, digest: '', requesters: [[conn, msg]] }; // run as usual
    const digest = createHash('sha256').update(canonical).digest('base64');
    const run = this._runs.get(scope);
    if (run !== undefined) {
      if (run.digest !== digest) return { scope: null, digest, requesters: [[conn, msg]] };
      run.requesters.push([conn, msg]);
      this.joined++;
      return null;
    }
    this._expire(performance.now());
    const kept = this._kept.get(scope);
    if (kept !== undefined && kept.digest === digest) {
      this._reply(conn, msg, kept.payload, kept.error);
      this.replayed++;
      return null;
    }
    const started = { scope, digest, requesters: [[conn, msg]] };
    this._runs.set(scope, started);
    return started;
  }

  /**
   * The handler answered: every requester of the run still connected gets
   * the answer; kept when none could be sent.
   * @param {object} run what start() returned.
   * @param {unknown} payload the result (null with `error`).
   * @param {object} [error] an `error` object (§2).
   */
  finish(run, payload, error) {
    this._end(run);
    let sent = false;
    for (const [conn, msg] of run.requesters) sent = this._reply(conn, msg, payload, error) || sent;
    if (!sent && run.scope !== null) this._keep(run, payload, error);
  }

  /**
   * The run ended without an answer (cancelled): its joiners are answered
   * responder_lost (a retry runs again), nothing is kept.
   * @param {object} run
   */
  abandon(run) {
    this._end(run);
    const error = errorToWire(new ResponderLostError('the keyed run it joined was stopped before its answer'));
    for (const [conn, msg] of run.requesters.slice(1)) this._reply(conn, msg, null, error);
  }

  /** @private */
  _end(run) {
    if (run.scope !== null && this._runs.get(run.scope) === run) this._runs.delete(run.scope);
  }

  /**
   * Writes one requester's answer.
   * @returns {boolean} whether it went on the wire (its connection is open).
   * @private
   */
  _reply(conn, msg, payload, error) {
    if (conn.closed) return false;
    reply(conn, this.host.appId, msg, payload, error, this.host.options.exposeStacks);
    return !conn.closed;
  }

  /** @private */
  _keep(run, payload, error) {
    const size = answerBytes(payload, error);
    if (size > this.maxBytes) return;
    const old = this._kept.get(run.scope);
    if (old !== undefined) {
      this._kept.delete(run.scope);
      this.keptBytes -= old.size;
    }
    this._kept.set(run.scope, { digest: run.digest, payload, error, size, expires: performance.now() + this.windowMs });
    this.keptBytes += size;
    for (const [scope, kept] of this._kept) {
      if (this._kept.size <= this.maxAnswers && this.keptBytes <= this.maxBytes) break;
      this._kept.delete(scope);
      this.keptBytes -= kept.size;
    }
  }

  /** @private */
  _expire(now) {
    for (const [scope, kept] of this._kept) {
      if (kept.expires > now) return;
      this._kept.delete(scope);
      this.keptBytes -= kept.size;
    }
  }
}

/**
 * The bytes of an answer's JSON, binary data (§16) counted by its length.
 * @param {unknown} payload
 * @param {object} [error]
 * @returns {number} 0 for what JSON cannot carry (it is answered handler_error).
 */
function answerBytes(payload, error) {
  let binary = 0;
  try {
    const text = JSON.stringify([payload ?? null, error ?? null], function measure(key, value) {
      const raw = this[key];
      if (!isBinary(raw)) return value;
      binary += raw.byteLength;
      return null;
    });
    return Buffer.byteLength(text) + binary;
  } catch {
    return 0;
  }
}

module.exports = { KeyedRuns, isKeyed, KEPT_WINDOW_MS, KEPT_MAX_ANSWERS, KEPT_MAX_BYTES };
