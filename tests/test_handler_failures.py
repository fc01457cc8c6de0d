"""Every served request ends in one answer, whatever its handler raises
(docs/protocol.md §6.3): a ``CancelledError`` the handler raised itself
(not a cancel of ours) is answered ``HandlerCancelled``, and
``GeneratorExit`` or a library's own ``BaseException`` ``handler_error``,
by a Python responder and by the server's in-process handlers alike; only
``KeyboardInterrupt`` and ``SystemExit`` on a loop in the main thread
propagate, ending ``asyncio.run()`` as asyncio expects. Real loopback TCP."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ipc_client import IPCClient, SyncIPCClient
from ipc_protocol import HandlerError, Message
from ipc_server import IPCServer

from .conftest import ROOT, WAIT_S
from .sync_support import ThreadedServer, tserver  # noqa: F401 - fixtures


class LibraryAbort(BaseException):
    """A library's own BaseException, as some raise to unwind."""


async def awaits_a_task_someone_cancelled(msg: Message) -> None:
    inner = asyncio.ensure_future(asyncio.sleep(60))
    await asyncio.sleep(0)
    inner.cancel()
    await inner  # raises CancelledError: nothing of the bridge's cancelled this handler


def sync_raises_cancelled(msg: Message) -> None:
    raise asyncio.CancelledError()


async def streams_then_raises_cancelled(msg: Message) -> AsyncIterator[int]:
    yield 1
    await awaits_a_task_someone_cancelled(msg)


def raised(payload: str) -> BaseException:
    return GeneratorExit() if payload == "generator_exit" else LibraryAbort("unwound")


async def async_raises(msg: Message) -> None:
    await asyncio.sleep(0)
    raise raised(msg.payload)


def sync_raises(msg: Message) -> None:
    raise raised(msg.payload)


async def never_waits_raises(msg: Message) -> None:
    raise LibraryAbort("unwound")


def sync_stream_raises(msg: Message) -> Iterator[int]:
    yield 1
    raise LibraryAbort("unwound")


async def answer_of(client: IPCClient, channel: str, payload: Any = None) -> HandlerError:
    with pytest.raises(HandlerError) as caught:
        await client.request(channel, payload, timeout=WAIT_S)
    return caught.value


async def stream_failure(client: IPCClient, channel: str) -> tuple[list[Any], HandlerError]:
    items: list[Any] = []
    with pytest.raises(HandlerError) as caught:
        async with client.stream(channel, timeout=WAIT_S) as stream:
            async for item in stream:
                items.append(item)
    return items, caught.value


def no_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()  # asyncio logs a task's unretrieved exception when the task is collected
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_python_responders_handler_that_raises_cancelled_error_itself_is_answered(server: IPCServer, make_client: Callable[..., Any]) -> None:
    caller, responder = await make_client(), await make_client()
    await responder.serve("awaits", awaits_a_task_someone_cancelled)
    await responder.serve("sync", sync_raises_cancelled)
    await responder.serve("stream", streams_then_raises_cancelled)
    for channel in ("awaits", "sync"):
        error = await answer_of(caller, channel)  # at once, not at the deadline
        assert error.remote_type == "HandlerCancelled" and channel in str(error)
    items, error = await stream_failure(caller, "stream")
    assert items == [1] and error.remote_type == "HandlerCancelled"
    assert responder.connected and await responder.health_check(WAIT_S)


