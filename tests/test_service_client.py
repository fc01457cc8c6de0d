"""ServiceClient for gateways over real servers (docs/resilience.md §9)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import ServiceClient
from ipc_protocol import HandlerError, Message, NotConnected, RequestTimeout
from ipc_server import IPCServer

from .test_pool import free_port


@pytest.fixture
async def backends() -> AsyncIterator[list[IPCServer]]:
    """Server a hosts the ``users`` app; a and b both host ``shop``."""

    async def never(msg: Message) -> None:
        await asyncio.Event().wait()

    async with IPCServer("127.0.0.1", 0) as a, IPCServer("127.0.0.1", 0) as b:
        a.add_handler("get", lambda msg: {"user": msg.payload}, app_id="users")
        a.add_handler("slow", never, app_id="users")
        a.add_handler("boom", lambda msg: 1 / 0, app_id="users")
        for name, srv in (("a", a), ("b", b)):
            srv.add_handler("where", lambda msg, name=name: name, app_id="shop")
        yield [a, b]


@pytest.fixture
async def gateway(backends) -> AsyncIterator[ServiceClient]:
    a, b = backends
    sc = ServiceClient(
        {
            "users": {"host": "127.0.0.1", "port": a.port, "timeout": 2},
            "orders": {"servers": [("127.0.0.1", a.port), f"127.0.0.1:{b.port}"], "app_id": "shop", "reconnect_delay": 0.05},
        },
        connect_timeout=2,
    )
    await sc.start()
    yield sc
    await sc.shutdown()


async def test_requests_reach_each_service_in_its_app(gateway) -> None:
    assert await gateway.request("users", "get", 7) == {"user": 7}
    assert sorted([await gateway.request("orders", "where") for _ in range(4)]) == ["a", "a", "b", "b"]
    assert gateway.services == ["users", "orders"]
    assert gateway.client("orders").app_id == "shop"
    pool = next(iter(gateway.client("orders").pools().values()))
    assert pool.client_options["initial_delay"] == 0.05


async def test_unknown_service_is_a_value_error(gateway) -> None:
    with pytest.raises(ValueError, match="unknown service 'billing'"):
        await gateway.request("billing", "get")


async def test_metrics_count_calls_errors_and_timeouts(gateway) -> None:
    for i in range(10):
        await gateway.request("users", "get", i)
    with pytest.raises(HandlerError):
        await gateway.request("users", "boom")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout):
        await gateway.request("users", "slow", timeout=0.1)
    assert loop.time() - started < 1.5  # its own 0.1 s, not the service's 2 s
    m = gateway.metrics()
    users = m["users"]
    assert (users["requests"], users["errors"], users["timeouts"]) == (12, 2, 1)
    assert users["requests_per_s"] > 0
    lat = users["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] and lat["p99"] >= 100  # the timed-out call
    assert lat["avg"] > 0
    assert m["orders"] == {"requests": 0, "errors": 0, "timeouts": 0, "requests_per_s": 0.0, "latency_ms": {"avg": None, "p50": None, "p99": None}}


async def test_status_reports_each_service_and_its_servers(gateway, backends) -> None:
    status = gateway.status()
    assert status["users"]["healthy"] and status["orders"]["healthy"]
    assert [s["port"] for s in status["orders"]["servers"]] == [b.port for b in backends]


async def test_an_unreachable_service_fails_start_but_the_others_work(backends) -> None:
    dead = free_port()
    sc = ServiceClient({"users": {"host": "127.0.0.1", "port": backends[0].port}, "gone": {"host": "127.0.0.1", "port": dead}}, connect_timeout=2)
    try:
        with pytest.raises(NotConnected, match="gone"):
            await sc.start()
        assert await sc.request("users", "get", 1) == {"user": 1}
        with pytest.raises(NotConnected):
            await sc.request("gone", "get")
        status = sc.status()
        assert status["users"]["healthy"] and not status["gone"]["healthy"]
        assert sc.metrics()["gone"]["errors"] == 1
    finally:
        await sc.shutdown()


async def test_shutdown_makes_later_calls_fail(gateway) -> None:
    await gateway.shutdown()
    with pytest.raises(NotConnected):
        await gateway.request("users", "get", 1)
    assert not any(s["healthy"] for s in gateway.status().values())
    await gateway.shutdown()  # twice is fine
    assert "shut down" in repr(gateway)


@pytest.mark.parametrize(
    "services",
    [{"x": {"host": "h"}}, {"x": {"port": 1, "colour": "red"}}, {"x": 5}, {"x": {"servers": ["nohost"]}}, ["x"]],
)
def test_bad_descriptions_are_refused(services: Any) -> None:
    with pytest.raises(ValueError):
        ServiceClient(services)


async def test_async_context_manager(backends) -> None:
    async with ServiceClient({"users": {"host": "127.0.0.1", "port": backends[0].port}}) as sc:
        assert await sc.request("users", "get", "x") == {"user": "x"}
    with pytest.raises(NotConnected):
        await sc.request("users", "get")


def test_queue_path_is_refused(tmp_path) -> None:
    # A persisted outbox belongs to one client, not to every pooled connection.
    with pytest.raises(ValueError, match="queue_path"):
        ServiceClient({"users": {"port": 1}}, queue_path=str(tmp_path / "outbox.db"))
    assert not (tmp_path / "outbox.db").exists()


# -- the gateway ServiceClient's API (configure_service, get_metrics, ...) ----------


async def test_configure_service_then_request_connects_on_first_use(backends) -> None:
    a, _ = backends
    sc = ServiceClient()
    try:
        sc.configure_service("users", {"host": "127.0.0.1", "port": a.port, "max_connections": 4, "min_connections": 2, "timeout": 3})
        assert sc.status()["users"]["servers"][0]["healthy"] is True and sc.services == ["users"]
        calls = await asyncio.gather(*(sc.request("users", "get", i) for i in range(6)))  # all before any connection exists
        assert calls == [{"user": i} for i in range(6)]
        pool = next(iter(sc.client("users").pools().values()))
        assert (pool.min_connections, pool.max_connections) == (2, 4)
        assert pool.client_options["request_timeout"] == 3
        assert sc.get_metrics("users")["requests"] == 6 and set(sc.get_metrics()) == {"users"}
        status = sc.get_connection_status()
        assert status == sc.status() and status["users"]["healthy"]
        with pytest.raises(ValueError, match="unknown service"):
            sc.get_metrics("billing")
    finally:
        await sc.shutdown()


async def test_a_description_without_options_gets_the_gateway_defaults(backends) -> None:
    sc = ServiceClient({"users": {"port": backends[0].port, "host": "127.0.0.1"}})
    try:
        balanced = sc.client("users")
        pool = next(iter(balanced.pools().values()))
        assert (pool.min_connections, pool.max_connections) == (1, 10)
        assert balanced.health_check_interval == 30.0
        assert pool.client_options["request_timeout"] == 5.0 and pool.client_options["initial_delay"] == 1.0
    finally:
        await sc.shutdown()


async def test_configure_service_replaces_a_service_at_run_time(backends) -> None:
    a, b = backends
    sc = ServiceClient({"shop": {"host": "127.0.0.1", "port": a.port}})
    try:
        assert await sc.request("shop", "where") == "a"
        old = sc.client("shop")
        sc.configure_service("shop", {"host": "127.0.0.1", "port": b.port})
        assert await sc.request("shop", "where") == "b"
        assert sc.get_metrics("shop")["requests"] == 2  # the figures carry over
        await sc.shutdown()  # waits for the replaced service's connections too
        assert all(p.stats()["total"] == 0 for p in old.pools().values())
    finally:
        await sc.shutdown()
    with pytest.raises(NotConnected):
        sc.configure_service("late", {"port": 1})


async def test_shared_options_win_over_the_gateway_defaults(backends) -> None:
    port = backends[0].port
    sc = ServiceClient(
        {"users": {"host": "127.0.0.1", "port": port}, "big": {"host": "127.0.0.1", "port": port, "min_connections": 12}},
        request_timeout=2,
    )
    try:
        users = next(iter(sc.client("users").pools().values()))
        assert users.client_options["request_timeout"] == 2  # not the 5 s default
        big = next(iter(sc.client("big").pools().values()))
        assert (big.min_connections, big.max_connections) == (12, 12)  # the default maximum rises to the minimum
    finally:
        await sc.shutdown()


async def test_a_calls_deadline_covers_the_services_start() -> None:
    """A server that takes the TCP connection but never answers the
    handshake: the call ends at its own deadline, not the connect timeout."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    hole = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    sc = ServiceClient({"svc": {"host": "127.0.0.1", "port": port}}, connect_timeout=30)
    try:
        with pytest.raises(RequestTimeout, match="did not start within 0.3 s"):
            await asyncio.wait_for(sc.request("svc", "echo", 1, timeout=0.3), 10)
        assert sc.get_metrics("svc")["timeouts"] == 1
    finally:
        await sc.shutdown()
        for writer in held:
            writer.close()
        hole.close()
        await hole.wait_closed()


async def test_a_start_every_caller_gave_up_on_is_not_logged_as_never_retrieved() -> None:
    """Its failure (the shutdown ended it) is nobody's to read once the
    callers' deadlines passed; asyncio logged it from the garbage collector."""
    loop = asyncio.get_running_loop()
    unread: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unread.append(context))
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    hole = await asyncio.start_server(hold, "127.0.0.1", 0)
    sc = ServiceClient({"svc": {"host": "127.0.0.1", "port": hole.sockets[0].getsockname()[1]}}, connect_timeout=30)
    try:
        with pytest.raises(RequestTimeout):
            await sc.request("svc", "echo", 1, timeout=0.05)
        starting = sc._services["svc"]._starting
        assert starting is not None
        await sc.shutdown()
        await asyncio.wait_for(asyncio.wait([starting]), 5)  # ended by the shutdown: NotConnected
        del sc, starting
        gc.collect()
        assert [c["message"] for c in unread] == []
    finally:
        loop.set_exception_handler(None)
        for writer in held:
            writer.close()
        hole.close()
        await hole.wait_closed()
