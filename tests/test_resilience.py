"""The Python client's resilience over real loopback TCP, with the fault proxy
between it and the real server: outages, black holes, latency, connections
closed mid-frame; the offline queue, its persistence, the circuit breaker,
health and KPIs (docs/resilience.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_client import QueueFileInUse
from ipc_client.circuit_breaker import CircuitBreakerOptions
from ipc_protocol import CircuitOpen, ConnectionLost, IPCError, NoResponders, NotConnected, QueueFull, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy

FAST = {"initial_delay": 0.02, "max_delay": 0.1, "jitter": 0.0}


@pytest.fixture
async def proxy(server: IPCServer) -> AsyncIterator[FaultProxy]:
    p = await FaultProxy("127.0.0.1", server.port).start()
    yield p
    await p.close()


@pytest.fixture
async def via_proxy(proxy: FaultProxy) -> AsyncIterator[Callable[..., Any]]:
    """Clients that talk to the server through the proxy."""
    clients: list[IPCClient] = []

    async def make(app_id: str = "app", *, connect: bool = True, **kwargs: Any) -> IPCClient:
        client = IPCClient(app_id, "127.0.0.1", proxy.port, **{**FAST, **kwargs})
        clients.append(client)
        if connect:
            await client.connect()
        return client

    yield make
    for c in clients:
        await c.disconnect()


async def until(predicate: Callable[[], bool]) -> None:
    """Wait, bounded, for a condition no event announces."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.005)


def state_event(client: IPCClient, name: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()
    client.on(name, lambda *args: q.put_nowait(args[0] if args else None))
    return q


async def outage(proxy: FaultProxy, client: IPCClient) -> None:
    """Take the server away (existing connections cut, new ones refused) and
    wait until the client knows."""
    reconnecting = state_event(client, "reconnecting")
    proxy.refuse(True)
    proxy.cut()
    await asyncio.wait_for(reconnecting.get(), WAIT_S)


async def test_requests_queued_during_an_outage_are_delivered_in_priority_order(server, proxy, via_proxy) -> None:
    seen: list[int] = []
    server.add_handler("work", lambda m: seen.append(m.payload) or m.payload * 10)
    client = await via_proxy()
    await outage(proxy, client)
    calls = [asyncio.ensure_future(client.request("work", n, priority=p, timeout=WAIT_S)) for n, p in [(1, 0), (2, 5), (3, 0), (4, 9)]]
    note = asyncio.ensure_future(client.notify("work", 5, priority=-1))
    await asyncio.wait_for(note, WAIT_S)  # a one-way call completes once it is queued
    await until(lambda: client.queue_stats()["size"] == 5)
    assert client.queue_stats()["by_priority"] == {9: 1, 5: 1, 0: 2, -1: 1}
    reconnected = state_event(client, "reconnected")
    proxy.refuse(False)
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == [10, 20, 30, 40]
    await asyncio.wait_for(reconnected.get(), WAIT_S)
    await until(lambda: len(seen) == 5)
    assert seen[:4] == [4, 2, 1, 3] and seen[4] == 5
    assert client.queue_stats()["size"] == 0


async def test_a_queued_request_fails_with_timeout_at_its_deadline(proxy, via_proxy) -> None:
    client = await via_proxy()
    await outage(proxy, client)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout):
        await client.request("anything", timeout=0.2)
    waited = loop.time() - started
    assert 0.2 <= waited < 0.2 + 1.0  # at its deadline: not before, not long after
    assert client.queue_stats()["size"] == 0
    assert client.queue_stats()["dropped"] == 1  # left the queue unsent
    assert client.metrics()["messages_failed"] == 1


async def test_fail_fast_policy_and_disconnected_state(proxy, via_proxy) -> None:
    client = await via_proxy()
    await outage(proxy, client)
    with pytest.raises(NotConnected):
        await client.request("x", on_disconnect="fail")
    with pytest.raises(NotConnected):
        await client.publish("x", 1, on_disconnect="fail")
    await client.disconnect()
    with pytest.raises(NotConnected):  # disconnected: nothing would ever send it
        await client.request("x")
    failing = IPCClient("app", "127.0.0.1", proxy.port, on_disconnect="fail", **FAST)
    assert failing.on_disconnect == "fail"
    with pytest.raises(ValueError):
        IPCClient("app", on_disconnect="maybe")


