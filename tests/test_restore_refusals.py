"""A registration that fails here, not at the server (a typed responder's
registration too large for the server's frame limit): serve() keeps
nothing, as the Node client, and a reconnection's restore drops it,
reports it on ``error`` and restores the others (docs/resilience.md §3),
where it failed every attempt and the client never came back; a pool's
replay on a new member drops it the same way (docs/resilience.md §7).
Real servers on loopback TCP, the second on the first one's port."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from ipc_client import ConnectionPool, IPCClient
from ipc_protocol import FrameTooLarge, NoResponders
from ipc_server import IPCServer

from .conftest import WAIT_S

SMALL_FRAMES = 2048
# 100 choices of 62 characters: the registration's schema is some 6.7 kB.
Choice = Literal[tuple(f"{'v' * 60}{i:02d}" for i in range(100))]  # type: ignore[valid-type]


def big(choice: Choice) -> int:  # type: ignore[valid-type]
    return 1


async def test_a_serve_the_server_cannot_be_sent_keeps_nothing() -> None:
    async with IPCServer("127.0.0.1", 0, max_frame_size=SMALL_FRAMES, no_responders_grace_s=0) as srv:
        client = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
        errors: list[BaseException] = []
        client.on("error", errors.append)
        await client.connect()
        try:
            for _ in range(2):  # the second is refused the same way, not AlreadyServing
                with pytest.raises(FrameTooLarge):
                    await asyncio.wait_for(client.serve("svc.big", big), WAIT_S)
                assert client.get_connection_info()["services"] == []
            assert [type(e) for e in errors] == [FrameTooLarge, FrameTooLarge]
            await client.serve("svc.big", lambda m: 2)  # an untyped responder fits
            assert await client.request("svc.big", None, timeout=WAIT_S) == 2
        finally:
            await client.disconnect()


async def test_a_registration_the_new_server_cannot_take_is_dropped_and_the_others_restored() -> None:
    first = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await first.start()
    port = first.port
    client = IPCClient("app", "127.0.0.1", port, initial_delay=0.01, max_delay=0.05)
    errors: list[BaseException] = []
    client.on("error", errors.append)
    reconnected = asyncio.Event()
    client.on("reconnected", lambda info: reconnected.set())
    got: asyncio.Queue[Any] = asyncio.Queue()
    try:
        await client.connect()
        await client.subscribe("keep.me", lambda m: got.put_nowait(m.payload))
        await client.serve("svc.big", big)
        await client.serve("svc.small", lambda m: "small")
        await first.close(grace_s=0)
        async with IPCServer("127.0.0.1", port, max_frame_size=SMALL_FRAMES, no_responders_grace_s=0) as second:
            await asyncio.wait_for(reconnected.wait(), WAIT_S)
            assert [type(e) for e in errors] == [FrameTooLarge]
            assert client.get_connection_info()["services"] == ["svc.small"]
            async with IPCClient("app", "127.0.0.1", second.port) as other:
                assert await other.publish("keep.me", "back", ack=True) == 1
                assert await asyncio.wait_for(got.get(), WAIT_S) == "back"
                assert await other.request("svc.small", None, timeout=WAIT_S) == "small"
                with pytest.raises(NoResponders):
                    await other.request("svc.big", None, timeout=WAIT_S)
    finally:
        await client.disconnect()
        await first.close(grace_s=0)


async def test_a_pool_drops_a_registration_its_new_member_cannot_make_and_replays_the_others() -> None:
    """The same through a pool, whose registrations are replayed on the
    member that replaces their registrar (docs/resilience.md §7): the
    replay re-raised any failure but a server refusal, so the responder
    too large for the new server's frames failed every member's open, the
    pool kept retrying, and nothing was restored."""
    first = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await first.start()
    port = first.port
    pool = ConnectionPool("app", "127.0.0.1", port, min_connections=1, max_connections=1, initial_delay=0.01, max_delay=0.05)
    errors: list[BaseException] = []
    pool.on("error", errors.append)
    created: asyncio.Queue[IPCClient] = asyncio.Queue()
    pool.on("member_created", created.put_nowait)
    got: asyncio.Queue[Any] = asyncio.Queue()
    try:
        await pool.start()
        await created.get()
        assert await pool.subscribe("keep.me", lambda m: got.put_nowait(m.payload))
        assert await pool.serve("svc.big", big)
        assert await pool.serve("svc.small", lambda m: "small")
        await first.close(grace_s=0)
        async with IPCServer("127.0.0.1", port, max_frame_size=SMALL_FRAMES, no_responders_grace_s=0) as second:
            await asyncio.wait_for(created.get(), WAIT_S)  # the replacement: opened with the others replayed
            assert [type(e) for e in errors] == [FrameTooLarge]  # reported once, on the pool's error
            async with IPCClient("app", "127.0.0.1", second.port) as other:
                assert await other.publish("keep.me", "back", ack=True) == 1
                assert await asyncio.wait_for(got.get(), WAIT_S) == "back"
                assert await other.request("svc.small", None, timeout=WAIT_S) == "small"
                with pytest.raises(NoResponders):
                    await other.request("svc.big", None, timeout=WAIT_S)
                assert await pool.serve("svc.big", lambda m: "untyped")  # dropped from the pool's tables: no AlreadyServing
                assert await other.request("svc.big", None, timeout=WAIT_S) == "untyped"
    finally:
        await pool.close()
        await first.close(grace_s=0)
