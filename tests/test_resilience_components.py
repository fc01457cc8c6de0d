"""The resilience components without sockets or sleeping: the offline queue,
its SQLite store, the circuit breaker and the KPIs, on a fake clock."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ipc_client.circuit_breaker import CircuitBreaker, CircuitBreakerOptions, CircuitState
from ipc_client.metrics import ClientMetrics
from ipc_client.offline_queue import OfflineQueue, QueuedCall
from ipc_client.queue_store import QueueFileInUse, QueueStore
from ipc_protocol import CircuitOpen, ConnectionLost, HandlerError, QueueFull, RequestTimeout


def call(name: str, priority: int = 0, deadline: float = 100.0, size: int = 10, *, request: bool = False) -> QueuedCall:
    return QueuedCall(priority=priority, deadline=deadline, size=size, message=name, waiter=object() if request else None)


# -- offline queue --------------------------------------------------------------


def test_queue_sends_highest_priority_first_and_fifo_within_a_priority() -> None:
    q = OfflineQueue(max_size=10)
    for name, prio in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 9)]:
        q.push(call(name, prio))
    assert [e.message for e in q.drain()] == ["f", "b", "d", "a", "c", "e"]
    assert len(q) == 0 and q.bytes == 0


def test_queue_order_matches_a_sort_for_random_input() -> None:
    rng = random.Random(7)
    q = OfflineQueue(max_size=1000, max_bytes=10**9)
    items = [(rng.randint(-3, 3), i) for i in range(500)]
    for prio, i in items:
        q.push(call(str(i), prio))
    expected = [str(i) for prio, i in sorted(items, key=lambda t: (-t[0], t[1]))]
    assert [e.message for e in q.drain()] == expected


def test_reject_policy_raises_queue_full_by_count_and_by_bytes() -> None:
    q = OfflineQueue(max_size=2, max_bytes=1000)
    q.push(call("a"))
    q.push(call("b"))
    with pytest.raises(QueueFull):
        q.push(call("c"))
    q2 = OfflineQueue(max_size=100, max_bytes=25)
    q2.push(call("a", size=10))
    q2.push(call("b", size=10))
    with pytest.raises(QueueFull):
        q2.push(call("c", size=10))
    with pytest.raises(QueueFull):  # larger than the whole queue, whatever the policy
        OfflineQueue(max_bytes=5, overflow="drop_oldest").push(call("big", size=6))
    assert [e.message for e in q.drain()] == ["a", "b"]


def test_drop_oldest_evicts_the_oldest_whatever_its_priority() -> None:
    q = OfflineQueue(max_size=2, overflow="drop_oldest")
    q.push(call("old", 9))
    q.push(call("mid", 0))
    evicted = q.push(call("new", 0))
    assert [e.message for e in evicted] == ["old"]
    assert [e.message for e in q.drain()] == ["mid", "new"]
    assert q.stats()["dropped"] == 1


def test_drop_lowest_priority_evicts_the_oldest_of_the_lowest() -> None:
    q = OfflineQueue(max_size=3, overflow="drop_lowest_priority")
    q.push(call("low1", 0))
    q.push(call("high", 5))
    q.push(call("low2", 0))
    assert [e.message for e in q.push(call("mid", 3))] == ["low1"]
    # A newcomer below everything queued is the one refused.
    with pytest.raises(QueueFull):
        q.push(call("lowest", -1))
    assert [e.message for e in q.drain()] == ["high", "mid", "low2"]


def test_drop_lowest_priority_by_bytes_evicts_several_or_none() -> None:
    q = OfflineQueue(max_size=100, max_bytes=30, overflow="drop_lowest_priority")
    q.push(call("a", 1, size=10))
    q.push(call("b", 1, size=10))
    q.push(call("c", 9, size=10))
    with pytest.raises(QueueFull):  # would need to evict "c" (priority 9) for a priority-2 entry
        q.push(call("big", 2, size=30))
    assert [e.message for e in q.drain()] == ["c", "a", "b"]  # nothing was lost to the refused push


def test_expire_returns_entries_at_their_deadline_only() -> None:
    q = OfflineQueue()
    q.push(call("soon", deadline=1.0))
    q.push(call("later", deadline=2.0))
    q.push(call("never", deadline=50.0))
    assert q.next_deadline() == 1.0
    assert q.expire(0.5) == []
    assert [e.message for e in q.expire(2.0)] == ["soon", "later"]
    assert q.next_deadline() == 50.0
    assert [e.message for e in q.drain()] == ["never"]


def test_discard_and_stats() -> None:
    q = OfflineQueue(max_size=5, max_bytes=100)
    a, b = call("a", 1, size=7), call("b", 2, size=8)
    q.push(a)
    q.push(b)
    assert q.stats() == {"size": 2, "bytes": 15, "max_size": 5, "max_bytes": 100, "dropped": 0, "by_priority": {2: 1, 1: 1}}
    assert q.discard(a) and not q.discard(a)
    assert q.next_deadline() == 100.0
    assert [e.message for e in q.drain()] == ["b"]
    assert q.stats()["by_priority"] == {}


def test_zero_size_queue_refuses_everything() -> None:
    with pytest.raises(QueueFull):
        OfflineQueue(max_size=0).push(call("a"))


# -- SQLite store -----------------------------------------------------------------


def test_store_keeps_messages_across_instances_and_drops_expired(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = QueueStore(path)
    a = store.add(0, 1_000.0, b'{"a":1}')
    store.add(5, 2_000.0, b'{"b":2}')
    store.add(1, 10.0, b'{"old":3}')
    store.remove(a)
    store.close()
    again = QueueStore(path)
    rows, expired = again.load(now=500.0)
    assert [(r.priority, r.body) for r in rows] == [(5, b'{"b":2}')]
    assert expired == 1
    assert len(again) == 1
    again.close()


def test_store_has_one_owner_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    first = QueueStore(path)
    with pytest.raises(QueueFileInUse):
        QueueStore(path)  # a second client would send every row again
    first.close()
    QueueStore(path).close()  # free once the owner closed it


# -- circuit breaker ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def breaker(**options: object) -> tuple[CircuitBreaker, Clock, list[str]]:
    clock = Clock()
    changes: list[str] = []
    b = CircuitBreaker(
        "svc",
        CircuitBreakerOptions(**options),  # type: ignore[arg-type]
        clock=clock,
        on_change=lambda br, old: changes.append(f"{old.value}->{br.state.value}"),
    )
    return b, clock, changes


def fail(b: CircuitBreaker, error: BaseException | None = None) -> None:
    b.record(b.before_call(), error or RequestTimeout("slow"))


def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    b, clock, changes = breaker(failure_threshold=3, reset_timeout=10.0)
    fail(b)
    fail(b)
    b.record(b.before_call(), None)  # a success resets the streak
    fail(b)
    fail(b)
    assert b.state is CircuitState.CLOSED
    fail(b)
    assert b.state is CircuitState.OPEN and changes == ["closed->open"]
    clock.t = 4.0
    with pytest.raises(CircuitOpen) as info:
        b.before_call()
    assert info.value.code == "circuit_open"
    assert info.value.retry_after == pytest.approx(6.0)
    assert b.snapshot()["rejected"] == 1


def test_breaker_half_open_admits_limited_trials_then_closes() -> None:
    b, clock, changes = breaker(failure_threshold=1, reset_timeout=5.0, success_threshold=2, half_open_max_calls=1)
    fail(b)
    clock.t = 5.0
    t1 = b.before_call()
    assert b.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpen):  # only one trial at a time
        b.before_call()
    b.record(t1, None)
    assert b.state is CircuitState.HALF_OPEN
    b.record(b.before_call(), None)
    assert b.state is CircuitState.CLOSED
    assert changes == ["closed->open", "open->half_open", "half_open->closed"]


def test_breaker_half_open_failure_reopens_for_a_full_reset_timeout() -> None:
    b, clock, changes = breaker(failure_threshold=2, reset_timeout=5.0)
    fail(b)
    fail(b)
    clock.t = 5.0
    fail(b, ConnectionLost("down"))
    assert b.state is CircuitState.OPEN
    clock.t = 9.9
    with pytest.raises(CircuitOpen):
        b.before_call()
    clock.t = 10.0
    b.before_call()
    assert changes == ["closed->open", "open->half_open", "half_open->open", "open->half_open"]


def test_breaker_ignores_errors_that_blame_the_caller() -> None:
    b, _, _ = breaker(failure_threshold=1)
    b.record(b.before_call(), HandlerError("bad input", code="handler_error"))
    b.record(b.before_call(), ValueError("not a bridge error counts"))
    assert b.state is CircuitState.OPEN
    b2, _, _ = breaker(failure_threshold=1, is_failure=lambda e: False)
    fail(b2)
    assert b2.state is CircuitState.CLOSED


def test_results_of_calls_started_before_a_transition_do_not_count() -> None:
    b, clock, _ = breaker(failure_threshold=1, reset_timeout=1.0, success_threshold=1)
    stale = b.before_call()
    fail(b)
    assert b.state is CircuitState.OPEN
    b.record(stale, None)  # a success from before the circuit opened
    assert b.state is CircuitState.OPEN
    clock.t = 1.0
    token = b.before_call()
    b.release(token)  # cancelled trial frees its slot
    b.record(b.before_call(), None)
    assert b.state is CircuitState.CLOSED


def test_breaker_options_are_validated() -> None:
    for bad in ({"failure_threshold": 0}, {"reset_timeout": -1}, {"scope": "server"}):
        with pytest.raises(ValueError):
            CircuitBreakerOptions(**bad)  # type: ignore[arg-type]


# -- KPIs -------------------------------------------------------------------------------


def test_metrics_rates_and_averages() -> None:
    m = ClientMetrics()
    assert m.snapshot(0.0)["connection_success_rate"] == 1.0
    assert m.snapshot(0.0)["message_delivery_rate"] == 1.0
    m.attempt()
    m.opened(10.0)  # first connection: 10 s .. 20 s
    m.closed(20.0, will_reconnect=True)
    m.attempt()
    m.attempt()
    m.opened(22.0)  # back after 2 s
    m.sent(4)
    m.delivered(3)
    m.failed(1)
    snap = m.snapshot(26.0)
    assert snap["connection_attempts"] == 3 and snap["connection_successes"] == 2
    assert snap["connection_success_rate"] == pytest.approx(2 / 3)
    assert snap["reconnections"] == 1
    assert snap["average_reconnection_time_ms"] == pytest.approx(2000.0)
    assert snap["active_connections"] == 1
    assert snap["average_connection_duration_ms"] == pytest.approx((10.0 + 4.0) / 2 * 1000)
    assert snap["message_delivery_rate"] == pytest.approx(0.75)
    m.closed(30.0, will_reconnect=False)
    assert m.snapshot(30.0)["active_connections"] == 0
