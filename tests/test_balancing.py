"""Server selection and latency windows, without sockets or clocks
(docs/resilience.md §8, §9)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ipc_client.balancer import Balancer, Server, parse_server
from ipc_client.latency import LatencyWindow


def servers(*weights: float) -> list[Server]:
    return [Server("h", 9000 + i, w) for i, w in enumerate(weights)]


def picks(b: Balancer, n: int, **kw) -> list[int]:
    return [b.pick(**kw).port - 9000 for _ in range(n)]  # type: ignore[union-attr]


# -- parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (("127.0.0.1", 8888), ("127.0.0.1", 8888, 1)),
        (["h", 1], ("h", 1, 1)),
        ("example.org:9000", ("example.org", 9000, 1)),
        ("::1:9000", ("::1", 9000, 1)),
        ("[::1]:9000", ("::1", 9000, 1)),  # as in a URL, and as the Node client reads it
        ({"host": "h", "port": 2, "weight": 3}, ("h", 2, 3)),
        ({"host": "h", "port": 2, "weight": 0.5}, ("h", 2, 0.5)),
    ],
)
def test_parse_server_accepts_the_three_forms(spec, expected) -> None:
    s = parse_server(spec)
    assert (s.host, s.port, s.weight) == expected and s.healthy


@pytest.mark.parametrize(
    "spec",
    ["nohost", ":80", "[]:80", "h:port", "h:0", "h:70000", "h:８８８８", "h:1_0", "h: 80", "h:+80", "h:0x50", ("h",), ("", 80), {"host": "h"},
     # A tuple's or dict's port and weight are numbers, as in Node (which took ['h', '80']); text is "host:port"'s.
     ("h", "80"), ["h", "80"], {"host": "h", "port": "80"}, {"host": "h", "port": 1, "weight": "2"},
     {"host": "h", "port": 1, "weight": 0}, {"host": "h", "port": 1, "weight": True}, 42, None],
)
def test_parse_server_refuses_what_it_cannot_read(spec) -> None:
    with pytest.raises(ValueError):
        parse_server(spec)


def test_unknown_strategy_and_empty_list_are_refused() -> None:
    with pytest.raises(ValueError, match="round_robin"):
        Balancer(servers(1), "fastest")
    with pytest.raises(ValueError):
        Balancer([], "round_robin")


# -- strategies ------------------------------------------------------------------


def test_round_robin_cycles_and_skips_unhealthy_and_excluded() -> None:
    ss = servers(1, 1, 1)
    b = Balancer(ss, "round_robin")
    assert picks(b, 6) == [0, 1, 2, 0, 1, 2]
    ss[1].healthy = False
    assert picks(b, 4) == [0, 2, 0, 2]
    ss[1].healthy = True
    assert picks(b, 3) == [0, 1, 2]  # it rejoins at its place
    assert picks(b, 2, exclude=[ss[0]]) == [1, 2]
    for s in ss:
        s.healthy = False
    assert b.pick() is None


def test_least_connections_prefers_fewest_in_flight_and_rotates_ties() -> None:
    ss = servers(1, 1, 1)
    b = Balancer(ss, "least_connections")
    assert picks(b, 3) == [0, 1, 2]  # all idle: ties rotate
    ss[0].in_flight, ss[1].in_flight, ss[2].in_flight = 3, 1, 2
    assert picks(b, 3) == [1, 1, 1]
    ss[1].healthy = False
    assert picks(b, 2) == [2, 2]
    assert picks(b, 1, exclude=[ss[2]]) == [0]


def test_least_connections_balances_as_calls_start_and_finish() -> None:
    ss = servers(1, 1)
    b = Balancer(ss, "least_connections")
    first = b.pick()
    first.started()  # type: ignore[union-attr]
    second = b.pick()
    assert second is not first
    second.started()  # type: ignore[union-attr]
    first.finished(0.01, failed=False)  # type: ignore[union-attr]
    assert b.pick() is first


def test_smooth_weighted_spreads_the_heavy_server() -> None:
    b = Balancer(servers(5, 1, 1), "weighted")
    assert picks(b, 7) == [0, 0, 1, 0, 2, 0, 0]
    assert Counter(picks(b, 700)) == {0: 500, 1: 100, 2: 100}


def test_smooth_weighted_over_the_healthy_servers_only() -> None:
    ss = servers(3, 1, 2)
    b = Balancer(ss, "weighted")
    ss[2].healthy = False
    assert Counter(picks(b, 400)) == {0: 300, 1: 100}


def test_fractional_weights() -> None:
    b = Balancer(servers(0.5, 1.5), "weighted")
    assert Counter(picks(b, 400)) == {0: 100, 1: 300}


def test_random_is_reproducible_with_an_injected_source() -> None:
    a = Balancer(servers(1, 1, 1), "random", rng=random.Random(42))
    b = Balancer(servers(1, 1, 1), "random", rng=random.Random(42))
    seq = picks(a, 50)
    assert seq == picks(b, 50)
    assert set(seq) == {0, 1, 2}
    counts = Counter(picks(a, 3000))
    assert all(800 < n < 1200 for n in counts.values())


def test_random_skips_unhealthy() -> None:
    ss = servers(1, 1)
    ss[0].healthy = False
    b = Balancer(ss, "random", rng=random.Random(1))
    assert set(picks(b, 20)) == {1}


# -- per-server counters -----------------------------------------------------------


def test_server_snapshot() -> None:
    s = Server("h", 1, 2)
    assert s.snapshot() == {
        "host": "h", "port": 1, "weight": 2, "healthy": True, "in_flight": 0,
        "requests": 0, "errors": 0, "error_rate": 0.0, "average_latency_ms": None,
    }
    for latency, failed in ((0.010, False), (0.020, True), (0.030, False)):
        s.started()
        s.finished(latency, failed=failed)
    s.started()  # still in flight: counted once it ends (as Node)
    snap = s.snapshot()
    assert snap["requests"] == 3 and snap["in_flight"] == 1 and snap["errors"] == 1
    assert snap["error_rate"] == pytest.approx(1 / 3)
    assert snap["average_latency_ms"] == pytest.approx(20.0)


def test_server_average_latency_covers_every_call() -> None:
    """As Node's: the mean of every call that ended, not of a window of the last ones."""
    s = Server("h", 1)
    for i in range(2000):
        s.started()
        s.finished(1.0 if i < 1000 else 0.0, failed=False)
    assert s.snapshot()["average_latency_ms"] == pytest.approx(500.0)  # a window of the last 1024: 23.4


