"""The pool's bookkeeping on plain data (ipc_client/pool_plan.py): no sockets,
no clock, no event loop. Mirrored by js-client/test/pool_plan.test.js."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import pytest

from ipc_client.pool_plan import DEAD, IDLE, OPEN_FAILED, TIMEOUT, PoolPlan, PoolSettings, pick_idle, pick_shared, plan_pool


@dataclass(eq=False)
class M:
    name: str
    usable: bool = True
    leased: bool = False
    shared: int = 0
    idle_since: float = 0.0


@dataclass(eq=False)
class W:
    name: str
    shared: bool = False
    deadline: float = math.inf


def lease(name: str, deadline: float = math.inf) -> W:
    return W(name, shared=True, deadline=deadline)


WAIT = PoolSettings(min_connections=0, max_connections=2)
BACKGROUND = PoolSettings(min_connections=0, max_connections=2, lease_growth="background")


def names(pairs: list[tuple[Any, Any]]) -> list[tuple[str, str]]:
    return [(a.name, b if isinstance(b, str) else b.name) for a, b in pairs]


def assigned(plan: PoolPlan) -> list[tuple[str, str]]:
    return names(plan.assign)


# -- acquire: idle members, FIFO, growth up to max_connections ----------------------------


def test_an_acquire_gets_the_most_recently_freed_idle_member() -> None:
    a, b, c = M("a", idle_since=1), M("b", idle_since=3), M("c", idle_since=2)
    plan = plan_pool([a, b, c], [W("w")], WAIT, now=10)
    assert assigned(plan) == [("b", "w")]
    assert plan.open == 0 and plan.close == [] and plan.fail == []


def test_waiters_are_served_first_come_first_served() -> None:
    a, b = M("a", idle_since=1), M("b", idle_since=2)
    plan = plan_pool([a, b], [W("first"), W("second"), W("third")], PoolSettings(0, 2), now=10)
    assert assigned(plan) == [("b", "first"), ("a", "second")]  # third waits: the pool is full
    assert plan.open == 0 and plan.fail == []


def test_held_and_shared_members_are_not_handed_to_an_acquire() -> None:
    held, shared = M("held", leased=True), M("shared", shared=2)
    plan = plan_pool([held, shared], [W("w")], PoolSettings(0, 3), now=0)
    assert plan.assign == [] and plan.open == 1  # an acquire never shares


def test_opens_one_member_per_waiter_up_to_max_counting_opens_in_flight() -> None:
    settings = PoolSettings(0, 4)
    waiters = [W("a"), W("b"), W("c"), W("d"), W("e")]
    assert plan_pool([], waiters, settings, now=0).open == 4
    assert plan_pool([], waiters, settings, now=0, opening=3).open == 1  # three already cover a, b, c
    assert plan_pool([M("x", leased=True)], waiters, settings, now=0, opening=3).open == 0  # full
    assert plan_pool([], waiters[:2], settings, now=0, opening=2).open == 0  # both covered


def test_a_full_pool_opens_nothing_and_the_waiter_waits_for_a_release() -> None:
    members = [M("a", leased=True), M("b", leased=True)]
    plan = plan_pool(members, [W("w")], WAIT, now=0)
    assert (plan.assign, plan.fail, plan.open, plan.close) == ([], [], 0, [])


# -- failed opens -------------------------------------------------------------------------


def test_a_failed_open_fails_the_oldest_waiter_waiting_for_a_new_member() -> None:
    idle = M("idle")
    plan = plan_pool([idle], [W("served"), W("first"), W("second")], PoolSettings(0, 3), now=0, opening=1, failed_opens=1)
    assert assigned(plan) == [("idle", "served")]  # it had a member to take: not the one failed
    assert names(plan.fail) == [("first", OPEN_FAILED)]
    assert plan.open == 0  # second is covered by the open still in flight
    assert plan.unclaimed == 0


def test_each_failed_open_fails_one_waiter_and_the_freed_slot_serves_the_next() -> None:
    plan = plan_pool([], [W("a"), W("b")], PoolSettings(0, 1), now=0, failed_opens=1)
    assert names(plan.fail) == [("a", OPEN_FAILED)]
    assert plan.open == 1  # b gets an attempt of its own in the freed slot (and fails fast too)


def test_a_failed_open_nobody_waited_on_is_unclaimed() -> None:
    plan = plan_pool([M("a", leased=True)], [], WAIT, now=0, failed_opens=2)
    assert plan.unclaimed == 2 and plan.fail == []


def test_a_lease_whose_open_failed_shares_a_busy_member_instead_of_failing() -> None:
    busy = M("busy", shared=1)
    plan = plan_pool([busy], [lease("l")], WAIT, now=0, failed_opens=1)
    assert assigned(plan) == [("busy", "l")] and plan.fail == []


def test_background_leases_fail_together_when_their_one_open_fails() -> None:
    held = M("held", leased=True)
    waiters = [lease("l1"), W("acq"), lease("l2")]
    plan = plan_pool([held], waiters, PoolSettings(0, 3, lease_growth="background"), now=0, opening=1, failed_opens=1)
    assert names(plan.fail) == [("l1", OPEN_FAILED), ("l2", OPEN_FAILED)]
    assert plan.open == 0  # the acquire is covered by the open still in flight


# -- dead members ---------------------------------------------------------------------------


def test_dead_members_nobody_holds_are_closed_and_their_slots_reused() -> None:
    dead, held_dead = M("dead", usable=False), M("held_dead", usable=False, leased=True)
    plan = plan_pool([dead, held_dead], [W("w")], WAIT, now=0)
    assert names(plan.close) == [("dead", DEAD)]  # the held one waits for its release
    assert plan.assign == [] and plan.open == 1  # the dead one's slot; the held one still counts


def test_a_dead_member_below_min_connections_is_to_be_refilled() -> None:
    plan = plan_pool([M("dead", usable=False), M("ok")], [], PoolSettings(2, 4), now=0)
    assert names(plan.close) == [("dead", DEAD)] and plan.refill == 1
    assert plan_pool([], [], PoolSettings(2, 4), now=0, opening=2).refill == 0  # opens in flight count


# -- idle members ---------------------------------------------------------------------------


def test_idle_members_above_min_are_closed_oldest_first_down_to_min() -> None:
    settings = PoolSettings(1, 5, idle_timeout=10)
    old, older, recent, busy = M("old", idle_since=5), M("older", idle_since=1), M("recent", idle_since=95), M("busy", shared=1)
    plan = plan_pool([old, older, recent, busy], [], settings, now=100)
    assert names(plan.close) == [("older", IDLE), ("old", IDLE)]  # recent is not idle long enough
    tight = plan_pool([old, older, busy], [], PoolSettings(2, 5, idle_timeout=10), now=100)
    assert names(tight.close) == [("older", IDLE)]  # down to min_connections, not below
    assert plan.refill == 0


def test_idle_members_are_kept_without_idle_timeout_or_when_pinned() -> None:
    a, b = M("a", idle_since=0), M("b", idle_since=0)
    assert plan_pool([a, b], [], PoolSettings(0, 2), now=1e9).close == []
    plan = plan_pool([a, b], [], PoolSettings(0, 2, idle_timeout=1), now=100, keep=a)
    assert names(plan.close) == [("b", IDLE)]  # a carries the registrations


def test_a_member_handed_out_by_the_plan_is_not_closed_for_idleness() -> None:
    a = M("a", idle_since=0)
    plan = plan_pool([a], [W("w")], PoolSettings(0, 2, idle_timeout=1), now=100)
    assert assigned(plan) == [("a", "w")] and plan.close == []


# -- acquire timeout -------------------------------------------------------------------------


def test_waiters_past_their_deadline_fail_with_timeout() -> None:
    held = M("held", leased=True)
    plan = plan_pool([held], [W("late", deadline=5), W("on_time", deadline=50)], PoolSettings(0, 1), now=5)
    assert names(plan.fail) == [("late", TIMEOUT)]
    assert plan.assign == [] and plan.open == 0


def test_a_waiter_past_its_deadline_still_takes_a_free_member() -> None:
    # A zero timeout takes an idle member; only waiting is what times out.
    plan = plan_pool([M("a")], [W("late", deadline=1), W("next")], WAIT, now=2)
    assert assigned(plan) == [("a", "late")] and plan.fail == [] and plan.open == 1


def test_a_waiter_past_its_deadline_neither_opens_nor_keeps_an_open_from_the_next() -> None:
    assert names(plan_pool([], [W("late", deadline=1)], WAIT, now=2).fail) == [("late", TIMEOUT)]
    assert plan_pool([], [W("late", deadline=1)], WAIT, now=2).open == 0
    plan = plan_pool([], [W("late", deadline=1), W("next")], WAIT, now=2, opening=1)
    assert names(plan.fail) == [("late", TIMEOUT)] and plan.open == 0  # the open in flight is next's


def test_a_late_background_lease_covered_by_the_leases_open_times_out() -> None:
    settings = PoolSettings(0, 2, lease_growth="background")
    plan = plan_pool([], [lease("l1"), lease("l2", deadline=1)], settings, now=2)
    assert names(plan.fail) == [("l2", TIMEOUT)] and plan.open == 1


# -- lease (Python: a lease waits for growth) --------------------------------------------------


def test_a_lease_takes_an_idle_member_before_sharing_a_busy_one() -> None:
    busy, idle = M("busy", shared=3), M("idle")
    assert assigned(plan_pool([busy, idle], [lease("l")], WAIT, now=0)) == [("idle", "l")]


def test_a_lease_that_finds_every_member_busy_waits_for_a_new_one_while_there_is_room() -> None:
    busy = M("busy", shared=1)
    plan = plan_pool([busy], [lease("l")], WAIT, now=0)
    assert plan.assign == [] and plan.open == 1
    covered = plan_pool([busy], [lease("l1"), lease("l2")], WAIT, now=0, opening=1)
    assert assigned(covered) == [("busy", "l2")]  # l1 waits for the open; the pool is full for l2


def test_a_lease_in_a_full_pool_shares_the_least_busy_member() -> None:
    a, b = M("a", shared=3), M("b", shared=2)
    assert assigned(plan_pool([a, b], [lease("l")], WAIT, now=0)) == [("b", "l")]


def test_a_member_given_to_a_waiting_lease_goes_to_every_later_lease_not_to_acquires() -> None:
    freed = M("freed")
    plan = plan_pool([freed], [lease("l1"), W("acq"), lease("l2")], PoolSettings(0, 1), now=0)
    assert assigned(plan) == [("freed", "l1"), ("freed", "l2")]
    assert plan.open == 0  # the acquire waits for the member to be free again


def test_an_acquire_ahead_of_leases_gets_the_member_alone() -> None:
    freed = M("freed")
    plan = plan_pool([freed], [W("acq"), lease("l1"), lease("l2")], PoolSettings(0, 1), now=0)
    assert assigned(plan) == [("freed", "acq")]


def test_leases_are_never_given_a_member_held_by_an_acquire() -> None:
    plan = plan_pool([M("held", leased=True)], [lease("l")], PoolSettings(0, 1), now=0)
    assert plan.assign == [] and plan.open == 0


# -- lease (Node: growth in the background, lease_threshold) -----------------------------------


def test_background_leases_pack_a_member_up_to_the_threshold() -> None:
    settings = PoolSettings(0, 3, lease_threshold=3, lease_growth="background")
    busy, idle = M("busy", shared=2), M("idle")
    plan = plan_pool([busy, idle], [lease("l")], settings, now=0)
    assert assigned(plan) == [("busy", "l")] and plan.open == 0


def test_background_lease_at_the_threshold_shares_the_busiest_and_opens_one_more() -> None:
    busy = M("busy", shared=1)
    plan = plan_pool([busy], [lease("l")], BACKGROUND, now=0)
    assert assigned(plan) == [("busy", "l")] and plan.open == 1
    roomy = PoolSettings(0, 3, lease_growth="background")
    assert plan_pool([busy], [lease("l")], roomy, now=0, opening=1).open == 0  # one at a time, room or not
    full = plan_pool([busy, M("b2", shared=1)], [lease("l")], BACKGROUND, now=0)
    assert full.open == 0


def test_background_leases_with_nothing_usable_share_one_new_member() -> None:
    plan = plan_pool([], [lease("l1"), lease("l2"), lease("l3")], PoolSettings(0, 5, lease_growth="background"), now=0)
    assert plan.open == 1 and plan.assign == []
    mixed = plan_pool([], [lease("l1"), W("a"), lease("l2")], PoolSettings(0, 5, lease_growth="background"), now=0)
    assert mixed.open == 2  # one for the leases, one for the acquire


# -- the helpers and purity -----------------------------------------------------------------


def test_pick_helpers_read_the_extra_load_of_the_plan() -> None:
    a, b = M("a", idle_since=1), M("b", idle_since=2)
    assert pick_idle([a, b]) is b
    assert pick_idle([a, b], {b: 1}) is a
    assert pick_idle([a, b], taken={a, b}) is None
    c = M("c", shared=1)
    assert pick_shared([c, a], threshold=2) == (c, c)
    assert pick_shared([c, a], threshold=1) == (a, c)
    assert pick_shared([c], threshold=1) == (None, c)


@pytest.mark.parametrize("growth", ["wait", "background"])
def test_the_plan_does_not_modify_what_it_is_given(growth: str) -> None:
    members = [M("a", shared=1), M("b", idle_since=1), M("dead", usable=False), M("old", idle_since=-100)]
    waiters = [lease("l"), W("w"), W("late", deadline=0)]
    before = copy.deepcopy((members, waiters))
    plan = plan_pool(members, waiters, PoolSettings(1, 4, idle_timeout=1, lease_growth=growth), now=5, opening=1)  # type: ignore[arg-type]
    assert plan.assign and plan.fail and plan.close
    assert [vars(m) for m in members] == [vars(m) for m in before[0]]
    assert [vars(w) for w in waiters] == [vars(w) for w in before[1]]
