"""The Python client's resilience over real loopback TCP, with the fault proxy
between it and the real server: outages, black holes, latency, connections
closed mid-frame, the circuit breaker, health and KPIs, handlers under
load (docs/resilience.md; the offline queue: tests/test_resilience_queue.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ipc_client.circuit_breaker import CircuitBreakerOptions
from ipc_protocol import CircuitOpen, ConnectionLost, IPCError, NoResponders, NotConnected, RequestTimeout

from .conftest import WAIT_S
from .proxied import outage, proxy, state_event, until, via_proxy  # noqa: F401 - proxy and via_proxy are fixtures


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

async def test_system_calls_count_in_the_kpis_as_nodes_do(via_proxy) -> None:
    """``system()`` is a request the application makes: counted sent and
    delivered (or failed), as Node's ``system()`` is (docs/resilience.md §2)."""
    client = await via_proxy()
    for _ in range(3):
        assert await client.system("ping") == {"status": "pong"}
    with pytest.raises(NoResponders):
        await client.system("nobody.serves.this")  # an error answer from the other side: delivered, as for any request
    m = client.metrics()
    assert (m["messages_sent"], m["messages_delivered"], m["messages_failed"]) == (4, 4, 0)


async def test_a_health_ping_is_the_last_pong_and_connection_health_outlives_the_connection(proxy, via_proxy) -> None:
    """As in Node (docs/resilience.md §5): health()'s answer is a pong (the
    'heartbeat' event, last_heartbeat, latency_ms), and what the client
    heard is still reported while it reconnects and once it is back.
    Before, Python reported no event and nulls throughout."""
    client = await via_proxy(heartbeat_interval=30.0)  # no heartbeat ping within the test: the pong is health()'s
    beats = state_event(client, "heartbeat")
    h = await client.health()
    assert h["healthy"]
    assert beats.get_nowait()["latency"] * 1000 == pytest.approx(h["latency_ms"], abs=0.001)  # emitted before health() returned
    heard = client.get_connection_health()
    assert heard["latency_ms"] == h["latency_ms"] and heard["last_heartbeat"] is not None and heard["last_received"] is not None
    assert client.get_connection_info()["heartbeat_latency_ms"] == h["latency_ms"]
    await outage(proxy, client)
    away = client.get_connection_health()
    assert away["state"] == "reconnecting" and not away["healthy"]
    assert away["latency_ms"] == h["latency_ms"]
    assert away["last_heartbeat"] == pytest.approx(heard["last_heartbeat"], abs=0.005)
    assert away["last_received"] == pytest.approx(heard["last_received"], abs=1.0)  # the last read of the lost connection
    assert away["heartbeat_interval_ms"] is None  # the settings are the connection's
    reconnected = state_event(client, "reconnected")
    proxy.refuse(False)
    await asyncio.wait_for(reconnected.get(), WAIT_S)
    back = client.get_connection_health()
    assert back["healthy"] and back["latency_ms"] == h["latency_ms"]
    assert back["last_heartbeat"] == pytest.approx(heard["last_heartbeat"], abs=0.005)
    assert back["last_received"] >= away["last_received"]

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