async def test_full_queue_rejects_or_evicts_by_policy(proxy, via_proxy) -> None:
    rejecting = await via_proxy(queue_max_size=2)
    evicting = await via_proxy(queue_max_size=2, queue_overflow="drop_oldest")
    await outage(proxy, rejecting)
    await until(lambda: evicting.state.value == "reconnecting")
    r1 = asyncio.ensure_future(rejecting.request("a", timeout=WAIT_S))
    r2 = asyncio.ensure_future(rejecting.request("b", timeout=WAIT_S))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await rejecting.request("c")
    dropped = state_event(evicting, "queue_dropped")
    await evicting.publish("p.old", 1)
    e1 = asyncio.ensure_future(evicting.request("e1", timeout=WAIT_S))
    await asyncio.sleep(0)
    e2 = asyncio.ensure_future(evicting.request("e2", timeout=WAIT_S))  # evicts the publish
    e3 = asyncio.ensure_future(evicting.request("e3", timeout=WAIT_S))  # evicts e1
    event = await asyncio.wait_for(dropped.get(), WAIT_S)
    assert event == {"reason": "evicted", "channel": "p.old", "message_type": "publish", "priority": 0}
    with pytest.raises(QueueFull):
        await e1
    assert evicting.queue_stats()["dropped"] == 2
    await rejecting.disconnect()
    await evicting.disconnect()
    for fut in (r1, r2, e2, e3):  # settled by disconnect(), exactly once
        with pytest.raises(NotConnected):
            await fut


async def test_subscriptions_are_restored_before_the_queue_is_replayed(proxy, via_proxy) -> None:
    client = await via_proxy()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await client.subscribe("news.*", lambda m: got.put_nowait(m.payload))
    served = client.serve("svc.echo", lambda m: m.payload)
    await served
    await outage(proxy, client)
    await client.publish("news.a", "queued while away")
    answer = asyncio.ensure_future(client.request("svc.echo", "to myself", timeout=WAIT_S))
    proxy.refuse(False)
    assert await asyncio.wait_for(got.get(), WAIT_S) == "queued while away"
    assert await asyncio.wait_for(answer, WAIT_S) == "to myself"


async def test_black_hole_is_detected_within_interval_plus_timeout(proxy, via_proxy) -> None:
    interval, timeout = 0.2, 0.5
    client = await via_proxy(heartbeat_interval=interval, heartbeat_timeout=timeout)
    assert client.get_connection_health()["healthy"]
    lost = state_event(client, "heartbeat_timeout")
    loop = asyncio.get_running_loop()
    in_flight = asyncio.ensure_future(client.request("never.answered", timeout=WAIT_S))
    await asyncio.sleep(0)
    proxy.blackhole(True)
    started = loop.time()
    await asyncio.wait_for(lost.get(), WAIT_S)
    assert loop.time() - started <= interval + timeout + 1.5
    with pytest.raises(ConnectionLost):  # failed at detection, not at its own 5 s timeout
        await asyncio.wait_for(in_flight, 1.0)
    health = client.get_connection_health()
    assert not health["healthy"] and health["state"] == "reconnecting"
    proxy.blackhole(False)
    await asyncio.wait_for(state_event(client, "connected").get(), WAIT_S)
    assert client.get_connection_health()["healthy"]


async def test_no_call_waits_past_its_deadline_through_a_black_hole(proxy, via_proxy) -> None:
    client = await via_proxy(heartbeat_interval=10.0)  # the heartbeat will not save anyone here
    proxy.blackhole(True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(client.request("x", timeout=0.1 + i * 0.05) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, RequestTimeout) for r in results)
    assert loop.time() - started < 0.3 + 2.5


async def test_latency_within_the_deadline_is_fine_and_beyond_it_times_out(server, proxy, via_proxy) -> None:
    server.add_handler("echo", lambda m: m.payload)
    client = await via_proxy()
    proxy.set_latency(0.1)
    assert await client.request("echo", "slow but fine", timeout=2.0) == "slow but fine"
    with pytest.raises(RequestTimeout):
        await client.request("echo", "too slow", timeout=0.1)
    proxy.set_latency(0)


