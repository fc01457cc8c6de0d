'use strict';

/**
 * The outbox (docs/resilience.md §3-§4): calls made while the client has
 * no connection wait in the offline queue (lib/offline_queue.js), each
 * until its own deadline (one timer for the whole queue); one-way messages
 * are also written to the queue file (lib/queue_store.js) when `queuePath`
 * is set. On a restored connection the queue is replayed, highest priority
 * first, before any newer call. A write the file refuses fails the call
 * that needed it (the message is not queued: it was to be on disk); a
 * remove that fails later is reported once on 'error' until a write works
 * again, and written by the store with the next one.
 *
 * Host interface (the IPCClient that owns it): `options`, `_state`,
 * `_conn`, `_sendLimit`, `_calls` (`request()`, `writeOneWay()`, `lineOf()`),
 * `_metrics`, `_emitSafely()`, `_emitError()`.
 */

const { HEADER_SIZE_BYTES, DEFAULT_MAX_FRAME_SIZE_BYTES } = require('./constants');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { COPY_BELOW_BYTES, heldMessage, messageBytes, storable, revive } = require('./protocol/attachments');
const { now } = require('./connection');
const { State } = require('./state');
const { OfflineQueue } = require('./offline_queue');
const { QueueStore } = require('./queue_store');
const { ConnectionLostError, FrameTooLargeError, QueueFullError, RequestTimeoutError } = require('./errors');
const { markReplay } = require('./protocol/restarts');
const { keysKept, keysIgnored } = require('./idempotency');
const { timeoutText } = require('./call_options');

/**
 * A call waiting in the offline queue.
 * @typedef {object} QueuedCall
 * @property {string} id the message id.
 * @property {number} priority
 * @property {number} bytes encoded frame size.
 * @property {number} deadline monotonic ms.
 * @property {number|undefined} timeout the call's own (ms), for its timeout's message.
 * @property {object} msg the envelope.
 * @property {boolean} expectReply a request (or publish with ack): a caller waits for it.
 * @property {boolean} persisted also in the queue file.
 * @property {Function|null} resolve
 * @property {Function|null} reject
 * @property {Error|null} [cause] a keyed request's resend: the connection loss it was queued again after.
 */

/**
 * The offline queue of one client, its expiry timer, its file and its replay.
 */
class Outbox {
  /**
   * @param {object} host the IPCClient (see the module's doc).
   */
  constructor(host) {
    const { options } = host;
    this.host = host;
    this.queue = new OfflineQueue({ maxSize: options.queueMaxSize, maxBytes: options.queueMaxBytes, overflow: options.queueOverflow });
    this.store = options.queuePath === null ? null : new QueueStore(options.queuePath);
    /** The connection the queue is being replayed on, or null. */
    this.replaying = null;
    /** Keyed requests under way (lib/idempotency.js resendOnLoss()): a loss sends each back here, so drain() waits for them. */
    this.keyed = 0;
    /** The loss the keyed resend now being submitted outlived (set by resendOnLoss() around its start): the cause of its timeout in the queue. */
    this.resendCause = null;
    this._timer = null;
    this._timerAt = Infinity;
    /** A failed remove was reported on 'error'; the next write that works resets it. */
    this._storeFailing = false;
  }

  /**
   * Whether a new call may go straight to the connection (nothing queued
   * ahead of it, no replay under way).
   * @returns {boolean}
   */
  get idle() {
    return this.queue.size === 0 && this.replaying === null;
  }

