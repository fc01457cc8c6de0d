"""The connection pool's bookkeeping as a pure function (docs/resilience.md §7).

In the manner of httpcore's ``_assign_requests_to_connections``: the pool's
state and its queue of waiting callers go in, a :class:`PoolPlan` comes out
saying which members to close, which waiters to fail, which member goes to
which waiter and how many connections to open. Nothing here does I/O, reads
a clock or touches asyncio: the pool applies the plan, so every rule can be
tested on plain data (tests/test_pool_plan.py) and is written once, mirrored
line for line in js-client/lib/pool_plan.js.

A member is anything with ``usable`` (connected, not being closed),
``leased`` (held by one ``acquire()``), ``shared`` (``lease()`` calls in
flight on it) and ``idle_since`` (when it last became free). A waiter is
anything with ``shared`` (a ``lease()`` waiter, which may share a member)
and ``deadline`` (when its wait fails with :data:`TIMEOUT`). The plan never
modifies them: it returns references to them.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEAD",
    "IDLE",
    "OPEN_FAILED",
    "TIMEOUT",
    "PoolPlan",
    "PoolSettings",
    "pick_idle",
    "pick_shared",
    "plan_pool",
]

# Why a member is closed.
DEAD = "dead"  # its connection is gone and nobody holds it any more
IDLE = "idle"  # unused for idle_timeout while the pool is above min_connections
# Why a waiter fails.
TIMEOUT = "timeout"  # its deadline passed with nothing to hand it
OPEN_FAILED = "open_failed"  # the connection opened for it failed

_NOTHING: Mapping[Any, int] = {}
_NOBODY: Container[Any] = frozenset()


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The pool's limits, as the plan reads them.

    ``lease_growth`` says what a ``lease()`` does when every member it may
    share already carries ``lease_threshold`` calls: ``"wait"`` (Python) waits
    for a new member of its own while there is room, falling back to the least
    busy member if that open fails or the pool is full; ``"background"``
    (Node) shares the least busy member at once and opens one more in the
    background, and waiting leases (none usable at all) share one new member.
    """

    min_connections: int
    max_connections: int
    idle_timeout: float | None = None  # None keeps idle members
    lease_threshold: int = 1
    lease_growth: Literal["wait", "background"] = "wait"


@dataclass(slots=True)
class PoolPlan:
    """What the pool must do, in this order: close, fail, assign, open."""

    close: list[tuple[Any, str]] = field(default_factory=list)  # (member, DEAD | IDLE)
    fail: list[tuple[Any, str]] = field(default_factory=list)  # (waiter, TIMEOUT | OPEN_FAILED)
    assign: list[tuple[Any, Any]] = field(default_factory=list)  # (member, waiter)
    open: int = 0  # new connections for the waiters
    refill: int = 0  # connections missing below min_connections, opened at the pool's pace
    unclaimed: int = 0  # failed opens no waiter was waiting on


def pick_idle(members: Sequence[Any], extra: Mapping[Any, int] = _NOTHING, taken: Container[Any] = _NOBODY) -> Any:
    """The most recently freed usable member nobody uses, or None: reusing
    the warmest keeps the others idle long enough to be reaped."""
    best = None
    for m in members:
        if m.usable and not m.leased and m.shared + extra.get(m, 0) == 0 and m not in taken:
            if best is None or m.idle_since >= best.idle_since:
                best = m
    return best


def pick_shared(
    members: Sequence[Any], threshold: int, extra: Mapping[Any, int] = _NOTHING, taken: Container[Any] = _NOBODY
) -> tuple[Any, Any]:
    """(member for one more lease or None, least busy shared member or None).

    A shared member below ``threshold`` calls first, the least busy one, so
    calls stay on few connections; else an idle member. The second value is
    the fallback when neither exists.
    """
    least = None
    least_load = 0
    for m in members:
        if not m.usable or m.leased or m in taken:
            continue
        load = m.shared + extra.get(m, 0)
        if load > 0 and (least is None or load < least_load):
            least, least_load = m, load
    if least is not None and least_load < threshold:
        return least, least
    return pick_idle(members, extra, taken), least