async def test_every_request_settles_exactly_once_under_cuts_and_mid_frame_closes(server, proxy, via_proxy) -> None:
    async def slow_echo(m: Any) -> Any:
        await asyncio.sleep(0.001)
        return m.payload

    server.add_handler("echo", slow_echo)
    client = await via_proxy(heartbeat_interval=0.5)
    settled: dict[int, list[str]] = {}

    async def one(i: int) -> None:
        try:
            result = await client.request("echo", i, timeout=3.0)
            assert result == i
            settled.setdefault(i, []).append("ok")
        except (ConnectionLost, RequestTimeout) as exc:
            settled.setdefault(i, []).append(type(exc).__name__)

    tasks = []
    for wave in range(30):  # requests keep coming while the path breaks every 50 ms
        tasks += [asyncio.ensure_future(one(wave * 20 + i)) for i in range(20)]
        await asyncio.sleep(0.01)
        if wave % 5 == 4 and wave < 25:  # then a quiet end, to show it recovers
            proxy.close_mid_frame() if wave % 10 == 9 else proxy.cut()
    await asyncio.wait_for(asyncio.gather(*tasks), 10.0)
    assert sorted(settled) == list(range(600))
    assert all(len(outcomes) == 1 for outcomes in settled.values())
    assert any(o == ["ok"] for o in settled.values())
    assert proxy.mid_frame_cuts >= 1
    assert await client.request("echo", "after", timeout=WAIT_S) == "after"  # and it recovered


async def test_persisted_one_way_messages_survive_a_client_restart(tmp_path: Path, server, proxy, make_client, via_proxy) -> None:
    path = str(tmp_path / "outbox.db")
    listener = await make_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await listener.subscribe("audit", lambda m: got.put_nowait(m.payload))
    first = await via_proxy(queue_path=path)
    await outage(proxy, first)
    for n in range(3):
        await first.publish("audit", n, priority=n, timeout=60)
    await first.notify("nobody.listens", "x", timeout=0.05)  # expires before the restart
    await first.disconnect()  # the process "stops" with messages still queued
    assert first.queue_stats()["size"] == 0
    proxy.refuse(False)
    second = await via_proxy(queue_path=path, connect=False)
    await asyncio.sleep(0.06)
    await second.connect()
    assert [await asyncio.wait_for(got.get(), WAIT_S) for _ in range(3)] == [2, 1, 0]
    assert second.metrics()["queue_dropped"] == 1  # the expired notification, counted
    await second.disconnect()  # one owner at a time
    third = await via_proxy(queue_path=path)  # sent means gone from the file
    assert third.queue_stats()["size"] == 0


async def test_circuit_breaker_opens_fails_fast_and_closes_again(server, via_proxy, make_client) -> None:
    options = CircuitBreakerOptions(failure_threshold=2, reset_timeout=0.2, success_threshold=1)
    client = await via_proxy(circuit_breaker=options)
    events: list[str] = []
    for name in ("circuit_open", "circuit_half_open", "circuit_closed"):
        client.on(name, lambda snap, name=name: events.append(f"{name}:{snap['key']}"))
    for _ in range(2):
        with pytest.raises(NoResponders):
            await client.request("svc.down")
    with pytest.raises(CircuitOpen) as info:
        await client.request("svc.down")
    assert 0 < info.value.retry_after <= 0.2
    assert client.circuit_breakers()["svc.down"]["state"] == "open"
    assert client.circuit_breakers()["svc.down"]["rejected"] == 1
    other = await make_client("app")
    await other.serve("svc.down", lambda m: "back")
    await asyncio.sleep(0.2)  # the breaker's reset timeout: this test is about time passing
    assert await client.request("svc.down") == "back"
    assert client.circuit_breakers()["svc.down"]["state"] == "closed"
    assert events == ["circuit_open:svc.down", "circuit_half_open:svc.down", "circuit_closed:svc.down"]


async def test_circuit_breaker_fallback_and_client_scope(via_proxy) -> None:
    calls: list[tuple[str, Any]] = []

    async def fallback(channel: str, payload: Any, error: CircuitOpen) -> Any:
        calls.append((channel, payload))
        return {"cached": True}

    client = await via_proxy(circuit_breaker=CircuitBreakerOptions(failure_threshold=1, reset_timeout=60, scope="client", fallback=fallback))
    with pytest.raises(NoResponders):
        await client.request("a")
    assert await client.request("b", 7) == {"cached": True}  # one breaker for every channel
    assert calls == [("b", 7)]
    assert list(client.circuit_breakers()) == ["*"]


