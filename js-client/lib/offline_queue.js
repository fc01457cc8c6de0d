'use strict';

/**
 * The offline queue (docs/resilience.md §4): calls made while the client
 * is (re)connecting wait here, bounded by count and bytes, and leave
 * highest priority first, FIFO within a priority.
 *
 * Pure bookkeeping: no timers, no I/O, no promises. The caller passes the
 * clock to `expire(now)` and settles whatever comes back, so every policy
 * is tested on plain numbers.
 */

/** What a full queue does with a new entry (docs/resilience.md §1). */
const Overflow = Object.freeze({
  REJECT: 'reject',
  DROP_OLDEST: 'drop_oldest',
  DROP_LOWEST_PRIORITY: 'drop_lowest_priority'
});

/**
 * @typedef {object} QueueEntry
 * @property {string} id unique within the queue (the message id).
 * @property {number} priority higher leaves first.
 * @property {number} bytes the entry's size, counted against `maxBytes`.
 * @property {number} deadline when it expires, on the caller's clock (Infinity: never).
 * @property {number} [seq] arrival order, set by the queue.
 */

/**
 * A bounded priority queue with per-entry deadlines.
 */
class OfflineQueue {
  /**
   * @param {{maxSize?: number, maxBytes?: number, overflow?: string}} [options]
   *   `maxSize` entries and `maxBytes` bytes (Infinity: unbounded);
   *   `overflow` one of `Overflow`.
   */
  constructor({ maxSize = 1000, maxBytes = 8 * 1024 * 1024, overflow = Overflow.REJECT } = {}) {
    if (!Object.values(Overflow).includes(overflow)) throw new TypeError(`unknown overflow policy ${JSON.stringify(overflow)}`);
    this.maxSize = maxSize;
    this.maxBytes = maxBytes;
    this.overflow = overflow;
    this.size = 0;
    this.bytes = 0;
    this.dropped = 0;
    this._seq = 0;
    /** priority -> entries in arrival order; priorities kept sorted high to low. */
    this._lanes = new Map();
    this._priorities = [];
  }

  /**
   * Adds an entry, evicting others if the overflow policy says so.
   *
   * An entry larger than `maxBytes` on its own is always refused. Under
   * `drop_lowest_priority` the victim is the oldest entry of the lowest
   * priority; a new entry whose priority is below everything queued is
   * refused instead (it would be the first to go).
   *
   * @param {QueueEntry} entry
   * @returns {{accepted: boolean, evicted: QueueEntry[]}} evicted entries are no longer queued.
   */
  push(entry) {
    const evicted = [];
    if (this.maxSize <= 0 || entry.bytes > this.maxBytes) return { accepted: false, evicted };
    while (!this._fits(entry)) {
      const victim = this._victim(entry);
      if (victim === null) {
        for (const e of evicted) this._insert(e, true); // undo: the refusal leaves the queue as it was
        return { accepted: false, evicted: [] };
      }
      this._take(victim);
      evicted.push(victim);
    }
    this.dropped += evicted.length;
    entry.seq = this._seq++;
    this._insert(entry, false);
    return { accepted: true, evicted };
  }

  /**
   * Undoes a push() its caller could not complete (the queue file refused
   * the message): `entry` leaves, the entries it evicted come back.
   * @param {QueueEntry} entry
   * @param {QueueEntry[]} evicted what that push() returned.
   */
  retract(entry, evicted) {
    this._take(entry);
    for (const e of evicted) this._insert(e, true);
    this.dropped -= evicted.length;
  }

  /**
   * Puts an entry taken by shift() back at the head of its priority (a
   * write that could not happen after all).
   * @param {QueueEntry} entry
   */
  unshift(entry) {
    this._insert(entry, true);
  }

  /**
   * Takes the next entry: highest priority, oldest first.
   * @returns {QueueEntry|undefined}
   */
  shift() {
    const priority = this._priorities[0];
    if (priority === undefined) return undefined;
    const entry = this._lanes.get(priority)[0];
    this._take(entry);
    return entry;
  }

  /**
   * Removes one entry by id.
   * @param {string} id
   * @returns {QueueEntry|undefined} the entry, if it was queued.
   */
  remove(id) {
    for (const lane of this._lanes.values()) {
      const entry = lane.find((e) => e.id === id);
      if (entry !== undefined) {
        this._take(entry);
        return entry;
      }
    }
    return undefined;
  }