async def test_a_requesters_cancel_still_cancels_the_handler_unanswered(server: IPCServer, make_client: Callable[..., Any]) -> None:
    """The task's own cancellation is not the handler's failure: no answer,
    the handler's CancelledError propagates (tests/test_cancel.py has more)."""
    caller, responder = await make_client(), await make_client()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(msg: Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await responder.serve("slow", slow)
    task = asyncio.ensure_future(caller.request("slow", timeout=WAIT_S))
    await asyncio.wait_for(started.wait(), WAIT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    assert responder._subs.producers.late_answers == 0
    assert server.stats.errors.get("handler_error", 0) == 0


@pytest.mark.parametrize("payload", ["generator_exit", "library"])
async def test_a_python_responders_handler_raising_a_base_exception_is_answered(
    server: IPCServer, make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture, payload: str
) -> None:
    caller, responder = await make_client(), await make_client()
    await responder.serve("async", async_raises)
    await responder.serve("sync", sync_raises)
    await responder.serve("now", never_waits_raises)
    await responder.serve("stream", sync_stream_raises)
    expected = "GeneratorExit" if payload == "generator_exit" else "LibraryAbort"
    for channel in ("async", "sync"):
        assert (await answer_of(caller, channel, payload)).remote_type == expected
    assert (await answer_of(caller, "now")).remote_type == "LibraryAbort"
    items, error = await stream_failure(caller, "stream")
    assert items == [1] and error.remote_type == "LibraryAbort" and "unwound" in str(error)
    assert await responder.health_check(WAIT_S)
    no_unretrieved(caplog)


@pytest.mark.parametrize("payload", ["generator_exit", "library"])
async def test_an_in_process_handler_raising_a_base_exception_is_answered(
    server: IPCServer, make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture, payload: str
) -> None:
    server.add_handler("async", async_raises)
    server.add_handler("sync", sync_raises)
    server.add_handler("now", never_waits_raises)
    server.add_handler("stream", sync_stream_raises)
    caller = await make_client()
    expected = "GeneratorExit" if payload == "generator_exit" else "LibraryAbort"
    for channel in ("async", "sync"):
        assert (await answer_of(caller, channel, payload)).remote_type == expected
    assert (await answer_of(caller, "now")).remote_type == "LibraryAbort"
    items, error = await stream_failure(caller, "stream")
    assert items == [1] and error.remote_type == "LibraryAbort"
    assert len(server._calls) == 0
    no_unretrieved(caplog)


class Unreadable:
    """A result that raises when its class is read, as a proxy with nothing
    behind it does (werkzeug's ``LocalProxy`` outside its context)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        raise RuntimeError("nothing behind the proxy")


async def awaits_then_returns_unreadable(msg: Message) -> Any:  # not annotated Unreadable: a typed contract would check it
    await asyncio.sleep(0)
    return Unreadable()


async def returns_unreadable_at_once(msg: Message) -> Any:  # not annotated Unreadable: a typed contract would check it
    return Unreadable()


def returns_unreadable(msg: Message) -> Any:  # not annotated Unreadable: a typed contract would check it
    return Unreadable()


async def test_a_result_that_raises_when_read_is_answered_as_the_handlers_failure(
    server: IPCServer, make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caller, responder = await make_client(), await make_client()
    handlers = {"async": awaits_then_returns_unreadable, "now": returns_unreadable_at_once, "sync": returns_unreadable}
    for name, fn in handlers.items():
        await responder.serve(f"client.{name}", fn)
        server.add_handler(f"server.{name}", fn)
    for name in handlers:
        for side in ("client", "server"):
            error = await answer_of(caller, f"{side}.{name}")
            assert error.remote_type == "RuntimeError" and "nothing behind the proxy" in str(error), f"{side}.{name}"
    assert await responder.health_check(WAIT_S)
    assert len(server._calls) == 0
    no_unretrieved(caplog)


def test_system_exit_in_a_handler_on_the_main_threads_loop_ends_asyncio_run(tserver: ThreadedServer) -> None:
    """As asyncio expects: the program ends with the handler's SystemExit."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from ipc_client import IPCClient

        async def leave(msg):
            await asyncio.sleep(0)
            sys.exit(7)

        async def main():
            async with IPCClient("app", "127.0.0.1", {tserver.port}) as worker, IPCClient("app", "127.0.0.1", {tserver.port}) as caller:
                await worker.serve("leave", leave)
                await caller.request("leave", timeout=30)
            print("not reached")

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env, cwd=str(ROOT))
    assert done.returncode == 7, done.stderr
    assert "not reached" not in done.stdout


def test_system_exit_in_a_sync_clients_handler_is_answered_and_the_client_lives_on(tserver: ThreadedServer, caplog: pytest.LogCaptureFixture) -> None:
    """SyncIPCClient's loop runs in its own thread: SystemExit there could
    not end the program, only kill that loop and hang every call on it."""
    caplog.set_level(logging.INFO)
    worker = SyncIPCClient("app", "127.0.0.1", tserver.port)
    worker.connect()
    try:
        with SyncIPCClient("app", "127.0.0.1", tserver.port) as caller:
            worker.serve("leave", lambda msg: sys.exit(3))
            worker.serve("interrupt", lambda msg: (_ for _ in ()).throw(KeyboardInterrupt()))
            for channel, expected in (("leave", "SystemExit"), ("interrupt", "KeyboardInterrupt")):
                with pytest.raises(HandlerError) as caught:
                    caller.request(channel, timeout=WAIT_S)
                assert caught.value.remote_type == expected
            assert worker._thread.is_alive() and worker.health_check(WAIT_S)
    finally:
        if worker._thread.is_alive():  # close() would wait forever for a loop the handler killed
            worker.close()
