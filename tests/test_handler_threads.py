"""A client's plain served handlers and plain stream generators run in its
own threads, one per running handler up to ``max_concurrent_handlers``,
never in the loop's small default executor (README, docs/resilience.md
§10): handlers that call the client back, or block, never wait for one
another. Real loopback TCP, real threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ipc_client import SyncIPCClient
from ipc_client.handler_threads import HandlerThreads
from ipc_protocol import Message
from ipc_server import IPCServer

from .conftest import ROOT, WAIT_S, until
from .sync_support import ThreadedServer, tserver  # noqa: F401 - fixtures

# More than the loop's default executor has threads (min(32, cpus + 4)).
BEYOND_DEFAULT = min(32, (os.cpu_count() or 1) + 4) + 2


class Count:
    """A counter handler threads add to."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


def settle(pred: Callable[[], bool]) -> None:
    """``until`` for a test without a loop."""
    deadline = time.monotonic() + WAIT_S
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.005)


async def test_plain_handlers_blocking_at_once_each_get_a_thread(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    together = threading.Barrier(BEYOND_DEFAULT, timeout=WAIT_S)  # passes only once all of them run at once

    def meet(msg: Message) -> int:
        together.wait()
        return int(msg.payload)

    await responder.serve("meet", meet)
    answers = await asyncio.gather(*(caller.request("meet", i, timeout=WAIT_S * 2) for i in range(BEYOND_DEFAULT)))
    assert answers == list(range(BEYOND_DEFAULT))
    assert {t.name for t in threading.enumerate() if t.name.startswith("ipc-client-app-handler")}


async def test_a_plain_request_is_answered_while_plain_generators_block_in_next(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    release, blocked = threading.Event(), Count()

    def waits(msg: Message) -> Iterator[int]:
        blocked.add()
        release.wait(WAIT_S)
        yield 1

    await responder.serve("waits", waits)
    await responder.serve("quick", lambda msg: "quick")

    async def read() -> list[Any]:
        async with caller.stream("waits", timeout=WAIT_S * 2) as stream:
            return [item async for item in stream]

    streams = [asyncio.ensure_future(read()) for _ in range(BEYOND_DEFAULT)]
    await until(lambda: blocked.value == BEYOND_DEFAULT)  # every generator is in its next()
    try:
        assert await caller.request("quick", timeout=WAIT_S) == "quick"
    finally:
        release.set()
    assert await asyncio.gather(*streams) == [[1]] * BEYOND_DEFAULT


async def test_threads_are_bounded_by_max_concurrent_handlers_and_end_with_disconnect(server: IPCServer, make_client: Callable[..., Any]) -> None:
    before = set(threading.enumerate())  # other tests' clients may still have handler threads of the same name
    caller, responder = await make_client(), await make_client(max_concurrent_handlers=2)
    release, running = threading.Event(), Count()

    def blocks(msg: Message) -> int:
        running.add()
        release.wait(WAIT_S)
        return int(msg.payload)

    await responder.serve("blocks", blocks)
    calls = [asyncio.ensure_future(caller.request("blocks", i, timeout=WAIT_S * 2)) for i in range(4)]
    await until(lambda: running.value == 2)
    assert len(responder._admission.threads) == 2 and len(responder._admission.tasks) == 2
    release.set()
    assert await asyncio.gather(*calls) == [0, 1, 2, 3]
    assert len(responder._admission.threads) == 2  # reused, not one per call
    threads = [t for t in threading.enumerate() if t.name.startswith("ipc-client-app-handler") and t not in before]
    assert threads and all(t.daemon for t in threads)
    await responder.disconnect()
    await until(lambda: not any(t.is_alive() for t in threads))  # idle ones end at once
    await responder.connect()  # a new connection gets new threads
    await responder.serve("twice", lambda msg: 2 * msg.payload)
    assert await caller.request("twice", 21, timeout=WAIT_S) == 42


def test_sync_handlers_calling_their_own_client_never_starve(tserver: ThreadedServer) -> None:
    """docs/resilience.md §10: a SyncIPCClient handler may call the blocking
    methods, for a channel the same client serves too, however many at once."""
    with SyncIPCClient("app", "127.0.0.1", tserver.port) as svc, SyncIPCClient("app", "127.0.0.1", tserver.port) as caller:
        svc.serve("inner", lambda msg: msg.payload * 2)
        svc.serve("outer", lambda msg: svc.request("inner", msg.payload, timeout=WAIT_S) + 1)
        with concurrent.futures.ThreadPoolExecutor(BEYOND_DEFAULT) as pool:
            answers = list(pool.map(lambda i: caller.request("outer", i, timeout=WAIT_S * 2), range(BEYOND_DEFAULT)))
        assert answers == [2 * i + 1 for i in range(BEYOND_DEFAULT)]


def test_a_handler_blocked_for_ever_holds_neither_disconnect_nor_the_programs_exit(tserver: ThreadedServer) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, threading
        from ipc_client import IPCClient

        started = threading.Event()

        def forever(msg):
            started.set()
            threading.Event().wait()

        async def main():
            async with IPCClient("app", "127.0.0.1", {tserver.port}) as worker, IPCClient("app", "127.0.0.1", {tserver.port}) as caller:
                await worker.serve("forever", forever)
                call = asyncio.ensure_future(caller.request("forever", timeout=30))
                await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
                await asyncio.wait_for(worker.disconnect(), 5)
                call.cancel()
            print("left")

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20, env=env, cwd=str(ROOT))
    assert done.returncode == 0 and "left" in done.stdout, done.stderr


def test_handler_threads_start_when_none_is_idle_and_hand_each_call_to_one() -> None:
    threads = HandlerThreads("test", 2)
    assert len(threads) == 0
    assert threads.submit(lambda: 1).result(WAIT_S) == 1
    settle(lambda: bool(threads._crew.idle))  # its result is set just before the thread turns idle
    assert threads.submit(lambda: 2).result(WAIT_S) == 2
    assert len(threads) == 1  # the idle one took the second
    release = threading.Event()
    first, second = threads.submit(release.wait, WAIT_S), threads.submit(release.wait, WAIT_S)
    third = threads.submit(lambda: 3)
    assert len(threads) == 2 and not third.done()  # waits for a thread
    release.set()
    assert (first.result(WAIT_S), second.result(WAIT_S), third.result(WAIT_S)) == (True, True, 3)
    with pytest.raises(ZeroDivisionError):
        threads.submit(lambda: 1 / 0).result(WAIT_S)
    threads.stop()


def test_stopping_handler_threads_cancels_waiting_calls_and_never_waits() -> None:
    threads = HandlerThreads("test", 1)
    release = threading.Event()
    busy = threads.submit(release.wait, WAIT_S)
    waiting = threads.submit(lambda: "never")
    threads.stop()
    assert waiting.cancelled() and not busy.done()
    assert threads.submit(lambda: "new").result(WAIT_S) == "new"  # a new thread: the old one is still busy
    release.set()
    assert busy.result(WAIT_S) is True
    threads.stop()
