"""SyncIPCClient: the blocking facade, from plain threads, against a real
server running on its own loop in another thread (docs/resilience.md §10)."""

from __future__ import annotations

import asyncio
import gc
import os
import queue
import socket
import threading
import time

import pytest

from ipc_client import ConnectionState, IPCClient, SyncIPCClient
from ipc_protocol import ConnectionLost, Message, NoResponders, NotConnected, RequestTimeout

from .sync_support import WAIT_S, ThreadedServer, sync_client, tserver  # noqa: F401 - fixtures


def test_blocking_calls(sync_client: SyncIPCClient) -> None:
    c = sync_client
    assert c.connected and c.state is ConnectionState.CONNECTED
    assert c.request("echo", {"a": 1}) == {"a": 1}
    reply = c.send_request("echo", [1, 2])
    assert isinstance(reply, Message) and reply.payload == [1, 2]
    assert c.publish("news", 1, ack=True) == 0
    assert c.publish("news", 1) is None
    c.notify("echo", 1)
    assert c.health_check() is True
    assert c.metrics()["messages_delivered"] >= 2
    assert c.get_connection_health()["state"] == "connected"
    assert c.get_connection_info()["connected"]
    assert c.queue_stats()["size"] == 0
    assert c.circuit_breakers() == {}
    assert "SyncIPCClient" in repr(c)


def test_typed_errors_and_deadlines(sync_client: SyncIPCClient) -> None:
    with pytest.raises(NoResponders):
        sync_client.request("nobody")
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        sync_client.request("never", timeout=0.1)
    assert time.monotonic() - started < 3.0


