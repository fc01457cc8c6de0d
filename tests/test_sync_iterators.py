"""SyncIPCClient's stream(), subscription(), system() and drain(): blocking
iterators over the client's own, from plain threads, against a real server
on its own loop in another thread (docs/resilience.md §10)."""

from __future__ import annotations

import asyncio
import gc
import queue
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import SyncIPCClient
from ipc_protocol import ConnectionLost, HandlerError, Message, NotConnected, RequestTimeout

from .conftest import ROOT
from .sync_support import WAIT_S, ThreadedServer, sync_client, tserver  # noqa: F401 - fixtures


class Producer:
    """A server-side stream handler that counts what it yielded and sees its end."""

    def __init__(self, items: int | None = None, fail_after: int | None = None) -> None:
        self.items, self.fail_after = items, fail_after
        self.yielded = 0
        self.closed = threading.Event()

    async def __call__(self, msg: Message) -> AsyncIterator[Any]:
        try:
            n = 0
            while self.items is None or n < self.items:
                if n == self.fail_after:
                    raise ValueError("producer broke")
                yield {"n": n}
                self.yielded = n = n + 1
                if self.items is None:
                    await asyncio.sleep(0)
        finally:
            self.closed.set()


def serving(tserver: ThreadedServer, channel: str, producer: Producer) -> Producer:
    tserver.server.add_handler(channel, producer)
    return producer


