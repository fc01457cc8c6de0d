"""The clients' heartbeat keeps its promise (docs/protocol.md §9.2,
docs/resilience.md §5): a peer is declared dead after ``heartbeat_timeout``
of silence, and only once a ping went first. A timeout under the interval
in force pings at half the timeout; a check that wakes more than a period
late (our own loop stalled) pings before it blames the peer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Heartbeat, HeartbeatAction
from ipc_protocol.heartbeat import check_period
from ipc_server import IPCServer
from ipc_server.heartbeat_sweep import sweep_period

from .conftest import WAIT_S
from .test_protocol_client import open_v2

PING, DEAD, NONE = HeartbeatAction.PING, HeartbeatAction.DEAD, HeartbeatAction.NONE


# -- a timeout not over the interval ------------------------------------------------


@pytest.mark.parametrize(("interval", "timeout"), [(15.0, 1.0), (2.0, 2.0)])
def test_a_timeout_not_over_the_interval_pings_at_half_the_timeout(interval: float, timeout: float) -> None:
    hb = Heartbeat(interval, timeout, now=0.0)
    assert (hb.interval_s, hb.timeout_s) == (timeout / 2, timeout)
    assert hb.next_check(0.0) == pytest.approx(timeout / 2)  # it was the interval: no ping, dead on waking
    assert hb.poll(timeout / 2) is PING
    assert hb.next_check(timeout / 2) == pytest.approx(timeout / 2)
    assert hb.poll(timeout) is DEAD  # after the timeout of silence, a ping first


def test_a_timeout_under_the_interval_keeps_an_answering_peer() -> None:
    hb = Heartbeat(15.0, 1.0, now=0.0)
    now = 0.0
    for _ in range(30):  # 15 s, the interval the timeout is under
        now += 0.5
        assert hb.next_check(now - 0.5) == pytest.approx(0.5)
        assert hb.poll(now) is PING
        now += 0.01
        hb.pong_received(now)
    assert hb.latency_s == pytest.approx(0.01)


def test_next_check_wakes_at_the_death_when_it_comes_before_the_next_ping() -> None:
    hb = Heartbeat(1.0, 1.5, now=0.0)
    assert hb.poll(1.0) is PING
    assert hb.next_check(1.0) == pytest.approx(0.5)  # the death at 1.5, not the next ping at 2.0
    assert hb.poll(1.5) is DEAD


def test_the_client_protocol_pings_at_half_a_timeout_under_the_advertised_interval() -> None:
    proto = open_v2(heartbeat_timeout_s=1.0)  # the server advertises 15 s
    assert proto.start_heartbeat(0.0)
    assert proto.heartbeat is not None and (proto.heartbeat.interval_s, proto.heartbeat.timeout_s) == (0.5, 1.0)
    assert proto.tick(0.5) is PING


async def test_a_timeout_under_the_server_s_interval_pings_and_stays_connected() -> None:
    """Before, a client with heartbeat_timeout 0.5 s of a server advertising
    2 s never pinged and dropped the healthy connection at 2 s."""
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=2.0) as srv:
        client = IPCClient("app", "127.0.0.1", srv.port, heartbeat_timeout=0.5)
        beats: list[Any] = []
        dropped: list[Any] = []
        decided = asyncio.Event()

        def beat(ev: Any) -> None:
            beats.append(ev)
            if len(beats) >= 3:
                decided.set()

        def drop(ev: Any) -> None:
            dropped.append(ev)
            decided.set()

        client.on("heartbeat", beat)
        client.on("heartbeat_timeout", drop)
        client.on("disconnected", drop)
        client.on("error", lambda *_: None)
        await client.connect()
        try:
            health = client.get_connection_health()
            assert (health["heartbeat_interval_ms"], health["heartbeat_timeout_ms"]) == (250.0, 500.0)
            async with asyncio.timeout(WAIT_S):
                await decided.wait()
            assert dropped == [] and len(beats) >= 3  # three answered pings, under a third of the server's interval
            assert client.get_connection_health()["healthy"] is True
        finally:
            await client.disconnect()


# -- a check that wakes late: our loop stalled -------------------------------------


def asleep_until_the_death(hb: Heartbeat) -> float:
    """Ping at 1.0 and arm the check for the death at 2.0 (interval 1, timeout 2)."""
    assert hb.next_check(0.0) == pytest.approx(1.0)
    assert hb.poll(1.0) is PING
    assert hb.next_check(1.0) == pytest.approx(1.0)
    return 2.0


def test_a_check_that_wakes_late_pings_first_and_gives_an_interval_to_answer() -> None:
    hb = Heartbeat(1.0, 2.0, now=0.0)
    asleep_until_the_death(hb)
    assert hb.poll(5.0) is PING  # the loop was blocked 3 s: not the peer's silence (it was DEAD)
    assert hb.next_check(5.0) == pytest.approx(1.0, abs=1e-5)  # the interval (and the microsecond of silent_an_interval)
    hb.pong_received(5.01)
    assert hb.poll(6.0) is NONE


def test_a_peer_silent_after_the_stall_is_dead_an_interval_later() -> None:
    hb = Heartbeat(1.0, 2.0, now=0.0)
    asleep_until_the_death(hb)
    assert hb.poll(5.0) is PING
    hb.next_check(5.0)
    assert hb.poll(6.0) is DEAD


def test_an_excused_stall_leaves_the_last_frame_as_it_was() -> None:
    """Health, the heartbeat_timeout event and the error read last_received
    as the last frame: after an excuse they reported a silence of 1 s where
    the peer had been silent 5 s (and 2 s at the death, for 6 s)."""
    hb = Heartbeat(1.0, 2.0, now=0.0)
    asleep_until_the_death(hb)
    assert hb.poll(5.0) is PING  # excused: counted from 4.0
    assert hb.last_received == 0.0
    assert hb.silent_since == pytest.approx(4.0, abs=1e-5)
    hb.next_check(5.0)
    assert hb.poll(6.0) is DEAD
    assert 6.0 - hb.last_received == 6.0  # the silence reported: the real one
    hb.received(6.5)
    assert hb.last_received == hb.silent_since == 6.5
    hb.silent_an_interval(7.0)  # not reading: pinged, never dead; the peer said nothing
    assert (hb.last_received, hb.poll(7.0)) == (6.5, PING)


def test_a_stall_is_excused_once_a_silence() -> None:
    """A loop late at every check still declares a dead peer dead."""
    hb = Heartbeat(1.0, 2.0, now=0.0)
    asleep_until_the_death(hb)
    assert hb.poll(5.0) is PING
    hb.next_check(5.0)  # due at 6.0
    assert hb.poll(9.0) is DEAD  # late again, in the same silence
    hb = Heartbeat(1.0, 2.0, now=0.0)
    asleep_until_the_death(hb)
    assert hb.poll(5.0) is PING
    hb.received(5.5)  # a frame: a new silence
    hb.next_check(5.5)
    assert hb.poll(6.5) is PING
    hb.next_check(6.5)  # due at 7.5
    assert hb.poll(12.0) is PING  # a new stall, excused


def test_a_check_late_by_a_period_or_less_is_no_stall() -> None:
    hb = Heartbeat(1.0, 2.0, now=0.0)
    due = asleep_until_the_death(hb)
    assert hb.poll(due + check_period(1.0)) is DEAD


def test_a_poll_without_next_check_is_never_excused() -> None:
    """The server's sweep polls without next_check; its own late flag (heartbeat_sweep) excuses its stalls."""
    hb = Heartbeat(1.0, 2.0, now=0.0)
    assert hb.poll(1.0) is PING
    assert hb.poll(5.0) is DEAD


def test_a_late_check_with_a_recent_frame_excuses_nothing() -> None:
    hb = Heartbeat(1.0, 2.0, now=0.0)
    asleep_until_the_death(hb)
    hb.received(4.99)  # read as the loop came back
    assert hb.poll(5.0) is NONE
    assert hb.last_received == 4.99


def test_the_stall_bound_is_the_server_sweep_s_period() -> None:
    for interval in (0.01, 0.4, 1.0, 15.0):
        assert check_period(interval) == sweep_period(interval)
    assert (check_period(0.4), check_period(15.0)) == (0.1, 0.25)
