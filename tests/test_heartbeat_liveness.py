"""The clients' heartbeat keeps its promise (docs/protocol.md §9.2,
docs/resilience.md §5): a peer is declared dead after ``heartbeat_timeout``
of silence, and only once a ping went first. A timeout under the interval
in force pings at half the timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Heartbeat, HeartbeatAction
from ipc_server import IPCServer

from .conftest import WAIT_S
from .test_protocol_client import open_v2

PING, DEAD = HeartbeatAction.PING, HeartbeatAction.DEAD


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
