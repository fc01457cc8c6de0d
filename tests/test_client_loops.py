"""An IPCClient belongs to the event loop it connected on: every public
coroutine called from another loop raises RuntimeError before it touches
the connection (README, "The Python client API"). publish() from a second
loop used to write on the first loop's transport from the wrong thread."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message

from .sync_support import WAIT_S, ThreadedServer, tserver  # noqa: F401 - fixtures

T = TypeVar("T")
OTHER_LOOP = "belongs to the event loop it connected on"


class LoopThread:
    """An event loop running in a thread of its own: loop A."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(WAIT_S)

    def stop(self) -> None:
        # Its executor's threads (the connect's name lookup) joined, as
        # asyncio.run does: a later test counts the threads left.
        asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result(WAIT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


@pytest.fixture
def loop_a() -> Iterator[LoopThread]:
    a = LoopThread()
    yield a
    a.stop()


def test_every_coroutine_refuses_a_loop_other_than_the_one_it_connected_on(tserver: ThreadedServer, loop_a: LoopThread) -> None:
    client = IPCClient("app", "127.0.0.1", tserver.port)
    listener = IPCClient("app", "127.0.0.1", tserver.port)
    heard: queue.Queue[object] = queue.Queue()
    loop_a.run(client.connect)
    loop_a.run(listener.connect)
    loop_a.run(lambda: listener.subscribe("x.*", lambda msg: heard.put(msg.payload)))
    loop_a.run(lambda: client.serve("served", lambda msg: None))  # a Registration: awaited until the server holds it

    async def on_loop_b() -> list[str]:
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "connect": client.connect,
            "disconnect": client.disconnect,
            "send_request": lambda: client.send_request("echo", 1),
            "request": lambda: client.request("echo", 1),
            "request with options": lambda: client.request("echo", 1, timeout=1),
            "publish": lambda: client.publish("x.b", "from loop B"),
            "publish with ack": lambda: client.publish("x.b", "from loop B", ack=True),
            "notify": lambda: client.notify("echo", 1),
            "subscribe": lambda: client.subscribe("y", print),
            "unsubscribe": lambda: client.unsubscribe("y"),
            "unserve": lambda: client.unserve("served"),
            "health": client.health,
            "health_check": client.health_check,
            "system": lambda: client.system("ping"),
            "drain": lambda: client.drain(1),
        }
        refused = []
        for name, call in calls.items():
            with pytest.raises(RuntimeError, match=OTHER_LOOP):
                await asyncio.wait_for(call(), WAIT_S)
            refused.append(name)
        return refused

    assert len(asyncio.run(on_loop_b())) == 15
    # Nothing of it reached the connection, which goes on on loop A.
    assert loop_a.run(lambda: client.publish("x.a", "from loop A", ack=True)) == 1
    assert heard.get(timeout=WAIT_S) == "from loop A"
    assert heard.empty()
    assert loop_a.run(lambda: client.request("echo", 2)) == 2
    assert client.connected
    loop_a.run(client.disconnect)
    loop_a.run(listener.disconnect)


def test_streams_serve_and_iterators_refuse_another_loop_too(tserver: ThreadedServer, loop_a: LoopThread) -> None:
    # stream() from loop B used to read and write loop A's connection from
    # thread B; serve() spawned its registration on loop B ("got Future
    # attached to a different loop", emitted on 'error').
    client = IPCClient("app", "127.0.0.1", tserver.port)
    producer = IPCClient("app", "127.0.0.1", tserver.port)
    errors: queue.Queue[BaseException] = queue.Queue()
    client.on("error", errors.put)

    async def ticks(msg: Message) -> Any:
        for i in range(3):
            yield i

    loop_a.run(client.connect)
    loop_a.run(producer.connect)
    loop_a.run(lambda: producer.serve("ticks", ticks))
    registration = loop_a.run(lambda: asyncio.sleep(0, client.serve("served", lambda msg: None)))

    async def on_loop_b() -> list[str]:
        async def read_stream() -> list[Any]:
            async with client.stream("ticks", timeout=WAIT_S) as items:
                return [item async for item in items]

        async def serve() -> None:
            await client.serve("served.b", lambda msg: None)

        async def first(iterator: Any) -> Any:
            return await iterator.__anext__()

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "stream": read_stream,
            "serve": serve,
            "await serve()'s registration": registration.wait,
            "subscription": lambda: first(client.subscription("y")),
            "requests": lambda: first(client.requests("z")),
        }
        refused = []
        for name, call in calls.items():
            with pytest.raises(RuntimeError, match=OTHER_LOOP):
                await asyncio.wait_for(call(), WAIT_S)
            refused.append(name)
        return refused

    assert len(asyncio.run(on_loop_b())) == 5
    assert errors.empty()
    assert "served.b" not in client._subs.services

    async def read_on_a() -> list[Any]:
        async with client.stream("ticks", timeout=WAIT_S) as items:
            return [item async for item in items]

    assert loop_a.run(read_on_a) == [0, 1, 2]
    loop_a.run(client.disconnect)
    loop_a.run(producer.disconnect)


def test_a_client_whose_loop_is_closed_says_so() -> None:
    srv = ThreadedServer()
    srv.server.add_handler("echo", lambda msg: msg.payload)
    try:
        client = IPCClient("app", "127.0.0.1", srv.port)
        asyncio.run(client.connect())  # its loop closed with the connection still open

        async def later() -> None:
            await client.request("echo", 1)

        with pytest.raises(RuntimeError, match=f"{OTHER_LOOP}; that loop is closed"):
            asyncio.run(asyncio.wait_for(later(), WAIT_S))
    finally:
        srv.stop()


def test_connect_binds_a_disconnected_client_to_the_running_loop(tserver: ThreadedServer) -> None:
    client = IPCClient("app", "127.0.0.1", tserver.port)

    async def session(n: int) -> Any:
        async with client:
            reply: Message = await client.send_request("echo", n)
            return reply.payload

    assert asyncio.run(session(1)) == 1
    assert asyncio.run(session(2)) == 2  # a new loop: connect() binds the client to it
