"""LoadBalancedClient over real servers on loopback (docs/resilience.md §8):
strategies, failover within the deadline, health checks, a server killed
under load, registrations restored on a server that comes back."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import IPCClient, LoadBalancedClient
from ipc_protocol import HandlerError, Message, NoResponders, NotConnected, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .test_pool import free_port, until


@pytest.fixture
async def servers() -> AsyncIterator[list[IPCServer]]:
    """Two in-process servers; ``who`` answers each one's name."""
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2, no_responders_grace_s=0) as a, IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2, no_responders_grace_s=0) as b:
        a.add_handler("who", lambda msg: "a")
        b.add_handler("who", lambda msg: "b")
        yield [a, b]


@pytest.fixture
async def make_lb() -> AsyncIterator[Callable[..., Any]]:
    made: list[LoadBalancedClient] = []

    async def make(servers: list[Any], *, start: bool = True, **kwargs: Any) -> LoadBalancedClient:
        kwargs.setdefault("health_check_interval", None)
        kwargs.setdefault("connect_timeout", 2)
        lb = LoadBalancedClient("app", servers, **kwargs)
        made.append(lb)
        if start:
            await lb.start()
        return lb

    yield make
    for lb in made:
        await lb.close()


def addr(srv: Any) -> tuple[str, int]:
    return ("127.0.0.1", srv.port)


