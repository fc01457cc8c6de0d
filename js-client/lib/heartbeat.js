'use strict';

/**
 * Heartbeat bookkeeping on an injected clock (docs/protocol.md §9).
 *
 * Pure state, the same rules as the Python core's `Heartbeat`: the caller
 * reports when something arrived and asks `poll(now)` what to do. No timers
 * and no I/O, so it is tested with a fake clock.
 */

const { MIN_HEARTBEAT_INTERVAL_MS } = require('./constants');

const CHECK_PERIOD_MS = 250;
// More than a clock reading's rounding (as the Python core's, in ms).
const ROUNDING_MS = 1e-3;

/**
 * How late a check may wake before its loop counts as stalled (§9.2), the
 * period of the server's sweep (§9.3): a quarter of the interval, at most
 * 250 ms, never under a quarter of the shortest interval.
 * @param {number} intervalMs
 * @returns {number}
 */
function checkPeriod(intervalMs) {
  return Math.max(MIN_HEARTBEAT_INTERVAL_MS / 4, Math.min(CHECK_PERIOD_MS, intervalMs / 4));
}

/** What the owner of a connection should do now. */
const HeartbeatAction = Object.freeze({ NONE: 'none', PING: 'ping', DEAD: 'dead' });

/**
 * Decides when to ping a silent peer and when to declare it dead.
 */
class Heartbeat {
  /**
   * @param {number} intervalMs ping after this much silence.
   * @param {number} timeoutMs the peer is dead after this much silence. One
   *   not over the interval (a client's own timeout under the interval its
   *   server advertises) pings at half the timeout instead, so a ping always
   *   goes before the peer is declared dead.
   * @param {number} now the current time (ms); the start of the silence.
   */
  constructor(intervalMs, timeoutMs, now) {
    if (!(intervalMs > 0) || !(timeoutMs > 0)) throw new RangeError('heartbeat interval and timeout must be positive');
    this.intervalMs = timeoutMs > intervalMs ? intervalMs : timeoutMs / 2;
    this.timeoutMs = timeoutMs;
    /** The last frame, as it was: what errors report. */
    this.lastReceived = now;
    /**
     * Where the silence counted against the peer starts: `lastReceived`,
     * unless part of it was excused (a stall of ours). `poll` and `nextCheck`
     * go by it alone.
     */
    this.silentSince = now;
    this.lastPingSent = null;
    /** The round trip of the last answered heartbeat ping, ms; null before one. */
    this.latencyMs = null;
    this._pingSentAt = null; // the first ping still unanswered
    this._checkDue = null; // when nextCheck() asked to be woken
    this._stallExcused = false; // this silence already had a stall excused
  }

  /**
   * Any frame (any byte) from the peer proves it is alive (§9.2).
   * @param {number} now
   */
  received(now) {
    this.lastReceived = now;
    this.silentSince = now;
    this._stallExcused = false;
  }

  /**
   * The pong of a heartbeat ping arrived (it is also a frame received).
   * @param {number} now
   */
  pongReceived(now) {
    this.received(now);
    if (this._pingSentAt !== null) {
      this.latencyMs = now - this._pingSentAt;
      this._pingSentAt = null;
    }
  }

  /**
   * What to do at `now`; a PING is reported once per interval of silence.
   * @param {number} now
   * @returns {'none'|'ping'|'dead'}
   */
  poll(now) {
    this._excuseAStall(now);
    const silent = now - this.silentSince;
    if (silent >= this.timeoutMs) return HeartbeatAction.DEAD;
    if (
      silent >= this.intervalMs &&
      (this.lastPingSent === null || this.lastPingSent < this.silentSince || now - this.lastPingSent >= this.intervalMs)
    ) {
      this.lastPingSent = now;
      if (this._pingSentAt === null) this._pingSentAt = now;
      return HeartbeatAction.PING;
    }
    return HeartbeatAction.NONE;
  }

  /**
   * Milliseconds until `poll` may answer something new: the earlier of the
   * next ping and the death. `poll` then knows how late it woke.
   * @param {number} now
   * @returns {number}
   */
  nextCheck(now) {
    let due = this.silentSince + this.intervalMs;
    if (this.lastPingSent !== null && this.lastPingSent >= this.silentSince) due = this.lastPingSent + this.intervalMs;
    const delay = Math.max(0, Math.min(due, this.silentSince + this.timeoutMs) - now);
    this._checkDue = now + delay;
    return delay;
  }

  /**
   * A check more than a period late means our own loop stalled: what it did
   * not read meanwhile is not the peer's silence (§9.2). Counts the silence
   * as one interval, so the peer is pinged now and has the rest of the
   * timeout to answer; once a silence, so a loop that is always late still
   * declares a dead peer dead. Counted in `silentSince`: `lastReceived`
   * stays the real last frame.
   * @param {number} now
   * @private
   */
  _excuseAStall(now) {
    const due = this._checkDue;
    this._checkDue = null;
    if (due === null || this._stallExcused || now - due <= checkPeriod(this.intervalMs)) return;
    if (now - this.silentSince >= this.intervalMs) {
      this._stallExcused = true;
      this.silentSince = Math.max(this.silentSince, now - this.intervalMs - ROUNDING_MS);
    }
  }
}

module.exports = { Heartbeat, HeartbeatAction, checkPeriod };
