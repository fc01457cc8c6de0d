"""The server's plain in-process handlers and plain stream generators run in
its own threads, one per running handler (``HANDLER_THREADS``), never a
default-sized executor (min(32, cpus + 4): 6 on two cores): handlers that
block, or wait on other in-process calls, never wait for one another
(README, docs/protocol.md §6.2). Real loopback TCP, real threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ipc_client import SyncIPCClient
from ipc_protocol import Message
from ipc_server import IPCServer

from .conftest import WAIT_S, until
from .sync_support import ThreadedServer, tserver  # noqa: F401 - fixtures

# Twice what a default-sized executor has threads (min(32, cpus + 4)).
BEYOND_DEFAULT = 2 * min(32, (os.cpu_count() or 1) + 4)


async def test_plain_handlers_blocking_at_once_each_get_a_thread(server: IPCServer, make_client: Callable[..., Any]) -> None:
    together = threading.Barrier(BEYOND_DEFAULT, timeout=WAIT_S)  # passes only once all of them run at once

    def meet(msg: Message) -> int:
        together.wait()
        return int(msg.payload)

    server.add_handler("meet", meet)
    caller = await make_client()
    answers = await asyncio.gather(*(caller.request("meet", i, timeout=WAIT_S * 2) for i in range(BEYOND_DEFAULT)))
    assert answers == list(range(BEYOND_DEFAULT))
    threads = [t for t in threading.enumerate() if t.name.startswith("ipc-handler")]
    assert len(threads) >= BEYOND_DEFAULT and all(t.daemon for t in threads)
    await server.close(0)
    await until(lambda: not any(t.is_alive() for t in threads))  # idle ones end with the server


async def test_a_plain_request_is_answered_while_plain_generators_block_in_next(server: IPCServer, make_client: Callable[..., Any]) -> None:
    release, lock, blocked = threading.Event(), threading.Lock(), [0]

    def waits(msg: Message) -> Iterator[int]:
        with lock:
            blocked[0] += 1
        release.wait(WAIT_S)
        yield 1

    server.add_handler("waits", waits)
    server.add_handler("quick", lambda msg: "quick")
    caller = await make_client()

    async def read() -> list[Any]:
        async with caller.stream("waits", timeout=WAIT_S * 2) as stream:
            return [item async for item in stream]

    streams = [asyncio.ensure_future(read()) for _ in range(BEYOND_DEFAULT)]
    try:
        await until(lambda: blocked[0] == BEYOND_DEFAULT)  # every generator is in its next()
        assert await caller.request("quick", timeout=WAIT_S) == "quick"
    finally:
        release.set()
    assert await asyncio.gather(*streams) == [[1]] * BEYOND_DEFAULT


def test_plain_handlers_waiting_on_other_in_process_calls_never_starve(tserver: ThreadedServer) -> None:  # noqa: F811
    """Each outer handler holds its thread until an inner one, in the same
    server, answers: more outers than a default executor's threads took
    every thread, and the inners waited until the outers' deadlines."""
    with SyncIPCClient("inside", "127.0.0.1", tserver.port) as inside, SyncIPCClient("app", "127.0.0.1", tserver.port) as caller:
        tserver.server.add_handler("inner", lambda msg: msg.payload * 2)
        tserver.server.add_handler("outer", lambda msg: inside.request("inner", msg.payload, timeout=WAIT_S) + 1)
        with concurrent.futures.ThreadPoolExecutor(BEYOND_DEFAULT) as pool:
            calls = [pool.submit(caller.request, "outer", i, timeout=WAIT_S * 2) for i in range(BEYOND_DEFAULT)]
            assert [c.result(WAIT_S * 3) for c in calls] == [2 * i + 1 for i in range(BEYOND_DEFAULT)]
