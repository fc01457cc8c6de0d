"""A graceful shutdown fails no call of a busy client (docs/resilience.md
§12, docs/protocol.md §13 item 3): told ``goaway``, the client sends nothing
new on the connection and closes it once its calls have their answers.
Before, 16 to 40 of 40 calls in flight ended ``ConnectionLost`` (reset)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from ipc_client import IPCClient
from ipc_protocol import ShuttingDown
from ipc_server import IPCServer

from .conftest import WAIT_S

IN_FLIGHT = 40


async def until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.005)

CALLS = 400  # per loop at most: the loops end once the client leaves `connected`


async def test_every_call_in_flight_at_a_close_ends_with_its_answer_or_shutting_down() -> None:
    server = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await server.start()
    try:
        server.add_handler("echo", lambda m: m.payload)
        client = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
        await client.connect()
        causes: list[Any] = []
        client.on("disconnected", causes.append)
        out: Counter[str] = Counter()
        busy = asyncio.Event()

        async def loop() -> None:
            for _ in range(CALLS):
                if client.state.value != "connected":
                    return
                try:
                    await client.request("echo", 1, timeout=WAIT_S)
                    out["ok"] += 1
                    if out["ok"] >= IN_FLIGHT * 5:
                        busy.set()
                except Exception as exc:  # noqa: BLE001 - counted by type
                    out[type(exc).__name__] += 1

        loops = [asyncio.ensure_future(loop()) for _ in range(IN_FLIGHT)]
        await asyncio.wait_for(busy.wait(), WAIT_S)
        await asyncio.wait_for(server.close(), WAIT_S)
        await asyncio.wait_for(asyncio.gather(*loops), WAIT_S)
        assert set(out) <= {"ok", "ShuttingDown"}, out
        assert len(causes) == 1 and isinstance(causes[0], ShuttingDown)
        await client.disconnect()
    finally:
        await server.close()


async def test_calls_made_during_the_close_wait_for_the_next_server() -> None:
    old = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await old.start()
    port = old.port
    release = asyncio.Event()

    async def slow(msg: Any) -> str:
        await release.wait()
        return "old"

    old.add_handler("who", slow)
    client = IPCClient("app", "127.0.0.1", port, reconnect=True, initial_delay=0.02, max_delay=0.1)
    await client.connect()
    told = asyncio.Event()
    client.on("disconnected", lambda cause: told.set())
    first = asyncio.ensure_future(client.request("who", timeout=WAIT_S))
    await until(lambda: old._calls.calls)  # the first call runs on the old server
    closing = asyncio.ensure_future(old.close(grace_s=WAIT_S))
    await until(lambda: old._shutdown.draining)
    release.set()  # answered within the grace, then the notice
    await asyncio.wait_for(told.wait(), WAIT_S)
    assert client.state.value == "reconnecting"
    later = asyncio.ensure_future(client.request("who", timeout=WAIT_S))  # queued: the old connection takes nothing new
    assert await asyncio.wait_for(first, WAIT_S) == "old"
    await asyncio.wait_for(closing, WAIT_S)
    async with IPCServer("127.0.0.1", port, no_responders_grace_s=0) as new:
        new.add_handler("who", lambda m: "new")
        assert await asyncio.wait_for(later, WAIT_S) == "new"
        await client.disconnect()