async def test_kpis_after_an_outage(server, proxy, via_proxy) -> None:
    server.add_handler("echo", lambda m: m.payload)
    client = await via_proxy()
    assert await client.request("echo", 1) == 1
    await outage(proxy, client)
    failed_attempt = state_event(client, "reconnecting")
    await asyncio.wait_for(failed_attempt.get(), WAIT_S)  # at least one refused attempt
    queued = asyncio.ensure_future(client.request("echo", 2, timeout=WAIT_S))
    proxy.refuse(False)
    assert await asyncio.wait_for(queued, WAIT_S) == 2
    with pytest.raises(IPCError):
        await client.request("nobody")
    m = client.metrics()
    assert m["reconnections"] == 1
    assert m["connection_attempts"] > m["connection_successes"] == 2
    assert 0 < m["connection_success_rate"] < 1
    assert m["average_reconnection_time_ms"] > 0
    assert m["messages_sent"] == 3 and m["messages_delivered"] == 3 and m["messages_failed"] == 0
    assert m["message_delivery_rate"] == 1.0
    assert m["active_connections"] == 1 and m["average_connection_duration_ms"] > 0
    assert m["queued"] == 0


async def test_served_requests_beyond_the_concurrency_bound_wait_their_turn(server, make_client) -> None:
    worker = await make_client(max_concurrent_handlers=2)
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def slow(m: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return m.payload

    await worker.serve("bounded", slow)
    caller = await make_client()
    calls = [asyncio.ensure_future(caller.request("bounded", i, timeout=WAIT_S)) for i in range(12)]
    await until(lambda: running == 2)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == list(range(12))
    assert peak == 2


async def test_disconnect_frees_the_handler_slots_of_handlers_it_cancels(server, make_client) -> None:
    """Handlers close their own books as they end; ones disconnect() cancels,
    even before their first step, must not hold a slot after connect()."""
    worker = await make_client(max_concurrent_handlers=2)
    started = 0
    gate = asyncio.Event()

    async def slow(m: Any) -> Any:
        nonlocal started
        started += 1
        await gate.wait()
        return m.payload

    await worker.serve("slots", slow)
    caller = await make_client()
    calls = [asyncio.ensure_future(caller.request("slots", i, timeout=WAIT_S)) for i in range(2)]
    await until(lambda: started == 2)
    await worker.disconnect()
    assert all(isinstance(e, IPCError) for e in await asyncio.gather(*calls, return_exceptions=True))
    gate.set()
    await worker.connect()
    assert await asyncio.wait_for(asyncio.gather(*(caller.request("slots", i, timeout=WAIT_S) for i in range(4))), WAIT_S) == [0, 1, 2, 3]


async def test_calls_queued_while_connecting_go_out_and_later_calls_follow_them(server, proxy, via_proxy) -> None:
    server.add_handler("echo", lambda m: m.payload if isinstance(m.payload, int) else len(m.payload))
    client = await via_proxy(connect=False)
    proxy.set_latency(0.05)  # the handshake takes a while: calls made meanwhile are queued
    connecting = asyncio.ensure_future(client.connect())
    await until(lambda: client.state.value == "connecting")
    big = "x" * 1_000_000
    queued = [asyncio.ensure_future(client.request("echo", big, timeout=WAIT_S)) for _ in range(8)]
    proxy.set_latency(0)
    await asyncio.wait_for(connecting, WAIT_S)
    assert await client.request("echo", 7, timeout=WAIT_S) == 7  # behind the replay, not stuck
    assert await asyncio.wait_for(asyncio.gather(*queued), WAIT_S) == [1_000_000] * 8
    assert client.queue_stats()["size"] == 0


async def test_a_call_blocked_on_a_full_socket_still_ends_at_its_deadline(proxy, via_proxy) -> None:
    client = await via_proxy(heartbeat_interval=30.0)
    proxy.blackhole(True)  # bytes stop flowing: the socket buffers fill up
    loop = asyncio.get_running_loop()
    payload = "y" * 8_000_000
    for call in (client.request("sink", payload, timeout=0.5), client.publish("sink", payload, timeout=0.5)):
        started = loop.time()
        with pytest.raises(RequestTimeout):
            await call
        assert loop.time() - started < 0.5 + 2.5


async def test_disconnect_then_connect_while_the_first_connect_is_opening(server, proxy, via_proxy) -> None:
    server.add_handler("echo", lambda m: m.payload)
    client = await via_proxy(connect=False)
    proxy.set_latency(0.1)
    first = asyncio.ensure_future(client.connect())
    await until(lambda: proxy.accepted == 1)
    await client.disconnect()
    proxy.set_latency(0)
    assert await client.connect()
    with pytest.raises(NotConnected):
        await first
    assert await client.request("echo", "live", timeout=WAIT_S) == "live"
    await until(lambda: proxy.connections == 1)  # the stale attempt closed its own socket
    assert client.metrics()["active_connections"] == 1


async def test_handlers_that_make_requests_do_not_deadlock_past_the_concurrency_bound(server, make_client) -> None:
    server.add_handler("inner", lambda m: m.payload + 1)
    worker = await make_client(max_concurrent_handlers=1)

    async def outer(m: Any) -> Any:
        return await worker.request("inner", m.payload, timeout=WAIT_S)

    await worker.serve("outer", outer)
    caller = await make_client()
    results = await asyncio.wait_for(asyncio.gather(*(caller.request("outer", i, timeout=WAIT_S) for i in range(12))), WAIT_S)
    assert results == [i + 1 for i in range(12)]


async def test_calls_queued_during_a_failing_first_connect_fail_with_it(proxy, via_proxy) -> None:
    proxy.blackhole(True)  # TCP connects, the handshake never completes
    client = await via_proxy(connect=False, connect_timeout=0.3)
    connecting = asyncio.ensure_future(client.connect())
    await until(lambda: client.state.value == "connecting")
    loop = asyncio.get_running_loop()
    started = loop.time()
    queued = asyncio.ensure_future(client.request("x", timeout=WAIT_S))
    with pytest.raises(NotConnected):
        await connecting
    with pytest.raises(NotConnected):
        await asyncio.wait_for(queued, WAIT_S)
    assert loop.time() - started < WAIT_S / 2  # at the failed connect, not at its own 5 s deadline
    assert client.queue_stats()["size"] == 0


async def test_unserve_under_load_hands_requests_to_the_other_responder(server, make_client) -> None:
    async def work(m: Any) -> Any:
        await asyncio.sleep(0.002)
        return m.payload

    a = await make_client()
    b = await make_client()
    caller = await make_client()
    await b.serve("c", work)
    failures: list[str] = []

    async def sender() -> None:
        for i in range(150):
            try:
                assert await caller.request("c", i, timeout=WAIT_S) == i
            except IPCError as exc:
                failures.append(f"{exc.code}: {exc}")

    load = asyncio.ensure_future(asyncio.gather(*(sender() for _ in range(10))))
    for _ in range(8):  # a comes and goes while b serves throughout
        await a.serve("c", work)
        await asyncio.sleep(0.02)
        await a.unserve("c")
    await asyncio.wait_for(load, 30)
    assert failures == []


async def test_two_clients_cannot_share_a_queue_file(tmp_path: Path, via_proxy) -> None:
    path = str(tmp_path / "outbox.db")
    owner = await via_proxy(queue_path=path)
    other = await via_proxy(queue_path=path, connect=False)
    with pytest.raises(QueueFileInUse):
        await other.connect()
    assert other.state.value == "disconnected"
    await owner.disconnect()  # gives the file up
    assert await other.connect()


async def test_a_subscribe_that_times_out_in_an_outage_is_not_kept(server, proxy, via_proxy) -> None:
    """It raised, so the client does not subscribe it later either (as the
    Node client): once back, only the subscription that succeeded is the
    server's, and a publish reaches only its handler."""
    client = await via_proxy(request_timeout=0.2)
    kept: asyncio.Queue[Any] = asyncio.Queue()
    await client.subscribe("news.kept", lambda m: kept.put_nowait(m.payload))
    await outage(proxy, client)
    dropped: list[Any] = []
    with pytest.raises(RequestTimeout):
        await client.subscribe("news.*", dropped.append)
    reconnected = state_event(client, "reconnected")
    proxy.refuse(False)
    await asyncio.wait_for(reconnected.get(), WAIT_S)
    assert server.stats.subscriptions == 1
    publisher = await via_proxy()
    await publisher.publish("news.kept", "after")
    assert await asyncio.wait_for(kept.get(), WAIT_S) == "after" and dropped == []
