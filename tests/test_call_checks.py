"""A call's own arguments checked before anything is sent, as the Node
client checks them: ``headers`` must map strings to strings (a
``MessageError``, never a frame the server refuses by closing the
connection and every call in flight on it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient, MessageError
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