  /**
   * Puts a call in the offline queue (and a one-way message in the queue
   * file). Evicted entries fail with queue_full now.
   * @param {object} msg
   * @param {number} deadline
   * @param {number} priority
   * @param {boolean} expectReply
   * @param {number} [timeout] the call's own (ms), named if it expires once sent.
   * @returns {Promise<object>|undefined} the reply, for a request.
   * @throws {QueueFullError} the queue refused it.
   * @throws {QueueFileError} the queue file could not take it: not queued, nothing evicted.
   * @throws {MessageError|FrameTooLargeError} it could never be sent.
   */
  enqueue(msg, deadline, priority, expectReply, timeout) {
    // Replayed as it is now (§16.3): its values parsed back from the JSON measured here, its
    // Buffers copied (a one-way call settles here, a request's small frame would be a copy).
    // Fails now, not later, on what cannot be sent (attachments counted, §16).
    const held = heldMessage(msg, expectReply ? COPY_BELOW_BYTES : Infinity);
    msg = held.message;
    const size = held.bytes;
    const limit = this.host._sendLimit ?? this.host.options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE_BYTES;
    if (size > limit) throw new FrameTooLargeError(size, limit);
    /** @type {QueuedCall} */
    const entry = { id: msg.message_id, priority, bytes: HEADER_SIZE_BYTES + size, deadline, timeout, msg, expectReply, persisted: false, resolve: null, reject: null, cause: this.resendCause };
    const { accepted, evicted } = this.queue.push(entry);
    if (!accepted) {
      const stats = this.queue.stats();
      throw new QueueFullError(`the offline queue is full (${stats.size} messages, ${stats.bytes} bytes)`);
    }
    if (!expectReply && this.store !== null) {
      try {
        const left = deadline - now();
        this.store.add({ id: entry.id, priority, expiresAt: Number.isFinite(left) ? Date.now() + left : Number.MAX_SAFE_INTEGER, message: storable(msg) }); // Buffers as base64 in the file (§16)
      } catch (err) {
        this.queue.retract(entry, evicted); // not on disk, so not accepted: the queue is as it was
        throw err;
      }
      entry.persisted = true;
      this._storeFailing = false;
    }
    for (const victim of evicted) this._drop(victim, 'evicted', new QueueFullError('evicted from the offline queue to make room'));
    this._arm(deadline);
    if (!expectReply) return undefined;
    return new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
  }

  /**
   * Fails or drops everything queued when no connection is coming.
   * Persisted one-way messages stay, in memory and on disk, for a later
   * connect() or the next client on the same file.
   * @param {Error} error what waiting requests reject with.
   */
  abandon(error) {
    for (const entry of this.queue.removeWhere((e) => !e.persisted)) this._drop(entry, 'gave_up', error);
    if (this.queue.size === 0) this._disarm();
  }

  /**
   * connect() after disconnect(): takes the queue file back if it was given
   * up, and trusts what it holds now.
   */
  reclaim() {
    if (this.store === null || this.store.locked) return;
    this.queue.removeWhere((e) => e.persisted, false); // loaded again from the file just below: not dropped
    this.load();
  }

  /**
   * Gives the queue file up: it is another client's to take until connect().
   * A lock it cannot give back goes to 'error' (QueueFileError): never thrown,
   * so disconnect() always ends disconnected.
   */
  release() {
    const err = this.store === null ? null : this.store.close();
    if (err !== null) this.host._emitError(err);
  }

  /**
   * Starts the replay; a failure no caller waits for goes to 'error'.
   * @param {Connection} conn
   */
  startReplay(conn) {
    this._replay(conn).catch((err) => this.host._emitError(err));
  }

  /**
   * Loads the messages an earlier run persisted into the offline queue.
   */
  load() {
    const { host, store, queue } = this;
    const t = now();
    const wall = Date.now();
    const loaded = store.load();
    queue.dropped += store.expired; // expired on disk: they left the queue unsent
    for (let i = 0; i < store.expired; i++) host._metrics.failed();
    const { corrupt } = store;
    if (corrupt > 0) {
      queue.dropped += corrupt; // each unreadable stretch lost at least one message
      for (let i = 0; i < corrupt; i++) host._metrics.failed();
      const err = new Error(`queue file ${store.file}: ${corrupt} unreadable stretch(es) skipped; the messages in them are lost`);
      err.code = 'EQUEUECORRUPT';
      process.nextTick(() => host._emitError(err)); // after the constructor, once listeners are on
    }
    for (const stored of loaded) {
      const message = revive(stored.message); // its Buffers back (§16)
      const entry = {
        id: stored.id,
        priority: Number.isSafeInteger(stored.priority) ? stored.priority : 0,
        bytes: HEADER_SIZE_BYTES + messageBytes(message),
        deadline: stored.expiresAt >= Number.MAX_SAFE_INTEGER ? Infinity : t + (stored.expiresAt - wall),
        msg: message,
        expectReply: false,
        persisted: true,
        resolve: null,
        reject: null
      };
      const { accepted, evicted } = queue.push(entry);
      // deferred: the constructor loads, before any 'queue_dropped' listener is on
      for (const victim of evicted) this._drop(victim, 'evicted', new QueueFullError('evicted from the offline queue'), true);
      if (!accepted) {
        queue.dropped++;
        this._drop(entry, 'evicted', new QueueFullError('the offline queue is full'), true);
        continue;
      }
      this._arm(entry.deadline);
    }
  }

