"""Many deadlines on one timer (ipc_protocol.deadlines), on a fake clock."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

import pytest

from ipc_protocol.deadlines import Deadlines


class FakeTimers:
    """A clock and a scheduler that run callbacks only when advanced."""

    def __init__(self) -> None:
        self.now = 0.0
        self.scheduled: list[tuple[float, Callable[[], None], list[bool]]] = []

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimers.Handle:
        cancelled = [False]
        self.scheduled.append((when, callback, cancelled))
        return FakeTimers.Handle(cancelled)

    class Handle:
        def __init__(self, cancelled: list[bool]) -> None:
            self._cancelled = cancelled

        def cancel(self) -> None:
            self._cancelled[0] = True

    @property
    def armed(self) -> list[float]:
        return sorted(w for w, _, c in self.scheduled if not c[0])

    def advance(self, to: float) -> None:
        self.now = to
        while True:
            due = [t for t in self.scheduled if t[0] <= to and not t[2][0]]
            if not due:
                return
            first = min(due, key=lambda t: t[0])
            self.scheduled.remove(first)
            first[1]()


def make() -> tuple[Deadlines, FakeTimers, list[tuple[str, float]]]:
    timers = FakeTimers()
    expired: list[tuple[str, float]] = []
    d = Deadlines(lambda key: expired.append((key, timers.now)), clock=lambda: timers.now, call_at=timers.call_at)
    return d, timers, expired


def test_each_key_expires_once_at_its_deadline_in_deadline_order() -> None:
    d, timers, expired = make()
    d.add("late", 3.0)
    d.add("early", 1.0)
    d.add("middle", 2.0)
    timers.advance(0.99)
    assert expired == []
    timers.advance(1.0)
    assert expired == [("early", 1.0)]
    timers.advance(10.0)
    assert [k for k, _ in expired] == ["early", "middle", "late"]
    assert len(d) == 0 and timers.armed == []


def test_one_timer_serves_many_deadlines() -> None:
    d, timers, _ = make()
    for i in range(100):
        d.add(f"r{i}", 5.0 + i)
    assert timers.armed == [5.0]


def test_a_discarded_key_never_expires() -> None:
    d, timers, expired = make()
    d.add("answered", 1.0)
    d.add("waiting", 2.0)
    d.discard("answered")
    timers.advance(1.5)
    assert expired == []
    assert timers.armed == [2.0]  # the timer moved on to the live deadline
    timers.advance(2.0)
    assert expired == [("waiting", 2.0)]


def test_an_earlier_deadline_added_later_rearms_the_timer() -> None:
    d, timers, expired = make()
    d.add("long", 60.0)
    d.add("short", 1.0)
    assert timers.armed == [1.0]
    timers.advance(1.0)
    assert expired == [("short", 1.0)]
    assert "long" in d and timers.armed == [60.0]


def test_adding_a_live_key_again_replaces_its_deadline() -> None:
    d, timers, expired = make()
    d.add("k", 1.0)
    d.add("k", 5.0)
    timers.advance(2.0)
    assert expired == []
    timers.advance(5.0)
    assert expired == [("k", 5.0)]


def test_memory_follows_what_is_in_flight_not_what_was_sent() -> None:
    d, timers, expired = make()
    for i in range(10_000):
        d.add(f"r{i}", 60.0)
        if i >= 8:
            d.discard(f"r{i - 8}")
    assert len(d) == 8
    assert len(d._heap) <= 2 * 8 + 65
    timers.advance(60.0)
    assert sorted(k for k, _ in expired) == sorted(f"r{i}" for i in range(9992, 10_000))


def test_a_discarded_key_is_let_go_at_once() -> None:
    """What a key holds (a server's handler call: the request, its task) is
    freed when it is answered, not in a burst when the heap is rebuilt."""

    class Call:
        pass

    d, timers, expired = make()
    d.add("other", 30.0)
    call = Call()
    d.add(call, 60.0)
    gone = weakref.ref(call)
    d.discard(call)
    del call
    assert gone() is None
    key = Call()
    d.add(key, 20.0)
    d.add(key, 40.0)  # replaced: the entry for 20.0 is emptied and skipped
    timers.advance(40.0)
    assert [k for k, _ in expired] == ["other", key]


def test_a_callback_run_early_within_the_resolution_counts_as_due() -> None:
    timers = FakeTimers()
    expired: list[str] = []
    d = Deadlines(expired.append, clock=lambda: timers.now, call_at=timers.call_at, resolution=0.01)
    d.add("k", 1.0)
    d.add("later", 1.5)
    timers.now = 0.995  # the scheduler runs the 1.0 timer a little early
    when, callback, _ = timers.scheduled.pop(0)
    assert when == 1.0
    callback()
    assert expired == ["k"]
    assert timers.armed == [1.5]


def test_a_timer_run_early_by_the_scheduler_expires_what_it_was_armed_for() -> None:
    """uvloop runs timers up to half a millisecond early: re-arming would spin."""
    d, timers, expired = make()
    d.add("k", 1.0)
    d.add("later", 2.0)
    timers.now = 0.9996
    timers.scheduled.pop(0)[1]()
    assert [k for k, _ in expired] == ["k"]
    assert timers.armed == [2.0]


def test_one_failing_callback_does_not_strand_the_others() -> None:
    timers = FakeTimers()
    seen: list[str] = []

    def on_expired(key: str) -> None:
        seen.append(key)
        if key == "a":
            raise RuntimeError("boom")

    d = Deadlines(on_expired, clock=lambda: timers.now, call_at=timers.call_at)
    d.add("a", 1.0)
    d.add("b", 1.0)
    timers.now = 1.0
    with pytest.raises(RuntimeError):
        timers.scheduled.pop(0)[1]()
    assert seen == ["a", "b"] and len(d) == 0


def test_one_timer_callback_per_deadline_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        calls = 0
        done = loop.create_future()

        def call_at(when: float, callback: Callable[[], None]):  # type: ignore[no-untyped-def]
            def counted() -> None:
                nonlocal calls
                calls += 1
                callback()

            return loop.call_at(when, counted)

        d = Deadlines(done.set_result, clock=loop.time, call_at=call_at, resolution=1e-9)
        d.add("k", loop.time() + 0.0104)  # not a whole number of milliseconds
        assert await asyncio.wait_for(done, 5) == "k"
        return calls

    assert uvloop.run(main()) == 1


def test_clear_cancels_everything() -> None:
    d, timers, expired = make()
    d.add("a", 1.0)
    d.clear()
    assert timers.armed == []
    timers.advance(5.0)
    assert expired == [] and len(d) == 0


def test_keys_need_not_be_comparable() -> None:
    """The server keys forwarded requests by (connection, id): equal deadlines must not compare keys."""

    class Conn:
        pass

    d: Deadlines[tuple[Conn, str]]
    timers = FakeTimers()
    expired: list[tuple[Conn, str]] = []
    d = Deadlines(expired.append, clock=lambda: timers.now, call_at=timers.call_at)
    a, b = (Conn(), "x"), (Conn(), "x")
    d.add(a, 1.0)
    d.add(b, 1.0)
    timers.advance(1.0)
    assert expired == [a, b]