def test_subscribe_handlers_run_in_a_worker_thread_and_may_block(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    got: queue.Queue[tuple[object, str]] = queue.Queue()
    main = threading.current_thread()

    def on_news(msg: Message) -> None:
        assert threading.current_thread() is not main
        # A blocking call from the handler works: it does not run on the loop.
        answer = sync_client.request("echo", msg.payload)
        got.put((answer, threading.current_thread().name))

    sync_client.subscribe("news.*", on_news)
    with SyncIPCClient("app", "127.0.0.1", tserver.port) as other:
        for i in range(3):
            assert other.publish(f"news.{i}", i, ack=True) == 1
        results = [got.get(timeout=WAIT_S) for _ in range(3)]
    assert [r for r, _ in results] == [0, 1, 2]  # in arrival order
    assert all(name.startswith("ipc-client-handlers") for _, name in results)
    sync_client.unsubscribe("news.*", on_news)
    assert sync_client.publish("news.x", 1, ack=True) == 0


class Owner:
    """Its bound methods are new objects at each access, equal to one another."""

    def __init__(self) -> None:
        self.got: list[object] = []

    def on_msg(self, msg: Message) -> None:
        self.got.append(msg.payload)


def test_a_handler_is_held_once_and_called_once_per_message(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    """As IPCClient (README, subscribe): each subscribe() used to wrap the
    handler anew, so one subscribed twice, or to two matching patterns,
    ran twice per message, and one unsubscribe() left it subscribed."""
    got: list[tuple[str, object]] = []
    done: queue.Queue[object] = queue.Queue()
    owner = Owner()

    def twice(msg: Message) -> None:
        got.append(("twice", msg.payload))

    def overlapping(msg: Message) -> None:
        got.append(("overlapping", msg.payload))

    sync_client.subscribe("a.b", twice)
    sync_client.subscribe("a.b", twice)
    sync_client.subscribe("a.*", overlapping)
    sync_client.subscribe("a.b", overlapping)
    sync_client.subscribe("a.b", owner.on_msg)
    sync_client.subscribe("a.b", owner.on_msg)
    sync_client.subscribe("done", lambda msg: done.put(msg.payload))  # the worker thread is FIFO: it runs after the others

    def publish(n: int) -> None:
        with SyncIPCClient("app", "127.0.0.1", tserver.port) as other:
            assert other.publish("a.b", n, ack=True) == 1
            assert other.publish("done", n, ack=True) == 1
        assert done.get(timeout=WAIT_S) == n

    publish(1)
    assert sorted(got, key=str) == [("overlapping", 1), ("twice", 1)]
    assert owner.got == [1]

    # One unsubscribe removes a handler subscribed twice; one pattern of two leaves it on the other.
    sync_client.unsubscribe("a.b", twice)
    sync_client.unsubscribe("a.b", overlapping)
    sync_client.unsubscribe("a.b", owner.on_msg)
    got.clear()
    publish(2)
    assert got == [("overlapping", 2)]
    assert owner.got == [1]


def test_on_keeps_each_registration_as_ipcclient_does(tserver: ThreadedServer) -> None:
    """``on()`` is not ``subscribe()``: IPCClient calls a callback as often as it was registered."""
    calls: queue.Queue[str] = queue.Queue()

    def connected(info: object) -> None:
        calls.put(threading.current_thread().name)

    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    c.on("connected", connected)
    c.on("connected", connected)
    with c:
        assert [calls.get(timeout=WAIT_S), calls.get(timeout=WAIT_S)] == [c._workers._name] * 2

    async def on_ipcclient() -> int:
        count = 0

        def counted(info: object) -> None:
            nonlocal count
            count += 1

        client = IPCClient("app", "127.0.0.1", tserver.port)
        client.on("connected", counted)
        client.on("connected", counted)
        async with client:
            return count

    assert asyncio.run(on_ipcclient()) == 2


def test_serve_answers_with_a_sync_function(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    threads: list[str] = []

    def double(msg: Message) -> int:
        threads.append(threading.current_thread().name)
        return msg.payload * 2

    sync_client.serve("double", double)
    with SyncIPCClient("app", "127.0.0.1", tserver.port) as other:
        assert other.request("double", 21) == 42
    assert threads and threads[0] != threading.current_thread().name
    sync_client.unserve("double")
    with pytest.raises(NoResponders):
        sync_client.request("double", 1)


def test_event_callbacks_run_in_the_worker_thread(tserver: ThreadedServer) -> None:
    events: queue.Queue[str] = queue.Queue()
    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    c.on("connected", lambda info: events.put(threading.current_thread().name))
    c.connect()
    assert events.get(timeout=WAIT_S).startswith("ipc-client-handlers")
    c.close()


def test_close_stops_the_thread_and_later_calls_fail(tserver: ThreadedServer) -> None:
    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    with c:
        assert c.request("echo", 1) == 1
    assert not c._thread.is_alive()
    with pytest.raises(NotConnected):
        c.request("echo", 1)
    c.close()  # twice is fine


def test_close_ends_the_calls_other_threads_are_making(tserver: ThreadedServer) -> None:
    # close() used to stop the loop while another thread was between its
    # closed-check and submitting its call: that call never ran, so the thread
    # blocked forever (or got RuntimeError once the loop was closed).
    for _ in range(8):
        c = SyncIPCClient("app", "127.0.0.1", tserver.port)
        c.connect()
        outcomes: list[object] = []
        stop = threading.Event()

        def caller() -> None:
            while not stop.is_set():
                try:
                    c.request("echo", 1, timeout=WAIT_S)
                    outcomes.append("ok")
                except Exception as exc:
                    outcomes.append(exc)

        threads = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + WAIT_S
        while outcomes.count("ok") < 8 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert outcomes.count("ok") >= 8
        c.close()
        stop.set()
        for t in threads:
            t.join(WAIT_S)
        assert not any(t.is_alive() for t in threads), "a call was still blocked after close()"
        errors = [o for o in outcomes if o != "ok"]
        assert all(isinstance(e, (NotConnected, ConnectionLost)) for e in errors), {type(e).__name__ for e in errors}
        with pytest.raises(NotConnected):
            c.request("echo", 1)


def test_bad_arguments_raise_at_construction() -> None:
    with pytest.raises(ValueError):
        SyncIPCClient("")
    c = SyncIPCClient("app", "127.0.0.1", 1, connect_timeout=1)
    with pytest.raises(NotConnected):
        c.connect()
    c.close()


async def test_calling_it_inside_a_running_loop_raises(tserver: ThreadedServer) -> None:
    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    with pytest.raises(RuntimeError, match="running event loop"):
        c.connect()
    with pytest.raises(RuntimeError):
        c.close()
    # The way to use it from async code: in a thread.
    assert await asyncio.to_thread(c.connect)
    assert await asyncio.to_thread(c.request, "echo", 5) == 5
    await asyncio.to_thread(c.close)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failed_with_block_closes_the_client() -> None:
    # __exit__ never runs when __enter__ raises: a failed connect used to
    # leave the client's loop thread and its file descriptors behind.
    port = _free_port()  # nothing listens there
    threads, fds = set(threading.enumerate()), len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(NotConnected):
            with SyncIPCClient("app", "127.0.0.1", port, connect_timeout=1, reconnect=False):
                pass  # pragma: no cover - never reached
    # none left behind (one an earlier test left may end meanwhile)
    assert not set(threading.enumerate()) - threads, [t.name for t in threading.enumerate()]
    assert len(os.listdir("/proc/self/fd")) <= fds


def test_async_handlers_and_callbacks_run_on_the_clients_loop(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    # An async handler used to be called in the worker thread and its
    # coroutine never awaited: nothing ran, though the publish counted it.
    got: queue.Queue[tuple[str, object]] = queue.Queue()

    async def on_news(msg: Message) -> None:
        await asyncio.sleep(0)
        got.put(("async", msg.payload))

    async def later(msg: Message) -> None:
        got.put(("returned", msg.payload))

    sync_client.subscribe("news", on_news)
    sync_client.subscribe("other", lambda msg: later(msg))  # a plain function returning a coroutine
    assert sync_client.publish("news", 1, ack=True) == 1
    assert got.get(timeout=WAIT_S) == ("async", 1)
    assert sync_client.publish("other", 2, ack=True) == 1
    assert got.get(timeout=WAIT_S) == ("returned", 2)
    sync_client.unsubscribe("news", on_news)
    assert sync_client.publish("news", 3, ack=True) == 0

    events: queue.Queue[str] = queue.Queue()

    async def connected(info: object) -> None:
        events.put(threading.current_thread().name)

    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    c.on("connected", connected)
    with c:
        assert events.get(timeout=WAIT_S) == c._thread.name


def test_a_client_dropped_unclosed_stops_its_thread_and_closes_its_connection(tserver: ThreadedServer, caplog: pytest.LogCaptureFixture) -> None:
    """Its loop thread must not keep it alive: dropped, it closes itself,
    every task on its loop ended before the loop closes."""

    async def count() -> int:
        return len(tserver.server.connections)

    c = SyncIPCClient("dropped", "127.0.0.1", tserver.port)
    c.connect()
    c.subscribe("news", lambda msg: None)  # a wrapper the loop holds must not hold the client
    c.on("disconnected", lambda info: None)
    assert asyncio.run_coroutine_threadsafe(count(), tserver.loop).result(WAIT_S) == 1
    del c
    gc.collect()
    deadline = time.monotonic() + WAIT_S
    while any(t.name == "ipc-client-dropped" for t in threading.enumerate()) or asyncio.run_coroutine_threadsafe(count(), tserver.loop).result(WAIT_S):
        assert time.monotonic() < deadline, "the dropped client's thread or connection is still there"
        time.sleep(0.02)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []  # "Task was destroyed but it is pending!"


class LibraryAbort(BaseException):
    """A library's own BaseException, as some raise to unwind."""


@pytest.mark.parametrize("raised", [SystemExit(1), KeyboardInterrupt(), GeneratorExit(), LibraryAbort(), ValueError("bad")], ids=type)
def test_whatever_a_handler_raises_the_worker_thread_goes_on_and_reports_it(
    tserver: ThreadedServer, sync_client: SyncIPCClient, caplog: pytest.LogCaptureFixture, raised: BaseException
) -> None:
    """The one worker thread runs every later message and event callback:
    a handler's failure, BaseException or not, is logged and emitted as
    ``error`` (docs/resilience.md §10), and ends nothing."""
    later: queue.Queue[object] = queue.Queue()
    errors: queue.Queue[BaseException] = queue.Queue()

    def handler(msg: Message) -> None:
        if msg.payload == 0:
            raise raised
        later.put(msg.payload)

    def broken_listener(exc: BaseException) -> None:
        raise LibraryAbort("an error callback failing is logged, not emitted again")

    sync_client.on("error", broken_listener)
    sync_client.on("error", errors.put)
    sync_client.subscribe("ev", handler)
    with SyncIPCClient("app", "127.0.0.1", tserver.port) as publisher:
        for i in range(3):
            assert publisher.publish("ev", i, ack=True) == 1
    assert [later.get(timeout=WAIT_S), later.get(timeout=WAIT_S)] == [1, 2]
    assert errors.get(timeout=WAIT_S) is raised
    assert sync_client._workers._thread is not None and sync_client._workers._thread.is_alive()
    failed = [r for r in caplog.records if r.name == "ipc_client.sync" and "failed" in r.getMessage()]
    assert len(failed) == 2  # the handler's, the broken listener's
    with pytest.raises(queue.Empty):
        errors.get_nowait()  # the listener's failure was not emitted again


def test_the_handler_thread_outlives_a_call_that_escapes_its_guard(caplog: pytest.LogCaptureFixture) -> None:
    from ipc_client.handler_thread import HandlerThread

    def leave() -> None:
        raise SystemExit(1)

    worker, ran = HandlerThread("test-handlers"), threading.Event()
    worker.submit(leave)
    worker.submit(ran.set)
    assert ran.wait(WAIT_S)
    worker.shutdown()
    assert any("failed" in r.getMessage() for r in caplog.records)