  /**
   * Ends a queued call that will not be sent: a request rejects with
   * `error`; a one-way message is reported by 'queue_dropped' and counted.
   * @param {QueuedCall} entry already out of the queue.
   * @param {'expired'|'evicted'|'gave_up'|'refused'} reason
   * @param {Error} error
   * @param {boolean} [defer] emit the event on the next tick.
   * @private
   */
  _drop(entry, reason, error, defer = false) {
    if (entry.expectReply) {
      entry.reject(error);
      return;
    }
    if (entry.persisted) this._forget(entry.id);
    this.host._metrics.failed();
    const event = { reason, channel: entry.msg.channel_id, messageType: entry.msg.message_type, priority: entry.priority };
    if (defer) process.nextTick(() => this.host._emitSafely('queue_dropped', event));
    else this.host._emitSafely('queue_dropped', event);
  }

  /**
   * Arms the one timer of the queue for `deadline` unless an earlier one is set.
   * @param {number} deadline monotonic ms.
   * @private
   */
  _arm(deadline) {
    if (!Number.isFinite(deadline) || deadline >= this._timerAt) return;
    const delay = deadline - now();
    clearLongTimeout(this._timer);
    this._timerAt = deadline;
    this._timer = setLongTimeout(() => this._onTimer(), Math.max(0, Math.ceil(delay))); // 30 days too
    this._timer.unref(); // the reconnect loop, not the queue, keeps the process alive
  }

  /** @private */
  _disarm() {
    clearLongTimeout(this._timer);
    this._timer = null;
    this._timerAt = Infinity;
  }

  /**
   * Expires what is due: requests reject with timeout at their own deadline.
   * @private
   */
  _onTimer() {
    this._disarm();
    this._expire();
    const next = this.queue.nextDeadline();
    if (next !== null) this._arm(next);
  }

  /** @private */
  _expire() {
    for (const entry of this.queue.expire(now())) {
      // its own timeout named, however long it waited (docs/resilience.md §4), as in Python; a one-way message has no caller
      const within = entry.timeout === undefined ? '' : ` within ${timeoutText(entry.timeout)} ms`;
      const err = entry.expectReply ? new RequestTimeoutError(`no response on '${entry.msg.channel_id}'${within} (it waited in the offline queue)`) : null;
      if (err !== null && entry.cause) err.cause = entry.cause; // a keyed resend: the loss that queued it again
      this._drop(entry, 'expired', err);
    }
  }

  /**
   * Writes the offline queue on a restored connection, highest priority
   * first, FIFO within a priority (docs/resilience.md §3 step 3). Calls
   * made meanwhile queue behind. Stops, keeping what is left, when the
   * connection goes; requests already written then fail with
   * connection_lost like any in-flight call.
   * @param {Connection} conn
   * @returns {Promise<void>}
   * @private
   */
  async _replay(conn) {
    const { host, queue } = this;
    const calls = host._calls;
    this.replaying = conn;
    try {
      while (host._conn === conn && host._state === State.CONNECTED && conn.writable) {
        const line = calls.lineOf(conn);
        if (line.blocked) {
          await line.turn(); // the socket's buffer is full: each entry is written in its turn, never into it
          continue;
        }
        this._expire();
        const entry = queue.shift();
        if (entry === undefined) break;
        if (entry.expectReply && entry.cause && !keysKept(conn)) {
          queue.dropped++; // a keyed resend this server would run again: not sent
          this._drop(entry, 'refused', keysIgnored(entry.cause));
          continue;
        }
        if (entry.expectReply) {
          calls.request(markReplay(entry.msg), entry.deadline, () => queue.dropped++, entry.timeout).then(entry.resolve, entry.reject); // marked: §13.2
          continue;
        }
        // a persisted message leaves the file only once the socket has taken its bytes; if
        // the connection fails first, it stays on disk for the next load (at least once)
        const onWritten = entry.persisted ? (err) => err || this._forget(entry.id) : undefined;
        try {
          calls.writeOneWay(markReplay(entry.msg), onWritten);
        } catch (err) {
          if (err instanceof ConnectionLostError) {
            queue.unshift(entry);
            break;
          }
          queue.dropped++; // e.g. larger than the new server accepts
          this._drop(entry, 'refused', err); // its caller or queue_dropped is told: not 'error' too (as Python)
          continue;
        }
      }
    } finally {
      if (this.replaying === conn) this.replaying = null;
    }
    if (queue.size === 0) this._disarm();
  }

  /**
   * Removes a message that left the queue from the queue file. A failure
   * goes to 'error' once until a write works again; the store writes the
   * remove with that write (until then, a later load would send it again).
   * @param {string} id
   * @private
   */
  _forget(id) {
    try {
      this.store.remove(id);
    } catch (err) {
      if (!this._storeFailing) this.host._emitError(err);
      this._storeFailing = true;
      return;
    }
    this._storeFailing = false;
  }
}

module.exports = { Outbox };