def event_future(lb: LoadBalancedClient, event: str, port: int) -> asyncio.Future[Any]:
    """Resolves at the next ``event`` about the server on ``port``."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def cb(snapshot: dict[str, Any], *rest: Any) -> None:
        if snapshot["port"] == port and not fut.done():
            fut.set_result(snapshot)

    lb.on(event, cb)
    return fut


async def test_round_robin_alternates_and_counts(servers, make_lb) -> None:
    lb = await make_lb([addr(s) for s in servers])
    assert [await lb.request("who") for _ in range(6)] == ["a", "b"] * 3
    stats = lb.server_stats()
    assert [(s["requests"], s["errors"], s["healthy"], s["in_flight"]) for s in stats] == [(3, 0, True, 0)] * 2
    assert all(s["average_latency_ms"] > 0 and s["error_rate"] == 0.0 for s in stats)
    assert "healthy=2/2" in repr(lb)


async def test_server_specs_in_every_form(servers, make_lb) -> None:
    a, b = servers
    lb = await make_lb([f"127.0.0.1:{a.port}", {"host": "127.0.0.1", "port": b.port, "weight": 2}])
    assert [(s["port"], s["weight"]) for s in lb.server_stats()] == [(a.port, 1), (b.port, 2)]
    with pytest.raises(ValueError):
        LoadBalancedClient("app", [])
    with pytest.raises(ValueError):
        LoadBalancedClient("app", [addr(a)], strategy="fastest")


async def test_weighted_distribution_follows_the_weights(servers, make_lb) -> None:
    a, b = servers
    lb = await make_lb([{"host": "127.0.0.1", "port": a.port, "weight": 3}, {"host": "127.0.0.1", "port": b.port, "weight": 1}], strategy="weighted")
    answers = [await lb.request("who") for _ in range(40)]
    assert Counter(answers) == {"a": 30, "b": 10}
    assert answers[:4] == ["a", "a", "b", "a"]  # smooth: b is not left for last
    # Concurrent calls follow the weights too.
    assert Counter(await asyncio.gather(*(lb.request("who") for _ in range(40)))) == {"a": 30, "b": 10}


async def test_random_strategy_with_a_seeded_source(servers, make_lb) -> None:
    lb = await make_lb([addr(s) for s in servers], strategy="random", rng=random.Random(7))
    answers = Counter([await lb.request("who") for _ in range(60)])
    assert answers["a"] > 10 and answers["b"] > 10


async def test_least_connections_avoids_the_busy_server(servers, make_lb) -> None:
    release = asyncio.Event()

    async def hold(msg: Message) -> str:
        await release.wait()
        return "held"

    for s in servers:
        s.add_handler("hold", hold)
    lb = await make_lb([addr(s) for s in servers], strategy="least_connections")
    held = asyncio.ensure_future(lb.request("hold"))
    await until(lambda: sum(s["in_flight"] for s in lb.server_stats()) == 1)
    busy = next(i for i, s in enumerate(lb.server_stats()) if s["in_flight"] == 1)
    idle_name = "ab"[1 - busy]
    assert [await lb.request("who") for _ in range(10)] == [idle_name] * 10
    release.set()
    assert await asyncio.wait_for(held, WAIT_S) == "held"
    assert {await lb.request("who") for _ in range(4)} == {"a", "b"}  # spread again once idle


async def test_no_responders_fails_over_and_other_errors_do_not(servers, make_lb) -> None:
    a, b = servers
    b.add_handler("only_b", lambda msg: "b")
    a.add_handler("boom", lambda msg: 1 / 0)
    b.add_handler("boom", lambda msg: 1 / 0)
    lb = await make_lb([addr(a), addr(b)])
    assert [await lb.request("only_b") for _ in range(4)] == ["b"] * 4
    assert lb.server_stats()[0]["errors"] == 4  # a said no_responders each time (rr resumes after b), still healthy
    assert lb.server_stats()[0]["healthy"]
    with pytest.raises(NoResponders):
        await lb.request("nobody")
    before = [s["requests"] for s in lb.server_stats()]
    with pytest.raises(HandlerError):
        await lb.request("boom")
    after = [s["requests"] for s in lb.server_stats()]
    assert sum(after) - sum(before) == 1  # not retried elsewhere


async def test_a_refused_server_is_skipped_and_taken_out(servers, make_lb) -> None:
    dead = free_port()
    a = servers[0]
    lb = await make_lb([("127.0.0.1", dead), addr(a)])
    assert [s["healthy"] for s in lb.server_stats()] == [False, True]
    assert [await lb.request("who") for _ in range(3)] == ["a"] * 3


async def test_no_healthy_server_raises_not_connected(make_lb) -> None:
    lb = await make_lb([("127.0.0.1", free_port()), ("127.0.0.1", free_port())], start=False)
    with pytest.raises(NotConnected):
        await lb.request("who")  # not started
    with pytest.raises(NotConnected):
        await lb.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NotConnected):
        await lb.request("who", timeout=5)
    assert loop.time() - started < 2.5  # at once, not at the 5 s deadline
    await lb.close()
    with pytest.raises(NotConnected):
        await lb.request("who")


async def test_calls_end_by_their_deadline(servers, make_lb) -> None:
    async def never(msg: Message) -> None:
        await asyncio.Event().wait()

    for s in servers:
        s.add_handler("never", never)
    lb = await make_lb([addr(s) for s in servers])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout):
        await lb.request("never", timeout=0.2)
    assert 0.19 <= loop.time() - started < 2.0
    assert sum(s["requests"] for s in lb.server_stats()) == 1  # a timeout is not failed over


async def test_publish_goes_to_one_server_and_subscribe_to_every_one(servers, make_lb) -> None:
    a, b = servers
    lb = await make_lb([addr(a), addr(b)])
    got: asyncio.Queue[Any] = asyncio.Queue()
    assert await lb.subscribe("news", lambda msg: got.put_nowait(msg.payload)) == 2
    assert await lb.serve("double", lambda msg: msg.payload * 2) == 2
    with pytest.raises(ValueError):
        await lb.serve("double", lambda msg: 0)
    for srv in (a, b):
        async with IPCClient("app", "127.0.0.1", srv.port) as other:
            assert await other.publish("news", srv.port, ack=True) == 1
            assert await asyncio.wait_for(got.get(), WAIT_S) == srv.port
            assert await other.request("double", 21) == 42
    # One publish reaches one server: our own subscriber there, once.
    assert await lb.publish("news", "x", ack=True) == 1
    assert await asyncio.wait_for(got.get(), WAIT_S) == "x"
    await lb.unsubscribe("news")
    assert await lb.publish("news", "y", ack=True) == 0


async def test_a_lost_connection_takes_the_server_out_at_once(spawn, servers, make_lb) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    lb = await make_lb([("127.0.0.1", srv.port), addr(servers[1])])  # no health checks
    down = event_future(lb, "server_down", srv.port)
    srv.signal(signal.SIGKILL)
    await srv.wait()
    snapshot = await asyncio.wait_for(down, WAIT_S)
    assert snapshot["healthy"] is False
    assert [await lb.request("who") for _ in range(3)] == ["b"] * 3


async def test_killing_a_server_under_load_moves_traffic_and_settles_every_call(spawn, make_lb) -> None:
    procs = [await spawn("-m", "ipc_server", "--port", "0") for _ in range(2)]
    responders = []
    for name, proc in zip("ab", procs):
        r = IPCClient("app", "127.0.0.1", proc.port, reconnect=False)
        await r.connect()

        async def work(msg: Message, name: str = name) -> str:
            await asyncio.sleep(0.002)
            return name

        await r.serve("work", work)
        responders.append(r)
    lb = await make_lb([("127.0.0.1", p.port) for p in procs], health_check_interval=0.2, request_timeout=10)
    down = event_future(lb, "server_down", procs[0].port)
    settled: Counter[int] = Counter()
    outcomes: dict[int, Any] = {}
    total, concurrency = 400, 16
    next_id = 0
    kill_after = 100
    killed_at: float | None = None
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        nonlocal next_id, killed_at
        while next_id < total:
            i = next_id
            next_id += 1
            if i == kill_after:
                procs[0].signal(signal.SIGKILL)
                killed_at = loop.time()
            try:
                outcomes[i] = (await lb.request("work", i), loop.time())
            except Exception as exc:  # recorded, then asserted absent
                outcomes[i] = (exc, loop.time())
            settled[i] += 1

    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 30)
        await asyncio.wait_for(down, WAIT_S)
    finally:
        for r in responders:
            await r.disconnect()
    assert set(settled) == set(range(total)) and set(settled.values()) == {1}  # each exactly once
    errors = [o for o, _ in outcomes.values() if isinstance(o, Exception)]
    assert errors == []  # the in-flight calls on the killed server failed over
    assert killed_at is not None
    answers = Counter(o for o, _ in outcomes.values())
    assert answers["a"] > 0 and answers["b"] > total // 2
    stats = {s["port"]: s for s in lb.server_stats()}
    assert stats[procs[0].port]["healthy"] is False and stats[procs[1].port]["healthy"] is True
    # Calls in flight on the killed server failed there and were answered by b.
    assert stats[procs[0].port]["errors"] >= 1
    assert stats[procs[0].port]["requests"] - stats[procs[0].port]["errors"] == answers["a"]
    assert stats[procs[1].port]["requests"] == answers["b"]
    # Every call that started after the server went down was answered by b.
    late = [o for i, (o, t) in outcomes.items() if i >= kill_after + 2 * concurrency]
    assert late and set(late) == {"b"}


async def test_health_checks_take_a_dead_server_out_and_put_it_back_with_its_registrations(spawn, servers, make_lb) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    port = srv.port
    lb = await make_lb([("127.0.0.1", port), addr(servers[1])], health_check_interval=0.05, health_check_timeout=1, initial_delay=0.05)
    got: asyncio.Queue[Any] = asyncio.Queue()
    assert await lb.subscribe("news", lambda msg: got.put_nowait(msg.payload)) == 2
    assert await lb.serve("echo", lambda msg: msg.payload) == 2

    down = event_future(lb, "server_down", port)
    srv.signal(signal.SIGKILL)
    await srv.wait()
    await asyncio.wait_for(down, WAIT_S)
    assert await asyncio.gather(*(lb.request("who") for _ in range(5))) == ["b"] * 5

    up = event_future(lb, "server_up", port)
    await spawn("-m", "ipc_server", "--port", str(port))
    await asyncio.wait_for(up, WAIT_S)
    assert lb.server_stats()[0]["healthy"] is True
    # The replacement connection carries the subscription and the responder again.
    async with IPCClient("app", "127.0.0.1", port) as other:
        assert await other.publish("news", "back", ack=True) == 1
        assert await asyncio.wait_for(got.get(), WAIT_S) == "back"
        assert await other.request("echo", "hi") == "hi"
    assert await lb.request("echo", 1) == 1 and await lb.request("echo", 2) == 2  # both servers in rotation
    assert got.empty()


async def test_start_with_no_server_names_the_first_server_s_failure_and_its_cause(make_lb) -> None:
    # resilience.md §8: connect()'s words and its cause, not the pool's NotConnected as the cause.
    first, second = free_port(), free_port()  # nobody listens on either
    with pytest.raises(NotConnected) as info:
        await make_lb([("127.0.0.1", first), ("127.0.0.1", second)])
    assert str(info.value).startswith(f"no server could be reached: cannot connect to 127.0.0.1:{first}: ")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_registration_with_every_server_down_is_refused(make_lb, servers) -> None:
    lb = await make_lb([addr(servers[0])])
    await servers[0].close()
    await until(lambda: not lb.server_stats()[0]["healthy"])
    with pytest.raises(NotConnected):
        await lb.subscribe("news", lambda msg: None)
    assert lb.pools()[f"127.0.0.1:{servers[0].port}"]._registrations.subscriptions == {}


async def test_metrics_sum_the_pools(servers, make_lb) -> None:
    lb = await make_lb([addr(s) for s in servers])
    for _ in range(4):
        await lb.request("who")
    m = lb.metrics()
    assert m["active_connections"] == 2
    assert m["messages_delivered"] >= 4 and m["message_delivery_rate"] == 1.0


async def test_without_health_checks_a_server_returns_when_its_pool_reconnects(servers, make_lb) -> None:
    # The health check was the only way back: with none, a server that lost
    # its connection stayed out of rotation although its pool had reconnected.
    a, b = servers
    proxy = await FaultProxy("127.0.0.1", a.port).start()
    try:
        lb = await make_lb([("127.0.0.1", proxy.port), addr(b)], initial_delay=0.01)  # no health checks
        down = event_future(lb, "server_down", proxy.port)
        up = event_future(lb, "server_up", proxy.port)
        proxy.cut()
        await asyncio.wait_for(down, WAIT_S)
        snapshot = await asyncio.wait_for(up, WAIT_S)  # the pool's replacement connection brings it back
        assert snapshot["healthy"] is True and lb.server_stats()[0]["healthy"] is True
        assert Counter([await lb.request("who") for _ in range(4)]) == {"a": 2, "b": 2}
    finally:
        await proxy.close()


async def test_without_health_checks_a_call_answered_by_a_server_puts_it_back(servers, make_lb) -> None:
    a, b = servers
    entered = asyncio.Event()
    answer = asyncio.Event()

    async def gated(msg: Message) -> str:
        entered.set()
        await answer.wait()
        return "a"

    a.add_handler("gated", gated)
    lb = await make_lb([addr(a), addr(b)], min_connections=1, max_connections=2)
    pool = lb.pools()[f"127.0.0.1:{a.port}"]
    call = asyncio.ensure_future(lb.request("gated", timeout=WAIT_S))  # only a answers it
    await asyncio.wait_for(entered.wait(), WAIT_S)
    # A second connection to a drops (no replacement: the pool is at its
    # minimum): a leaves the rotation while the call is still in flight on
    # the first connection.
    down = event_future(lb, "server_down", a.port)
    other = await pool.acquire()
    await other.disconnect()
    pool.release(other)
    await asyncio.wait_for(down, WAIT_S)
    assert lb.server_stats()[0]["healthy"] is False
    up = event_future(lb, "server_up", a.port)
    answer.set()
    assert await asyncio.wait_for(call, WAIT_S) == "a"
    await asyncio.wait_for(up, WAIT_S)
    assert lb.server_stats()[0]["healthy"] is True
    assert Counter([await lb.request("who") for _ in range(4)]) == {"a": 2, "b": 2}


async def test_queue_path_is_refused(servers, tmp_path) -> None:
    # Every pooled connection would open the same file and replay all of it.
    with pytest.raises(ValueError, match="queue_path"):
        LoadBalancedClient("app", [addr(s) for s in servers], queue_path=str(tmp_path / "outbox.db"))
    assert not (tmp_path / "outbox.db").exists()


async def test_registrations_withdrawn_while_they_are_made_are_not_left_on_the_server() -> None:
    """serve()/subscribe() not yet done when unserve()/unsubscribe() runs:
    once both end, the server holds neither."""
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        lb = LoadBalancedClient("app", [("127.0.0.1", server.port)])
        await lb.start()
        got: list[Any] = []
        try:
            serving = asyncio.ensure_future(lb.serve("jobs.lb", lambda msg: "from lb"))
            subscribing = asyncio.ensure_future(lb.subscribe("news.lb", got.append))
            await asyncio.sleep(0)  # both under way
            await lb.unserve("jobs.lb")
            await lb.unsubscribe("news.lb")
            await asyncio.wait_for(asyncio.gather(serving, subscribing, return_exceptions=True), WAIT_S)
            async with IPCClient("app", "127.0.0.1", server.port) as other:
                assert (await other.system("services"))["services"] == {}
                with pytest.raises(NoResponders):
                    await other.request("jobs.lb", None, timeout=WAIT_S)
                assert await other.publish("news.lb", 1, ack=True) == 0
            assert got == []
        finally:
            await lb.close()
