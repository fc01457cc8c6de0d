"""Request coalescing and the TTL response cache (ipc_client/coalescing.py,
response_cache.py): the cache's bookkeeping on a fake clock, then both
options of send_request() against the real server on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_client.coalescing import request_key
from ipc_client.metrics import ClientMetrics
from ipc_client.response_cache import ResponseCache
from ipc_protocol import HandlerError, Message, MessageType, NoResponders, RequestTimeout

from .conftest import WAIT_S


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def reply(payload: Any) -> Message:
    return Message.build(MessageType.RESPONSE, "app", "c", payload)


# -- the cache, on a fake clock ---------------------------------------------------------


def test_the_cache_serves_a_fresh_answer_and_drops_an_expired_one() -> None:
    clock, metrics = Clock(), ClientMetrics()
    cache = ResponseCache(10, metrics, clock)
    assert cache.get("k") is None
    cache.put("k", reply(1), 5.0)
    clock.t += 4.999
    assert cache.get("k").payload == 1  # type: ignore[union-attr]
    clock.t += 0.001
    assert cache.get("k") is None and len(cache) == 0
    snap = metrics.snapshot(0.0)
    assert (snap["cache_hits"], snap["cache_misses"], snap["cache_size"]) == (1, 2, 0)


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    metrics = ClientMetrics()
    cache = ResponseCache(2, metrics, Clock())
    cache.put("a", reply("a"), 60)
    cache.put("b", reply("b"), 60)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", reply("c"), 60)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert metrics.cache_size == 2
    cache.clear()
    assert len(cache) == 0 and metrics.cache_size == 0


def test_a_cache_of_zero_entries_stores_nothing_and_bad_bounds_are_refused() -> None:
    cache = ResponseCache(0, ClientMetrics(), Clock())
    cache.put("a", reply(1), 60)
    assert cache.get("a") is None
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="cache_max_entries"):
            ResponseCache(bad, ClientMetrics())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_max_entries"):
        IPCClient("app", cache_max_entries=-1)


def test_the_key_is_the_channel_and_the_canonical_payload() -> None:
    assert request_key("c", {"a": 1, "b": [1, {"y": 2, "x": 1}]}) == request_key("c", {"b": [1, {"x": 1, "y": 2}], "a": 1})
    assert request_key("c", {"a": 1}) != request_key("d", {"a": 1})
    assert request_key("c", {"a": 1}) != request_key("c", {"a": "1"})
    assert request_key("c", "é") == 'c\x00"é"'
    assert request_key("c", float("nan")) is None and request_key("c", object()) is None


# -- against the server --------------------------------------------------------------------


class Counting:
    """A responder that counts its calls and, when ``gate`` is set, waits for it."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, msg: Message) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ValueError("refused")
        return {"n": self.calls, "echo": msg.payload}


async def serving(make_client: Any) -> tuple[IPCClient, Counting]:
    responder = await make_client()
    handler = Counting()
    await responder.serve("svc", handler)
    return await make_client(), handler


async def test_identical_calls_in_flight_share_one_round_trip(make_client: Any) -> None:
    caller, handler = await serving(make_client)
    handler.gate = asyncio.Event()
    calls = [asyncio.create_task(caller.request("svc", {"a": 1, "b": 2} if i % 2 else {"b": 2, "a": 1}, coalesce=True)) for i in range(5)]
    other = asyncio.create_task(caller.request("svc", {"a": 2}, coalesce=True))
    async with asyncio.timeout(WAIT_S):
        while handler.calls < 2:
            await asyncio.sleep(0.005)
    handler.gate.set()
    results = await asyncio.gather(*calls)
    assert handler.calls == 2 and (await other)["echo"] == {"a": 2}
    assert all(r == results[0] for r in results)
    metrics = caller.metrics()
    assert metrics["requests_coalesced"] == 4 and metrics["messages_sent"] == 2
    assert len(caller._shared) == 0
    await caller.request("svc", {"a": 1, "b": 2}, coalesce=True)  # settled: a new call
    assert handler.calls == 3