# -- latency window -------------------------------------------------------------------


def test_latency_window_empty() -> None:
    w = LatencyWindow()
    assert w.snapshot() == {"avg": None, "p50": None, "p99": None}
    assert w.rate(10.0) == 0.0 and len(w) == 0


def test_latency_window_percentiles_nearest_rank() -> None:
    w = LatencyWindow()
    for ms in random.Random(3).sample(range(1, 101), 100):
        w.add(ms / 1000)
    assert w.snapshot() == {"avg": 50.5, "p50": 50.0, "p99": 99.0}
    assert w.percentile_ms(100) == 100.0
    with pytest.raises(ValueError):
        w.percentile_ms(0)


def test_latency_window_keeps_the_last_1024() -> None:
    w = LatencyWindow()
    assert w.size == 1024
    for _ in range(2000):
        w.add(1.0)
    for _ in range(1024):
        w.add(0.002)
    assert len(w) == 1024 and w.snapshot() == {"avg": 2.0, "p50": 2.0, "p99": 2.0}


def test_latency_window_rate_over_the_span_it_covers() -> None:
    w = LatencyWindow(size=4)
    for i in range(10):
        w.add(0.5, started_at=9.5 + i)  # one call a second, each 0.5 s long
    # The last 4 calls started at 15.5 .. 18.5; at t=19.5 the window spans 4 s.
    assert w.rate(19.5) == pytest.approx(1.0)
    assert w.rate(23.5) == pytest.approx(0.5)  # the rate falls when calls stop
    assert w.rate(15.5) == 0.0  # a span that is not positive
    # A stream: its latency is the time to its first item, far shorter than
    # it lasted; the span runs from its start, whatever its latency.
    s = LatencyWindow()
    s.add(0.005, started_at=100.0)  # a 1 s stream, its first item after 5 ms
    assert s.rate(101.0) == pytest.approx(1.0)
    # The earliest start counts, not the first call to end.
    s.add(0.001, started_at=99.0)
    assert s.rate(101.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        LatencyWindow(0)
