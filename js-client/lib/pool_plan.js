'use strict';

/**
 * The connection pool's bookkeeping as a pure function (docs/resilience.md §7).
 *
 * In the manner of httpcore's `_assign_requests_to_connections`: the pool's
 * state and its queue of waiting callers go in, a plan comes out saying which
 * members to close, which waiters to fail, which member goes to which waiter
 * and how many connections to open. Nothing here does I/O, reads a clock or
 * sets a timer: the pool applies the plan, so every rule can be tested on
 * plain data (test/pool_plan.test.js) and is written once, mirrored line for
 * line in ipc_client/pool_plan.py.
 *
 * A member is anything with `usable` (connected, not being closed), `leased`
 * (held by one acquire()), `shared` (lease() calls in flight on it) and
 * `idleSince` (when it last became free). A waiter is anything with `shared`
 * (a lease() waiter, which may share a member) and `deadline` (when its wait
 * fails with TIMEOUT). The plan never modifies them: it returns references.
 */

/** Why a member is closed: its connection is gone and nobody holds it any more. */
const DEAD = 'dead';
/** Why a member is closed: unused for idleTimeout while above minConnections. */
const IDLE = 'idle';
/** Why a waiter fails: its deadline passed with nothing to hand it. */
const TIMEOUT = 'timeout';
/** Why a waiter fails: the connection opened for it failed. */
const OPEN_FAILED = 'open_failed';

const NOTHING = new Map();
const NOBODY = new Set();

/**
 * The most recently freed usable member nobody uses, or null: reusing the
 * warmest keeps the others idle long enough to be reaped.
 * @param {Iterable<object>} members an Array or a Set.
 * @param {Map<object, number>} [extra] lease calls the plan adds to a member.
 * @param {Set<object>} [taken] members the plan lends to an acquire().
 * @returns {object|null}
 */
function pickIdle(members, extra = NOTHING, taken = NOBODY) {
  let best = null;
  for (const m of members) {
    if (m.usable && !m.leased && m.shared + (extra.get(m) ?? 0) === 0 && !taken.has(m)) {
      if (best === null || m.idleSince >= best.idleSince) best = m;
    }
  }
  return best;
}

/**
 * [member for one more lease or null, least busy shared member or null].
 * A shared member below `threshold` calls first, the least busy one, so
 * calls stay on few connections; else an idle member. The second value is
 * the fallback when neither exists.
 * @param {Iterable<object>} members an Array or a Set.
 * @param {number} threshold
 * @param {Map<object, number>} [extra]
 * @param {Set<object>} [taken]
 * @returns {[object|null, object|null]}
 */
function pickShared(members, threshold, extra = NOTHING, taken = NOBODY) {
  let least = null;
  let leastLoad = 0;
  for (const m of members) {
    if (!m.usable || m.leased || taken.has(m)) continue;
    const load = m.shared + (extra.get(m) ?? 0);
    if (load > 0 && (least === null || load < leastLoad)) {
      least = m;
      leastLoad = load;
    }
  }
  if (least !== null && leastLoad < threshold) return [least, least];
  return [pickIdle(members, extra, taken), least];
}

/**
 * Decides what the pool does next.
 *
 * `opening` counts connections being opened (they cover waiters, oldest
 * first, and count toward maxConnections); `failedOpens` counts opens that
 * failed since the last plan (no longer in `opening`): each fails the oldest
 * waiter that was waiting for a new member, so nobody waits on a connection
 * that will never come. `keep` is never closed for idleness.
 *
 * Rules, in order: dead members nobody holds are closed; waiters are served
 * first come, first served: an acquire() gets an idle member alone, a
 * lease() a member to share (see `leaseGrowth` below), and a member given to
 * a waiting lease goes to every later waiting lease too; a waiter nothing
 * can serve now fails with TIMEOUT if past its deadline, else is covered by
 * an open in flight, else by a new one while below maxConnections, else
 * waits for a release. Then idle members above minConnections unused for
 * idleTimeout are closed, oldest first.
 *
 * `settings.leaseGrowth` says what a lease does when every member it may
 * share already carries `leaseThreshold` calls: 'wait' (Python) waits for a
 * new member of its own while there is room, falling back to the least busy
 * member if that open fails or the pool is full; 'background' (Node) shares
 * the least busy member at once and opens one more in the background, and
 * waiting leases (none usable at all) share one new member.
 *
 * @param {Iterable<object>} members an Array or a Set (read more than once).
 * @param {object[]} waiters oldest first.
 * @param {{minConnections: number, maxConnections: number, idleTimeout?: number|null,
 *   leaseThreshold?: number, leaseGrowth?: 'wait'|'background'}} settings
 *   idleTimeout null or Infinity keeps idle members.
 * @param {number} now same clock as `deadline` and `idleSince`.
 * @param {{opening?: number, failedOpens?: number, keep?: object|null}} [state]
 * @returns {{close: Array<[object, string]>, fail: Array<[object, string]>,
 *   assign: Array<[object, object]>, open: number, refill: number, unclaimed: number}}
 *   to apply in this order: close, fail, assign, open; `refill` counts the
 *   connections missing below minConnections (opened at the pool's pace),
 *   `unclaimed` the failed opens no waiter was waiting on.
 */