def plan_pool(
    members: Sequence[Any],
    waiters: Sequence[Any],
    settings: PoolSettings,
    now: float,
    *,
    opening: int = 0,
    failed_opens: int = 0,
    keep: Any = None,
) -> PoolPlan:
    """Decide what the pool does next.

    ``opening`` counts connections being opened (they cover waiters, oldest
    first, and count toward ``max_connections``); ``failed_opens`` counts
    opens that failed since the last plan (no longer in ``opening``): each
    fails the oldest waiter that was waiting for a new member, so nobody
    waits on a connection that will never come. ``keep`` (the member carrying
    the pool's registrations) is never closed for idleness.

    Rules, in order: dead members nobody holds are closed; waiters are served
    first come, first served: an ``acquire()`` gets an idle member alone, a
    ``lease()`` a member to share (see :class:`PoolSettings`), and a member
    given to a waiting lease goes to every later waiting lease too; a waiter
    nothing can serve now fails with :data:`TIMEOUT` if past its deadline,
    else is covered by an open in flight, else by a new one while below
    ``max_connections``, else waits for a release. Then idle members above
    ``min_connections`` unused for ``idle_timeout`` are closed, oldest first.
    """
    plan = PoolPlan()
    size = opening  # members that count toward max_connections, opens included
    for m in members:
        if not m.usable and not m.leased and m.shared == 0:
            plan.close.append((m, DEAD))
        else:
            size += 1
    background = settings.lease_growth == "background"
    extra: dict[Any, int] = {}  # lease calls this plan adds to a member
    taken: set[Any] = set()  # members this plan lends to an acquire()
    spare = opening  # opens in flight not yet counted for a waiter
    growth = 0
    failures = failed_opens
    shared_member = None  # the member given to waiting leases: later ones share it
    lease_outcome: str | None = None  # background: what waiting leases' one open came to

    def share(member: Any, w: Any) -> None:
        nonlocal shared_member
        extra[member] = extra.get(member, 0) + 1
        plan.assign.append((member, w))
        shared_member = member

    for w in waiters:
        busiest = None
        if w.shared:
            if shared_member is not None:
                share(shared_member, w)
                continue
            member, busiest = pick_shared(members, settings.lease_threshold, extra, taken)
            if member is None and busiest is not None and background:
                member = busiest
                if opening + growth == 0 and size + growth < settings.max_connections:
                    growth += 1
            if member is not None:
                share(member, w)
                continue
        else:
            member = pick_idle(members, extra, taken)
            if member is not None:
                taken.add(member)
                plan.assign.append((member, w))
                continue
        # Nothing to hand out now: this waiter needs a new member, or a release.
        late = w.deadline <= now
        if background and w.shared and lease_outcome is not None:
            if lease_outcome == OPEN_FAILED:
                plan.fail.append((w, OPEN_FAILED))
            elif late:
                plan.fail.append((w, TIMEOUT))
            continue  # else covered by the waiting leases' one open
        if failures > 0:
            failures -= 1
            if w.shared and busiest is not None:
                share(busiest, w)
            else:
                plan.fail.append((w, OPEN_FAILED))
                if w.shared:
                    lease_outcome = OPEN_FAILED
            continue
        if spare > 0 and not late:
            spare -= 1
        elif size + growth < settings.max_connections and not late:
            growth += 1
        elif w.shared and busiest is not None:
            share(busiest, w)  # full, or out of time: share the least busy
            continue
        elif late:
            plan.fail.append((w, TIMEOUT))
            continue
        if w.shared:
            lease_outcome = "waiting"
    plan.open = growth
    plan.unclaimed = failures
    count = size - opening  # live members, not counting opens that may yet fail
    if settings.idle_timeout is not None and count > settings.min_connections:
        expired: list[Any] = []
        for m in members:
            if m is not keep and m.usable and not m.leased and m.shared == 0 and m not in extra and m not in taken:
                if now - m.idle_since >= settings.idle_timeout:
                    expired.append(m)
        expired.sort(key=lambda m: m.idle_since)
        for m in expired[: count - settings.min_connections]:
            plan.close.append((m, IDLE))
            size -= 1
    plan.refill = max(0, settings.min_connections - size - growth)
    return plan

