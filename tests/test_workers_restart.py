"""The ``--workers`` supervisor's restart policy (docs/cluster.md §7): a
dead worker is started again after 0.25 s, twice that each time it dies
again within 10 s of its start, at most 5 s; once one has stayed up 10 s,
its next death waits 0.25 s again. Pure functions: no worker waits here."""

from __future__ import annotations

from ipc_server.cluster.workers import STABLE_S, quick_deaths, restart_delay


def delays(uptimes: list[float]) -> list[float]:
    """The waits of a worker that dies after each of ``uptimes`` seconds up, as the supervisor counts them."""
    deaths, waits = 0, []
    for up in uptimes:
        deaths = quick_deaths(deaths, up)
        waits.append(restart_delay(deaths))
    return waits


def test_a_worker_that_keeps_dying_waits_longer_each_time_up_to_5_s() -> None:
    assert delays([0.5] * 8) == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_a_worker_that_stayed_up_10_s_is_started_again_after_the_least_wait() -> None:
    """The count never reset: after five quick deaths and 30 s up, the next death still waited 5 s."""
    assert delays([0.5] * 5 + [30.0]) == [0.25, 0.5, 1.0, 2.0, 4.0, 0.25]
    assert delays([STABLE_S] * 7) == [0.25] * 7  # dying now and then is not dying again and again
    assert delays([0.5, 0.5, 0.5, STABLE_S - 0.01]) == [0.25, 0.5, 1.0, 2.0]  # up less than 10 s: still dying