async def test_every_caller_gets_the_shared_error(make_client: Any) -> None:
    caller, handler = await serving(make_client)
    handler.gate, handler.fail = asyncio.Event(), True
    calls = [asyncio.create_task(caller.request("svc", 1, coalesce=True)) for _ in range(3)]
    async with asyncio.timeout(WAIT_S):
        while handler.calls < 1:
            await asyncio.sleep(0.005)
    handler.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, HandlerError) and r.remote_type == "ValueError" for r in results)
    assert handler.calls == 1


async def test_a_caller_that_gives_up_leaves_the_shared_call_to_the_others(make_client: Any) -> None:
    caller, handler = await serving(make_client)
    handler.gate = asyncio.Event()
    first = asyncio.create_task(caller.request("svc", 1, coalesce=True))
    async with asyncio.timeout(WAIT_S):
        while handler.calls < 1:
            await asyncio.sleep(0.005)
    impatient = asyncio.create_task(caller.request("svc", 1, coalesce=True, timeout=0.05))
    patient = asyncio.create_task(caller.request("svc", 1, coalesce=True))
    with pytest.raises(RequestTimeout):
        await impatient
    first.cancel()  # the caller that started it goes too
    with pytest.raises(asyncio.CancelledError):
        await first
    handler.gate.set()
    assert (await asyncio.wait_for(patient, WAIT_S)) == {"n": 1, "echo": 1}
    assert handler.calls == 1


async def test_a_cached_answer_saves_the_round_trip_until_it_expires(make_client: Any) -> None:
    caller, handler = await serving(make_client)
    first = await caller.send_request("svc", {"q": 1}, cache_ttl=60)
    again = await caller.send_request("svc", {"q": 1}, cache_ttl=60)
    assert again is first and handler.calls == 1
    assert (await caller.request("svc", {"q": 2}, cache_ttl=60))["n"] == 2  # another payload
    assert (await caller.request("svc", {"q": 1}))["n"] == 3  # without cache_ttl: always sent
    m = caller.metrics()
    assert (m["cache_hits"], m["cache_misses"], m["cache_size"]) == (1, 2, 2)
    clock = Clock()
    caller._shared.cache._clock = clock  # expiry without waiting for it
    caller._shared.cache.clear()
    await caller.request("svc", {"q": 1}, cache_ttl=1.0)
    clock.t += 1.0
    assert (await caller.request("svc", {"q": 1}, cache_ttl=1.0))["n"] == 5
    caller.clear_cache()
    assert caller.metrics()["cache_size"] == 0


async def test_errors_are_not_cached(make_client: Any) -> None:
    caller, handler = await serving(make_client)
    handler.fail = True
    with pytest.raises(HandlerError):
        await caller.request("svc", 1, cache_ttl=60)
    handler.fail = False
    assert (await caller.request("svc", 1, cache_ttl=60))["n"] == 2
    assert (await caller.request("svc", 1, cache_ttl=60))["n"] == 2


async def test_cache_and_coalescing_together_and_the_bound(make_client: Any) -> None:
    caller = await make_client(cache_max_entries=1)
    responder = await make_client()
    handler = Counting()
    await responder.serve("svc", handler)
    handler.gate = asyncio.Event()
    calls = [asyncio.create_task(caller.request("svc", "x", coalesce=True, cache_ttl=60)) for _ in range(3)]
    async with asyncio.timeout(WAIT_S):
        while handler.calls < 1:
            await asyncio.sleep(0.005)
    handler.gate.set()
    await asyncio.gather(*calls)
    assert (await caller.request("svc", "x", cache_ttl=60))["n"] == 1
    await caller.request("svc", "y", cache_ttl=60)  # evicts x: one entry at most
    assert (await caller.request("svc", "x", cache_ttl=60))["n"] == 3
    assert caller.metrics()["cache_size"] == 1


async def test_bad_cache_ttl_is_refused(make_client: Any) -> None:
    caller, _ = await serving(make_client)
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="cache_ttl"):
            await caller.request("svc", 1, cache_ttl=bad)