function planPool(members, waiters, settings, now, { opening = 0, failedOpens = 0, keep = null } = {}) {
  const plan = { close: [], fail: [], assign: [], open: 0, refill: 0, unclaimed: 0 };
  const threshold = settings.leaseThreshold ?? 1;
  let size = opening; // members that count toward maxConnections, opens included
  for (const m of members) {
    if (!m.usable && !m.leased && m.shared === 0) plan.close.push([m, DEAD]);
    else size++;
  }
  const background = settings.leaseGrowth === 'background';
  const extra = new Map(); // lease calls this plan adds to a member
  const taken = new Set(); // members this plan lends to an acquire()
  let spare = opening; // opens in flight not yet counted for a waiter
  let growth = 0;
  let failures = failedOpens;
  let sharedMember = null; // the member given to waiting leases: later ones share it
  let leaseOutcome = null; // background: what waiting leases' one open came to
  const share = (member, w) => {
    extra.set(member, (extra.get(member) ?? 0) + 1);
    plan.assign.push([member, w]);
    sharedMember = member;
  };
  for (const w of waiters) {
    let busiest = null;
    if (w.shared) {
      if (sharedMember !== null) {
        share(sharedMember, w);
        continue;
      }
      let member;
      [member, busiest] = pickShared(members, threshold, extra, taken);
      if (member === null && busiest !== null && background) {
        member = busiest;
        if (opening + growth === 0 && size + growth < settings.maxConnections) growth++;
      }
      if (member !== null) {
        share(member, w);
        continue;
      }
    } else {
      const member = pickIdle(members, extra, taken);
      if (member !== null) {
        taken.add(member);
        plan.assign.push([member, w]);
        continue;
      }
    }
    // Nothing to hand out now: this waiter needs a new member, or a release.
    const late = w.deadline <= now;
    if (background && w.shared && leaseOutcome !== null) {
      if (leaseOutcome === OPEN_FAILED) plan.fail.push([w, OPEN_FAILED]);
      else if (late) plan.fail.push([w, TIMEOUT]);
      continue; // else covered by the waiting leases' one open
    }
    if (failures > 0) {
      failures--;
      if (w.shared && busiest !== null) {
        share(busiest, w);
      } else {
        plan.fail.push([w, OPEN_FAILED]);
        if (w.shared) leaseOutcome = OPEN_FAILED;
      }
      continue;
    }
    if (spare > 0 && !late) {
      spare--;
    } else if (size + growth < settings.maxConnections && !late) {
      growth++;
    } else if (w.shared && busiest !== null) {
      share(busiest, w); // full, or out of time: share the least busy
      continue;
    } else if (late) {
      plan.fail.push([w, TIMEOUT]);
      continue;
    }
    if (w.shared) leaseOutcome = 'waiting';
  }
  plan.open = growth;
  plan.unclaimed = failures;
  const count = size - opening; // live members, not counting opens that may yet fail
  const idleTimeout = settings.idleTimeout ?? Infinity;
  if (idleTimeout !== Infinity && count > settings.minConnections) {
    const expired = [];
    for (const m of members) {
      if (m !== keep && m.usable && !m.leased && m.shared === 0 && !extra.has(m) && !taken.has(m) && now - m.idleSince >= idleTimeout) {
        expired.push(m);
      }
    }
    expired.sort((a, b) => a.idleSince - b.idleSince);
    for (const m of expired.slice(0, count - settings.minConnections)) {
      plan.close.push([m, IDLE]);
      size--;
    }
  }
  plan.refill = Math.max(0, settings.minConnections - size - growth);
  return plan;
}

module.exports = { planPool, pickIdle, pickShared, DEAD, IDLE, TIMEOUT, OPEN_FAILED };
