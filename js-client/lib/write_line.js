'use strict';

/**
 * The calls waiting for a connection's full send buffer, in arrival order
 * (docs/resilience.md §4, "A full send buffer"). A publish(), notify() or
 * request that finds the socket over its high-water mark, or calls already
 * waiting, waits here BEFORE its bytes are written, as ws and nats.js keep
 * their pending writes in a queue of their own rather than in the socket's.
 *
 * Why: bytes handed to the socket are sent whatever the caller is told
 * afterwards. A call that waited after writing and then rejected `timeout`
 * or AbortError had been sent all the same (18 of 18 such publishes were
 * delivered once a stopped server read again), so a caller that retried
 * sent it twice. A call that leaves this line, at its deadline, its signal
 * or the connection's loss, was never written: its rejection is true.
 *
 * On 'drain' the line is written in order until the buffer is full again.
 */

const { now } = require('./connection');
const { setLongTimeout, clearLongTimeout } = require('./long_timer');
const { RequestTimeoutError } = require('./errors');

/**
 * The timeout of a call that waited for a full send buffer and was never written.
 * @param {object} msg
 * @param {number} ms the time it had.
 * @returns {RequestTimeoutError}
 */
function notSent(msg, ms) {
  return new RequestTimeoutError(`${msg.message_type} on ${msg.channel_id} was not sent: the connection's send buffer stayed full for its ${Math.round(ms)} ms`);
}

class WriteLine {
  /**
   * @param {import('./connection').Connection} conn
   */
  constructor(conn) {
    this.conn = conn;
    /** @type {Map<unknown, {write: () => void, fail: (err: Error) => void}>} key -> waiting write, oldest first */
    this.waiting = new Map();
    this._armed = false;
  }

  /** @returns {boolean} whether a write now would go into a full buffer or overtake a waiting one. */
  get blocked() {
    return this.waiting.size > 0 || this.conn.needsDrain;
  }

  /**
   * Puts a write in line: `write()` runs once everything before it was
   * written and the buffer has room (a throw fails it), `fail(err)` if it
   * leaves unwritten with the connection.
   * @param {unknown} key its message id (what leave() takes).
   * @param {{write: () => void, fail: (err: Error) => void}} entry
   */
  wait(key, entry) {
    this.waiting.set(key, entry);
    this._arm();
  }

  /**
   * Writes `msg` once its turn comes (Calls.inTurn()), never after its
   * deadline: resolves once written, rejects `timeout` at its deadline,
   * with what fail() is given otherwise (an AbortError, connection_lost).
   * @param {object} msg
   * @param {number} deadline monotonic ms.
   * @param {() => void} written called once its bytes are handed to the socket.
   * @returns {Promise<void>}
   * @throws {MessageError|FrameTooLargeError} at once, nothing sent.
   */
  writeLater(msg, deadline, written) {
    const conn = this.conn;
    const frame = conn.encode(msg); // refused now, as a write would be
    const id = msg.message_id;
    const remaining = deadline - now();
    return new Promise((resolve, reject) => {
      let timer = null;
      const write = () => {
        if (deadline - now() <= 0) throw notSent(msg, remaining); // its timer is due: never late
        clearLongTimeout(timer);
        conn.write(frame);
        written();
        resolve();
      };
      const fail = (err) => {
        clearLongTimeout(timer);
        reject(err);
      };
      if (Number.isFinite(remaining)) {
        timer = setLongTimeout(() => this.leave(id) !== undefined && fail(notSent(msg, remaining)), Math.max(0, remaining));
      }
      this.wait(id, { write, fail });
    });
  }

  /**
   * A turn of one's own, written nothing: resolves true once everything
   * ahead was written and the buffer has room, false if the connection
   * went first (the offline queue's replay keeps its place this way).
   * @returns {Promise<boolean>}
   */
  turn() {
    return new Promise((resolve) => this.wait(Symbol('turn'), { write: () => resolve(true), fail: () => resolve(false) }));
  }

  /**
   * Takes a write out of the line unwritten (its deadline, its signal).
   * @param {unknown} key
   * @returns {{write: Function, fail: Function}|undefined} undefined: written already, or never waiting.
   */
  leave(key) {
    const entry = this.waiting.get(key);
    if (entry !== undefined) this.waiting.delete(key);
    return entry;
  }

  /**
   * The connection is gone: every waiting write fails with `err`, unsent.
   * @param {Error} err
   */
  failAll(err) {
    const entries = [...this.waiting.values()];
    this.waiting.clear();
    for (const entry of entries) entry.fail(err);
  }

  /** Flushes the line on the socket's next 'drain' (at once when it has room). @private */
  _arm() {
    if (this._armed) return;
    this._armed = true;
    this.conn.drained().then(() => {
      this._armed = false;
      this._flush();
    });
  }

  /** @private */
  _flush() {
    const conn = this.conn;
    if (conn.closed) return; // the close path fails what waits (failAll)
    for (const [key, entry] of this.waiting) {
      if (conn.needsDrain) {
        this._arm();
        return;
      }
      this.waiting.delete(key);
      try {
        entry.write();
      } catch (err) {
        entry.fail(err);
      }
    }
  }
}

module.exports = { WriteLine, notSent };
