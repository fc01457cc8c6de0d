"""ServiceClient.stream() over real servers on loopback (docs/protocol.md §15,
docs/resilience.md §9): a service's stream in its app, started on first
use, failing over as its balanced client does, and counted in the
service's metrics as one call (an error if it ended with one, its latency
the time to its first item)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import ServiceClient
from ipc_protocol import ConnectionLost, HandlerError, Message, NotConnected, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S, counting_until_closed
from .test_pool import until


@pytest.fixture
async def backends() -> AsyncIterator[list[IPCServer]]:
    """``ticks`` in app ``feed`` on b only (a has nobody for it), and slow, failing and endless producers on a."""

    async def ticks(msg: Message) -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(0.05)  # before the first item: the latency counted
        for i in range(msg.payload["n"]):
            yield {"i": i}
            await asyncio.sleep(0.02)

    async def fails(msg: Message) -> AsyncIterator[int]:
        yield 0
        raise ValueError("bad tick")

    async def stalls(msg: Message) -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 0

    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as a, IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as b:
        b.add_handler("ticks", ticks, app_id="feed")
        a.add_handler("fails", fails, app_id="feed")
        a.add_handler("stalls", stalls, app_id="feed")
        yield [a, b]


@pytest.fixture
async def gateway(backends) -> AsyncIterator[ServiceClient]:
    a, b = backends
    sc = ServiceClient({"feed": {"servers": [("127.0.0.1", a.port), ("127.0.0.1", b.port)], "timeout": 2}}, connect_timeout=2)
    yield sc
    await sc.shutdown()


async def test_a_stream_starts_its_service_fails_over_and_counts_as_one_call(gateway) -> None:
    assert gateway.get_metrics("feed")["requests"] == 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    items = [item async for item in gateway.stream("feed", "ticks", {"n": 5}, timeout=WAIT_S)]  # started on first use
    whole_ms = (loop.time() - started) * 1000
    assert items == [{"i": i} for i in range(5)]
    m = gateway.get_metrics("feed")
    assert (m["requests"], m["errors"], m["timeouts"]) == (1, 0, 0)  # one stream, however many items
    assert 50 <= m["latency_ms"]["p50"] <= whole_ms - 90  # to its first item, not to its end (5 x 20 ms later)
    a, b = gateway.client("feed").server_stats()
    assert (a["errors"], b["requests"], b["errors"]) == (1, 1, 0)  # a had nobody: failed over before the first item


async def test_a_stream_counts_in_the_rate_from_its_start(gateway) -> None:
    """``requests_per_s`` spans from the stream's start (as Node's), not from
    its end less its time to the first item: one stream of 10 items, 50 ms
    to the first then 20 ms apart, is about 5 calls a second, not 20."""
    await gateway.start()
    began = time.monotonic()
    first_at = None
    async for _ in gateway.stream("feed", "ticks", {"n": 10}, timeout=WAIT_S):
        first_at = first_at or time.monotonic()
    ended = time.monotonic()
    rate = gateway.get_metrics("feed")["requests_per_s"]
    after = time.monotonic()
    assert first_at is not None
    # It started between began and first_at, and was read between ended and after.
    assert 1 / (after - began) - 0.001 <= rate <= 1 / (ended - first_at) + 0.001


async def test_errors_and_timeouts_are_counted_once_the_stream_ended(gateway) -> None:
    got = []
    with pytest.raises(HandlerError):
        async for item in gateway.stream("feed", "fails", timeout=WAIT_S):
            got.append(item)
    assert got == [0]
    with pytest.raises(RequestTimeout):
        await gateway.stream("feed", "stalls", timeout=0.2).__anext__()
    m = gateway.get_metrics("feed")
    assert (m["requests"], m["errors"], m["timeouts"]) == (2, 2, 1)


async def test_a_reader_leaving_is_no_error_and_before_the_first_item_is_not_counted(backends, gateway) -> None:
    a, _ = backends
    closed = asyncio.Event()
    a.add_handler("endless", counting_until_closed(closed), app_id="feed")
    async with gateway.stream("feed", "endless", window=4) as items:
        async for item in items:
            if item == 2:
                break
    await asyncio.wait_for(closed.wait(), WAIT_S)  # cancelled at the producer
    assert a.stats.cancels == 1
    first = asyncio.ensure_future(gateway.stream("feed", "stalls").__anext__())
    await until(lambda: a.stats.streams == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    m = gateway.get_metrics("feed")
    assert (m["requests"], m["errors"]) == (1, 0)  # the break counted as a call served, the cancel before any item not at all
    await until(lambda: sum(p.stats()["in_use"] for p in gateway.client("feed").pools().values()) == 0)


async def test_shutdown_during_a_stream_ends_it_with_connection_lost(backends, gateway) -> None:
    a, _ = backends
    a.add_handler("endless", counting_until_closed(asyncio.Event()), app_id="feed")
    stream = gateway.stream("feed", "endless", window=4)
    assert await stream.__anext__() == 0
    await gateway.shutdown()
    with pytest.raises(ConnectionLost):
        async for _ in stream:
            pass
    assert gateway.get_metrics("feed")["errors"] == 1
    with pytest.raises(NotConnected):
        await gateway.stream("feed", "endless").__anext__()


async def test_arguments_are_checked_at_the_call(gateway) -> None:
    with pytest.raises(ValueError, match="unknown service 'billing'"):
        gateway.stream("billing", "ticks")
    with pytest.raises(ValueError):
        gateway.stream("feed", "ticks", timeout=0)
    with pytest.raises(ValueError):
        gateway.stream("feed", "ticks.*")
    assert gateway.get_metrics("feed")["requests"] == 0