async def test_a_circuit_breaker_fallback_is_not_cached(make_client: Any) -> None:
    from ipc_client import CircuitBreakerOptions

    options = CircuitBreakerOptions(failure_threshold=1, reset_timeout=3600, fallback=lambda channel, payload, exc: {"fallback": True})
    caller = await make_client(circuit_breaker=options)
    with pytest.raises(NoResponders):  # opens the circuit
        await caller.request("nobody", 1, cache_ttl=60)
    assert await caller.request("nobody", 1, cache_ttl=60) == {"fallback": True}
    assert await caller.request("nobody", 1, cache_ttl=60) == {"fallback": True}
    assert caller.metrics()["cache_size"] == 0


async def test_a_fallback_that_answers_after_the_circuit_closed_is_not_cached(make_client: Any) -> None:
    """The answer is the fallback's because the call found the circuit open,
    whatever the state when it returns: here a trial call closed the circuit
    while the fallback ran. Neither its caller nor one that joined it stores it."""
    from ipc_client import CircuitBreakerOptions

    gate = asyncio.Event()
    entered = asyncio.Event()

    async def fallback(channel: str, payload: Any, exc: Exception) -> Any:
        if payload == 1:
            entered.set()
            await gate.wait()
        return {"fallback": True}

    options = CircuitBreakerOptions(failure_threshold=1, reset_timeout=0.05, success_threshold=1, fallback=fallback)
    caller = await make_client(circuit_breaker=options)
    with pytest.raises(NoResponders):  # opens the circuit
        await caller.request("svc", 0)
    responder = await make_client()
    handler = Counting()
    await responder.serve("svc", handler)
    first = asyncio.ensure_future(caller.request("svc", 1, cache_ttl=60, coalesce=True))
    await asyncio.wait_for(entered.wait(), WAIT_S)
    joined = asyncio.ensure_future(caller.request("svc", 1, cache_ttl=60, coalesce=True))
    async with asyncio.timeout(WAIT_S):  # a trial call once the reset timeout passed closes it
        while await caller.request("svc", 2) == {"fallback": True}:
            await asyncio.sleep(0.01)
    assert caller.circuit_breakers()["svc"]["state"] == "closed"
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, joined), WAIT_S) == [{"fallback": True}] * 2
    assert caller.metrics()["cache_size"] == 0
    calls = handler.calls
    assert await caller.request("svc", 1, cache_ttl=60) == {"n": calls + 1, "echo": 1}  # from the service, and now stored
    assert caller.metrics()["cache_size"] == 1


# -- through the wrappers: each member's cache, cleared by theirs ------------------------


async def test_clear_cache_of_a_pool_a_load_balancer_and_a_service_client_empties_every_members_cache(server) -> None:
    """docs/resilience.md §11: each member keeps its own cache; the wrappers
    had no clear_cache(), so a cached answer through them could not be dropped."""
    from ipc_client import ConnectionPool, LoadBalancedClient, ServiceClient

    runs: list[Any] = []
    server.add_handler("price", lambda msg: runs.append(msg.payload) or len(runs))
    pool = ConnectionPool("app", "127.0.0.1", server.port, min_connections=2, max_connections=2)
    lb = LoadBalancedClient("app", [f"127.0.0.1:{server.port}"], health_check_interval=None)
    gw = ServiceClient({"app": {"host": "127.0.0.1", "port": server.port}})
    try:
        await pool.start()
        await lb.start()
        await gw.start()
        first, second = await pool.acquire(), await pool.acquire()
        for member in (first, second):  # both members hold an answer
            await member.request("price", "a", cache_ttl=60)
        pool.release(first)
        pool.release(second)
        assert pool.metrics()["cache_size"] == 2
        pool.clear_cache()
        assert pool.metrics()["cache_size"] == 0
        assert await pool.request("price", "a", cache_ttl=60) == 3  # asked again

        for owner, balanced in ((lb, lb), (gw, gw.client("app"))):
            before = len(runs)
            assert await balanced.request("price", "b", cache_ttl=60) == before + 1
            assert await balanced.request("price", "b", cache_ttl=60) == before + 1  # from the cache
            owner.clear_cache()
            assert balanced.metrics()["cache_size"] == 0
            assert await balanced.request("price", "b", cache_ttl=60) == before + 2
    finally:
        await gw.shutdown()
        await lb.close()
        await pool.close()
