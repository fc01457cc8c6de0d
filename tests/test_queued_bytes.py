"""A call sent later than it is made sends what it was given
(docs/protocol.md §16.3): a ``bytearray`` or writable ``memoryview`` in a
call that waits in the offline queue, or in a keyed request resent after
a lost connection, is sent as it was at the call, not as the caller's
buffer is when the queue is replayed; the caller may reuse it at once, as
when the call is written straight away. Node's twin: the "queued and
resent calls" tests in js-client/test/binary_client.test.js."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .queued_support import offline, sink_on  # noqa: F401  (the fixture)
from .test_idempotency import Gated, counts, until

KINDS: dict[str, Callable[[bytearray], Any]] = {"bytearray": lambda buf: buf, "memoryview": memoryview}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_queued_notify_sends_the_bytes_it_was_given(offline: Any, kind: str) -> None:
    server, proxy, client = offline
    got = sink_on(server)
    buf = bytearray(b"AAAA")
    await client.notify("sink", {"b": KINDS[kind](buf), "n": [KINDS[kind](buf)]}, timeout=WAIT_S)
    assert client.queue_stats()["size"] == 1
    buf[:] = b"ZZZZ"  # the call has returned: the caller reuses its buffer
    proxy.refuse(False)
    await until(lambda: bool(got))
    # Before: {'b': b'ZZZZ', 'n': [b'ZZZZ']}, the buffer as it was at the replay.
    assert got == [{"b": b"AAAA", "n": [b"AAAA"]}]


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_queued_publish_sends_the_bytes_it_was_given(offline: Any, kind: str) -> None:
    server, proxy, client = offline
    buf = bytearray(b"AAAA")
    await client.publish("news", KINDS[kind](buf), timeout=WAIT_S)
    buf[:] = b"ZZZZ"
    async with IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S) as reader:
        got: list[Any] = []
        await reader.subscribe("news", lambda msg: got.append(msg.payload))
        proxy.refuse(False)  # subscribed first: the replay waits for the reconnection the proxy gates
        await until(lambda: bool(got))
    assert got == [b"AAAA"]


async def test_a_queued_keyed_request_sends_the_bytes_it_was_given(offline: Any) -> None:
    server, proxy, client = offline
    handler = Gated()
    server.add_handler("jobs.run", handler)
    handler.gate.set()
    buf = bytearray(b"AAAA")
    call = asyncio.ensure_future(client.request("jobs.run", {"b": buf}, idempotency_key="k", timeout=WAIT_S))
    await until(lambda: client.queue_stats()["size"] == 1)
    buf[:] = b"ZZZZ"  # the call is made: the caller reuses its buffer while it waits
    proxy.refuse(False)
    assert await asyncio.wait_for(call, WAIT_S) == {"echo": {"b": b"AAAA"}}
    assert handler.runs == [{"b": b"AAAA"}]


async def test_a_keyed_request_resent_after_a_loss_sends_the_bytes_of_the_call() -> None:
    # The first attempt reaches the handler; the caller then reuses its
    # buffer; the connection drops and the resend must be the same request
    # (the server refuses a key reused for another payload).
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2, no_responders_grace_s=0) as server:
        handler = Gated()
        server.add_handler("jobs.run", handler)
        async with FaultProxy("127.0.0.1", server.port) as proxy:
            client = IPCClient("app", "127.0.0.1", proxy.port, request_timeout=WAIT_S, initial_delay=0.01, max_delay=0.05)
            try:
                await asyncio.wait_for(client.connect(), WAIT_S)
                reconnected = asyncio.Event()
                client.on("reconnected", lambda info: reconnected.set())
                buf = bytearray(b"AAAA")
                call = asyncio.ensure_future(client.request("jobs.run", {"b": buf}, idempotency_key="job-1", timeout=WAIT_S))
                await asyncio.wait_for(handler.entered.wait(), WAIT_S)
                buf[:] = b"ZZZZ"
                proxy.cut()
                await asyncio.wait_for(reconnected.wait(), WAIT_S)
                await until(lambda: counts(server)["joined"] == 1 or call.done())
                # Before: the resend carried b'ZZZZ', and the server refused the
                # key, used for another request, with an error at once.
                assert not call.done(), call.exception()
                assert counts(server)["joined"] == 1  # the resend joined the run: the same request
                handler.gate.set()
                assert await asyncio.wait_for(call, WAIT_S) == {"echo": {"b": b"AAAA"}}
                assert handler.runs == [{"b": b"AAAA"}]
            finally:
                await client.disconnect()


async def test_a_queued_notify_sends_the_items_of_a_nested_iterator(offline: Any) -> None:
    # Measuring the queued call encoded it, which used the iterator up.
    server, proxy, client = offline
    got = sink_on(server)
    await client.notify("sink", {"items": (i for i in (1, 2, 3))}, timeout=WAIT_S)
    proxy.refuse(False)
    await until(lambda: bool(got))
    assert got == [{"items": [1, 2, 3]}]

