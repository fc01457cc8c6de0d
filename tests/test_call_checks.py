"""A call's own arguments checked before anything is sent, as the Node
client checks them: ``headers`` must map strings to strings (a
``MessageError``, never a frame the server refuses by closing the
connection and every call in flight on it); ``timeout`` must be a finite
number of seconds or None (a ``TypeError`` or ``ValueError`` naming it,
never one from inside the client)."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient, MessageError, ServiceClient
from ipc_protocol import Forbidden, RequestTimeout
from ipc_client.timeouts import check_timeout
from ipc_protocol.headers import check_headers

from .conftest import WAIT_S

BAD_HEADERS: list[tuple[Any, str]] = [
    ({"retries": 3}, "invalid envelope: headers.retries: must be a string"),
    ({"a": "1", "gone": None}, "invalid envelope: headers.gone: must be a string"),
    ({1: "x"}, "invalid envelope: headers: a key must be a string, not int"),
    (["a", "b"], "invalid envelope: headers: must be an object"),
    ("a=b", "invalid envelope: headers: must be an object"),
]


@pytest.mark.parametrize(("headers", "text"), BAD_HEADERS)
def test_check_headers(headers: Any, text: str) -> None:
    with pytest.raises(MessageError, match=f"^{text}$"):
        check_headers(headers)
    assert check_headers({"a": "1", "traceparent": "x"}) == {"a": "1", "traceparent": "x"}


def _calls(headers: Any) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    async def stream(c: Any) -> None:
        async with c.stream("svc", None, timeout=WAIT_S, headers=headers) as items:
            async for _ in items:
                pass

    return {
        "request": lambda c: c.request("svc", None, timeout=WAIT_S, headers=headers),
        "send_request": lambda c: c.send_request("svc", None, timeout=WAIT_S, headers=headers),
        "keyed": lambda c: c.send_request("svc", None, timeout=WAIT_S, headers=headers, idempotency_key="k"),
        "publish": lambda c: c.publish("topic", None, headers=headers),
        "publish_ack": lambda c: c.publish("topic", None, headers=headers, ack=True),
        "notify": lambda c: c.notify("svc", None, headers=headers),
        "stream": stream,
    }


@pytest.mark.parametrize(("headers", "text"), BAD_HEADERS)
async def test_bad_headers_are_refused_before_sending_and_the_connection_stays(server, make_client, headers: Any, text: str) -> None:
    release = asyncio.Event()
    ran: list[str] = []

    async def svc(msg: Any) -> str:
        ran.append(msg.channel_id)
        await asyncio.wait_for(release.wait(), WAIT_S)
        return "done"

    server.add_handler("svc", svc)
    server.add_handler("slow", svc)
    client = await make_client()
    slow = asyncio.ensure_future(client.request("slow", timeout=WAIT_S))
    try:
        for name, call in _calls(headers).items():
            with pytest.raises(MessageError, match=f"^{text}$"):
                await call(client)
            assert client.connected, name
    finally:
        release.set()
    assert await slow == "done" and ran == ["slow"]


async def test_bad_headers_are_refused_while_reconnecting(unused_port: int) -> None:
    """A call that would wait in the offline queue is refused at once too."""
    client = IPCClient("app", "127.0.0.1", unused_port, wait_on_first_connect=True, initial_delay=WAIT_S, connect_timeout=WAIT_S)
    reconnecting = asyncio.Event()
    client.on("reconnecting", lambda *_: reconnecting.set())
    connecting = asyncio.ensure_future(client.connect())
    try:
        await asyncio.wait_for(reconnecting.wait(), WAIT_S)
        for name, call in _calls({"retries": 3}).items():
            if name != "stream":  # a stream is never queued
                with pytest.raises(MessageError):
                    await call(client)
        assert client.queue_stats()["size"] == 0
    finally:
        await client.disconnect()
        await asyncio.gather(connecting, return_exceptions=True)


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_pool_and_load_balanced_calls_refuse_bad_headers(server) -> None:
    server.add_handler("svc", lambda m: "ok")
    async with ConnectionPool("app", "127.0.0.1", server.port, min_connections=1) as pool:
        for call in (pool.request, pool.send_request, pool.notify, pool.publish):
            with pytest.raises(MessageError, match="headers.n: must be a string"):
                await call("svc", None, timeout=WAIT_S, headers={"n": 1})
        assert await pool.request("svc", timeout=WAIT_S) == "ok"
    async with LoadBalancedClient("app", [("127.0.0.1", server.port)], health_check_interval=None) as lb:
        for call in (lb.request, lb.send_request, lb.notify, lb.publish):
            with pytest.raises(MessageError, match="headers.n: must be a string"):
                await call("svc", None, timeout=WAIT_S, headers={"n": 1})
        assert await lb.request("svc", timeout=WAIT_S) == "ok"


BAD_TIMEOUTS: list[tuple[Any, type[Exception], str]] = [
    (math.nan, ValueError, "timeout must be a finite number of seconds (None: the default), got nan"),
    (math.inf, ValueError, "timeout must be a finite number of seconds (None: the default), got inf"),
    (-math.inf, ValueError, "timeout must be a finite number of seconds (None: the default), got -inf"),
    (10**400, ValueError, "timeout must be a finite number of seconds"),
    ("1", TypeError, "timeout must be a number of seconds (None: the default), got str '1'"),
    (True, TypeError, "timeout must be a number of seconds (None: the default), got bool True"),
]


@pytest.mark.parametrize(("timeout", "error", "text"), BAD_TIMEOUTS)
def test_check_timeout_refuses(timeout: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as info:
        check_timeout(timeout, 30.0)
    assert str(info.value).startswith(text) and type(info.value) is error


def test_check_timeout_takes_numbers_and_none_for_the_default() -> None:
    assert check_timeout(None, 30.0) == 30.0 and check_timeout(None) is None
    assert check_timeout(2, 30.0) == 2.0 and check_timeout(0.5) == 0.5 and check_timeout(Fraction(1, 4)) == 0.25
    assert check_timeout(0, 30.0) == 0.0 and check_timeout(-1) == -1.0  # a deadline already passed: the call's business
    with pytest.raises(TypeError, match="^idle_timeout must be"):
        check_timeout("1", None, "idle_timeout")


def _timed_calls(timeout: Any) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    async def stream(c: Any, **kwargs: Any) -> None:
        async with c.stream("svc", None, **kwargs) as items:
            async for _ in items:
                pass

    return {
        "request": lambda c: c.request("svc", None, timeout=timeout),
        "send_request": lambda c: c.send_request("svc", None, timeout=timeout),
        "coalesced": lambda c: c.send_request("svc", None, timeout=timeout, coalesce=True),
        "cached": lambda c: c.request("svc", None, timeout=timeout, cache_ttl=5),
        "keyed": lambda c: c.send_request("svc", None, timeout=timeout, idempotency_key="k"),
        "publish": lambda c: c.publish("topic", None, timeout=timeout),
        "publish_ack": lambda c: c.publish("topic", None, timeout=timeout, ack=True),
        "notify": lambda c: c.notify("svc", None, timeout=timeout),
        "stream": lambda c: stream(c, timeout=timeout),
        "stream_idle": lambda c: stream(c, idle_timeout=timeout),
        "system": lambda c: c.system("stats", timeout=timeout),
        "health": lambda c: c.health(timeout),  # a failed ping never raises; a bad timeout does
        "health_check": lambda c: c.health_check(timeout),
    }


@pytest.mark.parametrize(("timeout", "error", "text"), BAD_TIMEOUTS)
async def test_every_call_refuses_a_bad_timeout_before_sending(server, make_client, timeout: Any, error: type[Exception], text: str) -> None:
    ran: list[Any] = []
    server.add_handler("svc", lambda m: ran.append(m))
    client = await make_client()
    for name, call in _timed_calls(timeout).items():
        with pytest.raises(error) as info:
            await call(client)
        wanted = text.replace("timeout", "idle_timeout", 1) if name == "stream_idle" else text
        assert str(info.value).startswith(wanted), name
    with pytest.raises(error):
        await client.drain(timeout=timeout)
    assert client.connected and ran == [] and len(client._calls) == 0
    assert await client.request("svc", None, timeout=None) is None and len(ran) == 1  # None: the default


async def test_pool_load_balanced_and_service_calls_refuse_a_bad_timeout(server) -> None:
    server.add_handler("svc", lambda m: "ok")
    async with ConnectionPool("app", "127.0.0.1", server.port, min_connections=1) as pool:
        for call in (pool.request, pool.send_request, pool.notify, pool.publish):
            with pytest.raises(ValueError, match="^timeout must be a finite number"):
                await call("svc", None, timeout=math.nan)
        with pytest.raises(TypeError, match="^timeout must be a number"):
            await pool.acquire("1")  # type: ignore[arg-type]
        assert await pool.request("svc", timeout=WAIT_S) == "ok"
    async with LoadBalancedClient("app", [("127.0.0.1", server.port)], health_check_interval=None) as lb:
        for call in (lb.request, lb.send_request, lb.notify, lb.publish):
            with pytest.raises(ValueError, match="^timeout must be a finite number"):
                await call("svc", None, timeout=math.inf)
        assert await lb.request("svc", timeout=WAIT_S) == "ok"
    gateway = ServiceClient({"s": {"host": "127.0.0.1", "port": server.port}}, app_id="app")
    try:
        with pytest.raises(TypeError, match="^timeout must be a number"):
            await gateway.request("s", "svc", timeout="1")  # type: ignore[arg-type]
        assert await gateway.request("s", "svc", timeout=WAIT_S) == "ok"
    finally:
        await gateway.shutdown()


async def test_a_notification_on_a_reserved_channel_is_refused_at_the_call(server, make_client) -> None:
    """The server drops it answering nothing (a notification's refusal is logged, §6.1): refused here, as a publish."""
    client = await make_client()
    for channel in ("system.x", "$sys.x"):
        with pytest.raises(Forbidden):
            await client.notify(channel, 1)
    await client.notify("system", {"action": "get_time"})  # routed to whoever serves system


@pytest.mark.parametrize("timeout", [0, -1, -0.001])
async def test_a_timeout_already_passed_is_not_sent_by_any_call(server, make_client, timeout: float) -> None:
    """Zero or less: the deadline has passed, so nothing goes out and the call
    raises ``RequestTimeout``, one-way messages as requests (and as the pool)."""
    ran: list[Any] = []
    got: asyncio.Queue[Any] = asyncio.Queue()
    server.add_handler("svc", lambda m: ran.append(m.payload))
    client = await make_client()
    seen = await make_client()
    await seen.subscribe("topic", lambda m: got.put_nowait(m.payload))
    calls = {name: call for name, call in _timed_calls(timeout).items() if name in ("request", "send_request", "keyed", "publish", "publish_ack", "notify")}
    for name, call in calls.items():
        with pytest.raises(RequestTimeout, match="timed out before it was sent"):
            await call(client)
    await client.publish("topic", "after", timeout=WAIT_S)  # in order after anything sent before it
    await client.request("svc", "after", timeout=WAIT_S)
    assert await asyncio.wait_for(got.get(), WAIT_S) == "after" and ran == ["after"]


async def test_argument_errors_node_throws_at_the_call_raise_on_await_with_the_same_errors(server, make_client) -> None:
    """Node's subscribe()/publish()/notify()/unsubscribe() throw argument
    errors synchronously (js-client test/argument_errors.test.js); these
    methods are coroutines, so they raise when awaited (an un-awaited one
    never runs). An invalid name is a plain ``ValueError`` here, where Node
    throws ``MessageError`` (bad_message) (docs/legacy.md). Nothing is sent
    and the client stays up."""
    client = await make_client()
    handler: Any = lambda m: None  # noqa: E731
    for pattern in ("a..b", "ord*", " x", "x.", "a" * 600, "x.\udc00"):
        with pytest.raises(ValueError):
            await client.subscribe(pattern, handler)
        with pytest.raises(ValueError):
            client.serve(pattern, handler)  # at the call, keeping nothing (AlreadyServing next time, before)
    for channel in ("a..b", "orders.*", "ord*", "a.b>", " x", "x.", "a" * 600, "x.\udc00"):
        with pytest.raises(ValueError):
            await client.publish(channel, 1)
        with pytest.raises(ValueError):
            await client.notify(channel, 1)
        with pytest.raises(ValueError):
            await client.request(channel, 1)
    for payload in (math.nan, {"v": math.inf}, "a\ud800b"):
        with pytest.raises(MessageError):
            await client.publish("feed", payload)
    with pytest.raises(Forbidden):
        await client.publish("system.x", 1)
    with pytest.raises(TypeError):
        await client.subscribe("feed", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^channel must be a string"):
        await client.unsubscribe(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^handler must be callable"):
        await client.unsubscribe("feed", "not callable")  # type: ignore[arg-type]
    for name in ("a..b", "ord*", "never.subscribed"):
        await client.unsubscribe(name)  # nothing is held under it: a no-op, as in Node
    assert client.get_connection_info()["subscriptions"] == [] and client.get_connection_info()["services"] == []
    assert await client.health_check() is True


async def test_the_pool_and_the_load_balancer_refuse_unsubscribe_arguments_as_the_client_does(server) -> None:
    """Wrong types raise TypeError from every client's unsubscribe(), started
    or not (the pool's and the load balancer's passed them over when nothing
    was connected, and the load balancer's always did); a name nothing is
    subscribed under is a no-op, as on IPCClient."""

    async def refuses(owner: Any) -> None:
        with pytest.raises(TypeError, match="^channel must be a string, not int$"):
            await owner.unsubscribe(42)
        with pytest.raises(TypeError, match="^handler must be callable$"):
            await owner.unsubscribe("feed", "not callable")
        for name in ("a..b", "never.subscribed"):
            await owner.unsubscribe(name)
        await owner.unsubscribe("feed", lambda m: None)

    pool = ConnectionPool("app", "127.0.0.1", server.port, min_connections=1)
    lb = LoadBalancedClient("app", [("127.0.0.1", server.port)], health_check_interval=None)
    await refuses(pool)
    await refuses(lb)
    async with pool, lb:
        await refuses(pool)
        await refuses(lb)
        assert await pool.subscribe("feed", lambda m: None) is True
        await refuses(pool)