def test_a_stream_is_read_item_by_item_to_its_end(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    serving(tserver, "count", Producer(items=150))
    items = list(sync_client.stream("count", None, window=16))
    assert items == [{"n": n} for n in range(150)]


def test_a_failed_producer_raises_after_the_items_before_it(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    serving(tserver, "broken", Producer(items=10, fail_after=3))
    seen = []
    with pytest.raises(HandlerError, match="producer broke"):
        for item in sync_client.stream("broken"):
            seen.append(item)
    assert seen == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_leaving_the_with_cancels_the_stream_at_its_producer(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    producer = serving(tserver, "ticks", Producer())
    with sync_client.stream("ticks", window=4) as ticks:
        assert next(ticks) == {"n": 0}
    assert producer.closed.wait(WAIT_S)
    assert next(ticks, "ended") == "ended"
    assert sync_client.request("echo", 1) == 1  # the connection goes on


def test_a_for_left_by_break_cancels_once_the_iterator_is_dropped(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    producer = serving(tserver, "ticks", Producer())
    for item in sync_client.stream("ticks", window=4):
        if item["n"] == 2:
            break
    gc.collect()  # the for's iterator is gone already under CPython; this makes it sure
    assert producer.closed.wait(WAIT_S)


def test_close_from_another_thread_ends_a_blocked_next(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    started = threading.Event()

    async def silent(msg: Message) -> AsyncIterator[Any]:
        started.set()
        await asyncio.Event().wait()
        yield None  # never reached

    tserver.server.add_handler("silent", silent)
    stream = sync_client.stream("silent", idle_timeout=30)
    outcome: list[Any] = []
    reader = threading.Thread(target=lambda: outcome.append(next(stream, "ended")))
    reader.start()
    assert started.wait(WAIT_S)
    stream.close()
    reader.join(WAIT_S)
    assert outcome == ["ended"]
    assert "closed" in repr(stream)


def test_the_idle_timeout_ends_the_stream_with_request_timeout(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    async def one_then_nothing(msg: Message) -> AsyncIterator[Any]:
        yield 1
        await asyncio.Event().wait()

    tserver.server.add_handler("stalls", one_then_nothing)
    stream = sync_client.stream("stalls", idle_timeout=0.2)
    assert next(stream) == 1
    with pytest.raises(RequestTimeout):
        next(stream)
    assert next(stream, "ended") == "ended"


def test_stream_options_are_checked_at_the_call(sync_client: SyncIPCClient) -> None:
    with pytest.raises(ValueError, match="timeout"):
        sync_client.stream("count", timeout=float("inf"))


def test_a_subscription_is_read_with_blocking_next(sync_client: SyncIPCClient, tserver: ThreadedServer) -> None:
    with SyncIPCClient("app", "127.0.0.1", tserver.port) as publisher:
        with sync_client.subscription("prices.*") as prices:  # returns once subscribed
            for n in range(3):
                publisher.publish(f"prices.s{n}", n)
            got = [(msg.channel_id, msg.payload) for _, msg in zip(range(3), prices)]
        assert got == [("prices.s0", 0), ("prices.s1", 1), ("prices.s2", 2)]
        assert publisher.publish("prices.s9", 9, ack=True) == 0  # leaving the with unsubscribed


def test_a_subscription_left_by_close_from_another_thread(sync_client: SyncIPCClient, tserver: ThreadedServer) -> None:
    sub = sync_client.subscription("quiet")
    sub.__enter__()
    outcome: list[Any] = []
    reader = threading.Thread(target=lambda: outcome.append(next(sub, "ended")))
    reader.start()
    sub.close()
    reader.join(WAIT_S)
    assert outcome == ["ended"]
    sub.close()  # idempotent


def test_next_refuses_a_running_event_loop_as_every_blocking_call(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    """next() used to skip the check the client's methods make: inside
    asyncio.run() it blocked the caller's loop until an item came."""
    serving(tserver, "ticks", Producer())
    stream = sync_client.stream("ticks", window=4)
    sub = sync_client.subscription("feed")
    sub.__enter__()

    async def inside() -> Any:
        for it in (stream, sub):
            with pytest.raises(RuntimeError, match="running event loop"):
                next(it)
        return await asyncio.to_thread(next, stream)  # the way from async code

    assert asyncio.run(inside()) == {"n": 0}  # a refused next() took nothing
    stream.close()
    sub.close()


def test_next_in_an_async_handler_raises_instead_of_deadlocking_the_client(tserver: ThreadedServer, sync_client: SyncIPCClient) -> None:
    """An async handler runs on the client's own loop: a next() there used
    to wait for that loop for ever, and every call of the client with it."""
    sub = sync_client.subscription("feed")
    sub.__enter__()
    outcome: queue.Queue[object] = queue.Queue()

    async def handler(msg: Message) -> None:
        try:
            outcome.put(next(sub))
        except RuntimeError as exc:
            outcome.put(exc)

    sync_client.subscribe("go", handler)
    with SyncIPCClient("app", "127.0.0.1", tserver.port) as publisher:
        assert publisher.publish("go", 1, ack=True) == 1
        assert isinstance(outcome.get(timeout=WAIT_S), RuntimeError)
        assert publisher.publish("feed", "item", ack=True) == 1
    assert next(sub).payload == "item"  # from a thread, as ever
    assert sync_client.request("echo", 1, timeout=WAIT_S) == 1
    sub.close()


def test_closing_the_client_ends_its_iterators(tserver: ThreadedServer) -> None:
    client = SyncIPCClient("app", "127.0.0.1", tserver.port)
    client.connect()
    producer = serving(tserver, "ticks", Producer())
    stream = client.stream("ticks", window=4)
    assert next(stream) == {"n": 0}
    client.close()
    assert producer.closed.wait(WAIT_S)
    rest: list[Any] = []
    with pytest.raises(ConnectionLost):  # as IPCClient's stream ends on disconnect(): the items that came, then the end
        rest.extend(stream)
    assert rest == [{"n": n} for n in range(1, len(rest) + 1)]
    stream.close()  # nothing left to close: no error
    with pytest.raises(NotConnected):
        client.subscription("x")


def until(condition: Any, what: str) -> None:
    """Until ``condition()`` holds, checked every 10 ms for at most WAIT_S."""
    pause = threading.Event()
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError(f"never: {what}")


def test_closing_the_client_leaves_a_streams_items_readable(tserver: ThreadedServer) -> None:
    serving(tserver, "twenty", Producer(items=20))
    client = SyncIPCClient("app", "127.0.0.1", tserver.port)
    client.connect()
    stream = client.stream("twenty")
    unread = client.stream("twenty")
    assert next(stream) == {"n": 0}
    open_streams = client.client._streams._open
    until(lambda: any(s.end is not None and len(s.items) == 19 for s in list(open_streams.values())), "all 20 items and the end arrived")
    client.close()
    assert list(stream) == [{"n": n} for n in range(1, 20)]  # then StopIteration, as IPCClient's after disconnect()
    with pytest.raises(NotConnected):  # never started: nothing came for it
        next(unread)


def test_closing_the_client_leaves_a_subscriptions_buffered_messages_readable(tserver: ThreadedServer) -> None:
    client = SyncIPCClient("app", "127.0.0.1", tserver.port)
    client.connect()
    sub = client.subscription("t.*")
    sub.__enter__()
    with SyncIPCClient("app", "127.0.0.1", tserver.port) as publisher:
        for n in range(10):
            publisher.publish("t.x", n, ack=True)
    until(lambda: sub.source.buffered == 10, "10 messages buffered")  # type: ignore[attr-defined]
    client.close()
    assert [msg.payload for msg in sub] == list(range(10))  # then the loop ends, as IPCClient's after disconnect()
    assert next(sub, "ended") == "ended"


def test_closing_the_client_gives_a_blocked_next_the_streams_end(tserver: ThreadedServer) -> None:
    started = threading.Event()

    async def silent(msg: Message) -> AsyncIterator[Any]:
        started.set()
        await asyncio.Event().wait()
        yield None  # never reached

    tserver.server.add_handler("silent", silent)
    client = SyncIPCClient("app", "127.0.0.1", tserver.port)
    client.connect()
    stream = client.stream("silent", idle_timeout=30)
    outcome: list[Any] = []

    def read() -> None:
        try:
            outcome.append(next(stream))
        except BaseException as exc:  # noqa: BLE001 - what the reader saw is the point
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(WAIT_S)
    until_waiting(client)
    client.close()
    reader.join(WAIT_S)
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLost), outcome  # the connection's end, as documented


def test_system_and_drain_block(tserver: ThreadedServer) -> None:
    client = SyncIPCClient("app", "127.0.0.1", tserver.port)
    try:
        client.connect()
        assert client.system("ping") == {"status": "pong"}
        assert client.system("stats")["connections"] >= 1
        assert client.drain(timeout=WAIT_S) is True
        assert not client.connected
        with pytest.raises(NotConnected):
            client.request("echo", 1)
    finally:
        client.close()


def test_closing_the_client_ends_a_subscriptions_loop_in_another_thread(tserver: ThreadedServer) -> None:
    client = SyncIPCClient("app", "127.0.0.1", tserver.port)
    client.connect()
    sub = client.subscription("news")
    sub.__enter__()
    outcome: list[Any] = []

    def read() -> None:
        try:
            outcome.extend(sub)
            outcome.append("ended")
        except BaseException as exc:  # noqa: BLE001 - what the reader saw is the point
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    until_waiting(client)
    client.close()
    reader.join(WAIT_S)
    assert outcome == ["ended"]  # as IPCClient.subscription()'s loop ends on disconnect()


def until_waiting(client: SyncIPCClient) -> None:
    """Until a thread's next() is under way on the client's loop."""
    pause = threading.Event()
    for _ in range(int(WAIT_S / 0.01)):
        if client._pending:
            return
        pause.wait(0.01)
    raise AssertionError("no next() under way")


CHILD = """
import sys
from ipc_client import SyncIPCClient
client = SyncIPCClient("app", "127.0.0.1", int(sys.argv[1]))
client.connect()
quiet = client.subscription("never")
quiet.__enter__()
started = __import__("threading").Event()
def handler(msg):
    started.set()
    next(quiet)  # waits for a publish that never comes
client.subscribe("go", handler)
client.publish("go", 1, ack=True)
started.wait(5)
print("main done", flush=True)
"""


def test_a_handler_blocked_at_exit_does_not_hold_the_process(tserver: ThreadedServer) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(tserver.port)], capture_output=True, text=True, timeout=15, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "main done"
