"""A pool that recovers by itself, the Node one against the real Python
server, each scenario run by the Python pool too (docs/resilience.md §7):

- after a failed ``start()``, both keep opening members in the background
  and are back with ``min_connections`` once a server listens, with no
  call made (the Python pool stayed empty until a call opened a member);
- a registration the member replacing the registrar cannot make (a typed
  responder too large for the new server's frame limit) is dropped,
  reported on the pool's ``error``, and the others are replayed (both
  pools failed the whole replay on it, so no member opened again).

The Node side is ``node/pool_agent.js``."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Literal

import pytest
from conftest import WAIT_S
from test_js_pool import pool_agent  # noqa: F401 (a fixture)

from ipc_client import ConnectionPool, IPCClient
from ipc_protocol import NoResponders, NotConnected
from ipc_server import IPCServer

HOST = "127.0.0.1"
SMALL_FRAMES = 2048
# 100 choices of 62 characters: a registration's schema of some 6.7 kB.
CHOICES = [f"{'v' * 60}{i:02d}" for i in range(100)]
Choice = Literal[tuple(CHOICES)]  # type: ignore[valid-type]


def py_big(choice: Choice) -> int:  # type: ignore[valid-type]
    return 1


async def test_both_pools_open_their_members_once_a_server_listens_after_a_failed_start(pool_agent: Any) -> None:
    """The server starts after start() failed; neither pool is called until
    its member is there (Node's pool did this already; Python's never opened one)."""
    with socket.socket() as reserved:  # bound, not listening: refused, and no other process takes the port meanwhile
        reserved.bind((HOST, 0))
        port = reserved.getsockname()[1]
        agent = await pool_agent("pool", port=port, minConnections=1, maxConnections=2)
        assert (await agent.call_error("start"))["code"] == "not_connected"
        pool = ConnectionPool("app", HOST, port, min_connections=1, max_connections=2, initial_delay=0.02, max_delay=0.1)
        created: asyncio.Queue[IPCClient] = asyncio.Queue()
        pool.on("member_created", created.put_nowait)
        with pytest.raises(NotConnected):
            await pool.start()
    try:
        async with IPCServer(HOST, port) as server:
            server.add_handler("echo", lambda msg: msg.payload)
            await agent.wait_event("created")  # no call made: the pool's own retry
            await asyncio.wait_for(created.get(), WAIT_S)  # was: never, the pool stayed empty
            assert (await agent.call("stats"))["total"] == 1
            assert pool.stats()["total"] == 1
            assert await agent.call("request", channel="echo", payload=1, timeoutMs=2000) == 1
            assert await pool.request("echo", 2, timeout=2) == 2
            await agent.call("close")
    finally:
        await pool.close()


async def test_both_pools_drop_a_registration_the_new_member_cannot_make_and_replay_the_others(pool_agent: Any) -> None:
    first = IPCServer(HOST, 0, no_responders_grace_s=0)
    await first.start()
    port = first.port
    agent = await pool_agent("pool", port=port, minConnections=1, maxConnections=1)
    pool = ConnectionPool("app", HOST, port, min_connections=1, max_connections=1, initial_delay=0.02, max_delay=0.1)
    errors: list[BaseException] = []
    pool.on("error", errors.append)
    created: asyncio.Queue[IPCClient] = asyncio.Queue()
    pool.on("member_created", created.put_nowait)
    got: asyncio.Queue[Any] = asyncio.Queue()
    try:
        await agent.call("start")
        await agent.wait_event("created")
        assert await agent.call("subscribe", channel="node.keep") is True
        assert await agent.call("serve", channel="node.big", schema={"request": {"enum": CHOICES}}) is True
        assert await agent.call("serve", channel="node.small") is True
        await pool.start()
        await created.get()
        assert await pool.subscribe("py.keep", lambda m: got.put_nowait(m.payload))
        assert await pool.serve("py.big", py_big)
        assert await pool.serve("py.small", lambda m: "small")
        await first.close(grace_s=0)
        async with IPCServer(HOST, port, max_frame_size=SMALL_FRAMES, no_responders_grace_s=0) as second:
            await agent.wait_event("created")  # was: never, every open's replay failed
            await asyncio.wait_for(created.get(), WAIT_S)
            error = await agent.wait_event("error", lambda e: e["error"]["code"] == "too_large")  # its refills' failed opens are there too
            assert error["error"]["name"] == "FrameTooLargeError", error
            assert [type(e).__name__ for e in errors] == ["FrameTooLarge"]
            async with IPCClient("app", HOST, second.port) as other:
                assert await other.publish("node.keep", "back", ack=True) == 1
                message = await agent.wait_event("message")
                assert (message["channel"], message["payload"]) == ("node.keep", "back")
                assert await other.publish("py.keep", "back", ack=True) == 1
                assert await asyncio.wait_for(got.get(), WAIT_S) == "back"
                assert await other.request("node.small", 1, timeout=WAIT_S) == {"by": "node", "payload": 1}
                assert await other.request("py.small", None, timeout=WAIT_S) == "small"
                for channel in ("node.big", "py.big"):
                    with pytest.raises(NoResponders):
                        await other.request(channel, None, timeout=WAIT_S)
            assert sum(e["event"] == "error" and e["error"]["code"] == "too_large" for e in agent.events) == 1  # reported once
            await agent.call("close")
    finally:
        await pool.close()
        await first.close(grace_s=0)

