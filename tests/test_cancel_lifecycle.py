"""A connect(), disconnect(), drain() or pool start() cancelled at any step
ends as a cancel: it raises CancelledError unless it had finished, and
leaves the client in a state it can go on from (no connection it does not
know of, no client stuck closing). Each test cancels after k loop
iterations for every k up to the call's own end, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ipc_client import ConnectionPool, ConnectionState, IPCClient
from ipc_server import IPCServer

from .conftest import WAIT_S

MAX_STEPS = 60  # more loop iterations than any of these calls takes here


async def cancelled_after(steps: int, call: Awaitable[Any]) -> tuple[bool, BaseException | None]:
    """Run ``call``, cancel it after ``steps`` iterations: (whether the cancel
    came before its end, what it raised)."""
    task = asyncio.ensure_future(call)
    for _ in range(steps):
        await asyncio.sleep(0)
    cut = task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(task), WAIT_S)
    except asyncio.CancelledError as exc:
        return cut, exc
    return cut, None


async def sweep(make: Callable[[int], Awaitable[bool]]) -> None:
    """``make(k)`` for k = 0, 1, ... until the call ends before its cancel."""
    for steps in range(MAX_STEPS):
        if await make(steps):
            return
    raise AssertionError(f"still cut after {MAX_STEPS} steps")


async def test_a_cancelled_connect_raises_and_leaves_nothing_connected(server: IPCServer) -> None:
    async def attempt(steps: int) -> bool:
        client = IPCClient("app", "127.0.0.1", server.port)
        try:
            cut, raised = await cancelled_after(steps, client.connect())
            if cut:
                assert raised is not None, f"connect() cut after {steps} steps returned normally"
                assert client.state is ConnectionState.DISCONNECTED, steps
            else:
                assert client.state is ConnectionState.CONNECTED
            assert await asyncio.wait_for(client.connect(), WAIT_S)  # it goes on from there
            return not cut
        finally:
            await client.disconnect()

    await sweep(attempt)


async def test_a_cancelled_disconnect_or_drain_still_disconnects(server: IPCServer) -> None:
    server.add_handler("echo", lambda msg: msg.payload)
    for name in ("disconnect", "drain"):

        async def attempt(steps: int) -> bool:
            client = IPCClient("app", "127.0.0.1", server.port)
            await client.connect()
            try:
                cut, raised = await cancelled_after(steps, getattr(client, name)())
                assert cut == (raised is not None), f"{name}() cut after {steps} steps returned normally"
                if cut and client.state is ConnectionState.CONNECTED:
                    return False  # cut before it began to close: the client goes on, as it may
                assert client.state is ConnectionState.DISCONNECTED, (name, steps, client.state)
                assert await asyncio.wait_for(client.connect(), WAIT_S)  # never stuck closing
                assert await client.request("echo", steps, timeout=WAIT_S) == steps
                return not cut
            finally:
                await client.disconnect()

        await sweep(attempt)


async def test_a_second_disconnect_waits_for_the_first(server: IPCServer) -> None:
    client = IPCClient("app", "127.0.0.1", server.port)
    await client.connect()
    first = asyncio.ensure_future(client.disconnect())
    await asyncio.sleep(0)
    assert client.state is ConnectionState.DISCONNECTING
    await client.disconnect()
    assert client.state is ConnectionState.DISCONNECTED
    await first


async def test_a_cancelled_pool_start_leaves_no_connection_after_close(server: IPCServer) -> None:
    async def attempt(steps: int) -> bool:
        pool = ConnectionPool("pool", "127.0.0.1", server.port, min_connections=2, max_connections=2)
        cut, _ = await cancelled_after(steps, pool.start())
        await pool.close()
        async with asyncio.timeout(WAIT_S):
            while server.connections:  # the server sees every member's close
                await asyncio.sleep(0.01)
        return not cut

    await sweep(attempt)