  /**
   * Removes every entry whose deadline is at or before `now`; they count as dropped.
   * @param {number} now
   * @returns {QueueEntry[]} the expired entries, in queue order.
   */
  expire(now) {
    return this.removeWhere((e) => e.deadline <= now);
  }

  /**
   * Removes the entries `pred` selects; they count as dropped unless
   * `dropped` is false (taken out to be put back, not lost).
   * @param {(entry: QueueEntry) => boolean} [pred] all entries when omitted.
   * @param {boolean} [dropped]
   * @returns {QueueEntry[]} the removed entries, in queue order.
   */
  removeWhere(pred = () => true, dropped = true) {
    const out = [];
    for (const entry of this.entries()) {
      if (!pred(entry)) continue;
      this._take(entry);
      out.push(entry);
    }
    if (dropped) this.dropped += out.length;
    return out;
  }

  /**
   * The earliest deadline, to arm one timer for the whole queue.
   * @returns {number|null} null when empty or when nothing expires.
   */
  nextDeadline() {
    let next = Infinity;
    for (const lane of this._lanes.values()) for (const e of lane) if (e.deadline < next) next = e.deadline;
    return next === Infinity ? null : next;
  }

  /**
   * Every entry in the order shift() would return them.
   * @returns {QueueEntry[]}
   */
  entries() {
    const out = [];
    for (const priority of this._priorities) out.push(...this._lanes.get(priority));
    return out;
  }

  /**
   * Counters for queueStats().
   * @returns {{size: number, bytes: number, maxSize: number, maxBytes: number, dropped: number, byPriority: Record<string, number>}}
   */
  stats() {
    const byPriority = {};
    for (const priority of this._priorities) byPriority[priority] = this._lanes.get(priority).length;
    return { size: this.size, bytes: this.bytes, maxSize: this.maxSize, maxBytes: this.maxBytes, dropped: this.dropped, byPriority };
  }

  /**
   * Whether `entry` fits without evicting anything.
   * @param {QueueEntry} entry
   * @returns {boolean}
   * @private
   */
  _fits(entry) {
    return this.size + 1 <= this.maxSize && this.bytes + entry.bytes <= this.maxBytes;
  }

  /**
   * The entry the overflow policy evicts to make room for `entry`, or null to refuse it.
   * @param {QueueEntry} entry
   * @returns {QueueEntry|null}
   * @private
   */
  _victim(entry) {
    if (this.size === 0) return null;
    if (this.overflow === Overflow.DROP_OLDEST) {
      let oldest = null;
      for (const lane of this._lanes.values()) if (oldest === null || lane[0].seq < oldest.seq) oldest = lane[0];
      return oldest;
    }
    if (this.overflow === Overflow.DROP_LOWEST_PRIORITY) {
      const lowest = this._priorities[this._priorities.length - 1];
      return entry.priority < lowest ? null : this._lanes.get(lowest)[0];
    }
    return null;
  }

  /**
   * Inserts into its priority lane, at the tail or (back from shift/undo) in seq order.
   * @param {QueueEntry} entry
   * @param {boolean} ordered insert by `seq` instead of appending.
   * @private
   */
  _insert(entry, ordered) {
    let lane = this._lanes.get(entry.priority);
    if (lane === undefined) {
      lane = [];
      this._lanes.set(entry.priority, lane);
      let i = 0;
      while (i < this._priorities.length && this._priorities[i] > entry.priority) i++;
      this._priorities.splice(i, 0, entry.priority);
    }
    if (ordered) {
      let i = 0;
      while (i < lane.length && lane[i].seq < entry.seq) i++;
      lane.splice(i, 0, entry);
    } else {
      lane.push(entry);
    }
    this.size++;
    this.bytes += entry.bytes;
  }

  /**
   * Removes a queued entry from its lane.
   * @param {QueueEntry} entry
   * @private
   */
  _take(entry) {
    const lane = this._lanes.get(entry.priority);
    const i = lane.indexOf(entry);
    lane.splice(i, 1);
    if (lane.length === 0) {
      this._lanes.delete(entry.priority);
      this._priorities.splice(this._priorities.indexOf(entry.priority), 1);
    }
    this.size--;
    this.bytes -= entry.bytes;
  }
}

module.exports = { OfflineQueue, Overflow };
