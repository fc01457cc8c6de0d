"""A client's first connect(): fast failure by default, and with
``wait_on_first_connect`` the diagram's Connecting -> Reconnecting, retried
with the reconnect policy until a server appears (real servers, real ports)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from ipc_client import ConnectionState, IPCClient
from ipc_client.listeners import Listeners
from ipc_client.reconnect import connect_failure
from ipc_protocol import NotConnected, Unauthorized
from ipc_server import IPCServer

from .conftest import WAIT_S


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recording(client: IPCClient, *events: str) -> dict[str, list]:
    seen: dict[str, list] = {e: [] for e in events}
    for e in events:
        client.on(e, lambda *args, e=e: seen[e].append(args))
    return seen


async def test_a_silent_server_fails_connect_with_not_connected() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never completes the handshake
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        client = IPCClient("app", "127.0.0.1", port, connect_timeout=0.3)
        with pytest.raises(NotConnected, match="handshake") as err:
            await client.connect()
        assert err.value.__cause__ is not None and client.state is ConnectionState.DISCONNECTED
    finally:
        silent.close()


async def test_a_tcp_connect_that_times_out_says_so() -> None:
    """A listener whose backlog is full drops the SYN: the TCP connect
    itself outlasts connect_timeout, whose error names it (not an empty reason)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fill = [socket.socket() for _ in range(3)]
    try:
        for sock in fill:
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        client = IPCClient("app", "127.0.0.1", port, connect_timeout=0.3)
        with pytest.raises(NotConnected) as err:
            await client.connect()
        assert str(err.value) == f"cannot connect to 127.0.0.1:{port}: timed out after 0.3 s (TCP connect)"
        assert isinstance(err.value.__cause__, TimeoutError)
        assert str(connect_failure(TimeoutError(), "h:1")) == "cannot connect to h:1: TimeoutError"  # any error without a text
    finally:
        for sock in (*fill, listener):
            sock.close()


async def test_wait_on_first_connect_connects_once_a_server_starts() -> None:
    port = _unused_port()
    client = IPCClient("app", "127.0.0.1", port, wait_on_first_connect=True, initial_delay=0.05, max_delay=0.2)
    seen = _recording(client, "reconnecting", "reconnected", "connected")
    retrying = asyncio.Event()
    client.on("reconnecting", lambda info: retrying.set())
    connecting = asyncio.ensure_future(client.connect())
    await asyncio.wait_for(retrying.wait(), WAIT_S)
    assert client.state is ConnectionState.RECONNECTING and not connecting.done()
    queued = asyncio.ensure_future(client.request("math.double", 21, timeout=WAIT_S))  # waits in the offline queue
    async with IPCServer("127.0.0.1", port, heartbeat_interval_s=None) as server:

        @server.handler("math.double")
        async def double(msg):
            return msg.payload * 2

        assert await asyncio.wait_for(connecting, WAIT_S) is True
        assert client.state is ConnectionState.CONNECTED
        assert await queued == 42
        assert seen["reconnecting"][0][0]["attempt"] == 1
        assert len(seen["connected"]) == 1 and seen["reconnected"] == []  # a first connection, not a reconnection
        assert client.get_connection_info()["reconnects"] == 0
        await client.disconnect()


async def test_wait_on_first_connect_gives_up_after_max_retries() -> None:
    client = IPCClient("app", "127.0.0.1", _unused_port(), wait_on_first_connect=True, max_retries=2, initial_delay=0.01, max_delay=0.02)
    seen = _recording(client, "reconnecting", "reconnect_failed")
    with pytest.raises(NotConnected, match="after retrying"):
        await asyncio.wait_for(client.connect(), WAIT_S)
    assert [args[0]["attempt"] for args in seen["reconnecting"]] == [1, 2]
    assert seen["reconnect_failed"] == [(2,)]
    assert client.state is ConnectionState.DISCONNECTED


async def test_disconnect_ends_the_wait_on_first_connect() -> None:
    client = IPCClient("app", "127.0.0.1", _unused_port(), wait_on_first_connect=True, initial_delay=0.05, max_delay=0.1)
    retrying = asyncio.Event()
    client.on("reconnecting", lambda info: retrying.set())
    connecting = asyncio.ensure_future(client.connect())
    await asyncio.wait_for(retrying.wait(), WAIT_S)
    await client.disconnect()
    with pytest.raises(NotConnected):
        await asyncio.wait_for(connecting, WAIT_S)
    assert client.state is ConnectionState.DISCONNECTED


async def test_a_refused_token_is_not_retried() -> None:
    async with IPCServer("127.0.0.1", 0, token="right") as server:
        client = IPCClient("app", "127.0.0.1", server.port, token="wrong", wait_on_first_connect=True, initial_delay=0.01)
        seen = _recording(client, "reconnecting")
        with pytest.raises(Unauthorized):
            await asyncio.wait_for(client.connect(), WAIT_S)
        assert seen["reconnecting"] == [] and client.state is ConnectionState.DISCONNECTED


async def test_without_the_option_the_first_failure_is_immediate() -> None:
    client = IPCClient("app", "127.0.0.1", _unused_port(), initial_delay=0.01)
    seen = _recording(client, "reconnecting")
    with pytest.raises(NotConnected):
        await asyncio.wait_for(client.connect(), WAIT_S)
    assert seen["reconnecting"] == []


async def test_a_throwing_connected_listener_is_reported_not_raised(server) -> None:
    client = IPCClient("app", "127.0.0.1", server.port)
    errors: list[BaseException] = []
    client.on_connected(lambda info: 1 / 0)
    client.on_error(errors.append)
    try:
        assert await client.connect() is True
        assert client.state is ConnectionState.CONNECTED and await client.health_check() is True
        assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
    finally:
        await client.disconnect()


async def test_without_an_error_listener_errors_are_logged(server, caplog) -> None:
    client = IPCClient("app", "127.0.0.1", server.port)
    client.on_connected(lambda info: 1 / 0)
    try:
        with caplog.at_level("WARNING", logger="ipc_client"):
            assert await client.connect() is True
        assert any("connected callback failed" in r.getMessage() for r in caplog.records)
    finally:
        await client.disconnect()


def test_an_error_nobody_listens_for_is_logged(caplog) -> None:
    listeners = Listeners("client", ("connected", "error"))
    with caplog.at_level("WARNING", logger="ipc_client"):
        listeners.emit("error", RuntimeError("stray error frame"))
    assert [r.getMessage() for r in caplog.records] == ["client error with no error listener: stray error frame"]


async def test_an_async_listener_that_fails_is_reported_too(server) -> None:
    client = IPCClient("app", "127.0.0.1", server.port)
    errors: asyncio.Queue = asyncio.Queue()

    async def connected(info) -> None:
        raise RuntimeError("async listener failed")

    client.on_connected(connected)
    client.on_error(errors.put_nowait)
    try:
        assert await client.connect() is True
        err = await asyncio.wait_for(errors.get(), WAIT_S)
        assert isinstance(err, RuntimeError) and str(err) == "async listener failed"
    finally:
        await client.disconnect()


async def test_wait_on_first_connect_retries_a_refusal_that_is_not_the_token() -> None:
    """Any failure but a refused token is retried, as by the reconnect loop
    (and by Node's waitOnFirstConnect): here a server busy at first."""
    replies = [{"status": "busy"}, {"status": "connected", "connection_id": "c1", "protocol": 2, "heartbeat_interval_ms": 0}]

    async def handshake_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = int.from_bytes(await reader.readexactly(4), "big")
        hello = json.loads(await reader.readexactly(n))
        reply = {"message_id": "r", "app_id": "app", "channel_id": "system", "message_type": "response",
                 "payload": replies.pop(0), "timestamp": 0, "reply_to": hello["message_id"]}
        body = json.dumps(reply).encode()
        writer.write(len(body).to_bytes(4, "big") + body)
        await reader.read()  # hold the connection until the client closes it
        writer.close()

    fake = await asyncio.start_server(handshake_once, "127.0.0.1", 0)
    port = fake.sockets[0].getsockname()[1]
    client = IPCClient("app", "127.0.0.1", port, wait_on_first_connect=True, initial_delay=0.01, max_delay=0.02)
    seen = _recording(client, "reconnecting")
    try:
        assert await asyncio.wait_for(client.connect(), WAIT_S) is True
        assert [args[0]["attempt"] for args in seen["reconnecting"]] == [1] and replies == []
    finally:
        await client.disconnect()
        fake.close()


async def test_connect_while_disconnecting_connects_once_the_close_is_done(server) -> None:
    client = IPCClient("app", "127.0.0.1", server.port)
    await client.connect()
    closing = asyncio.ensure_future(client.disconnect())
    await asyncio.sleep(0)  # disconnect() has begun: the state is disconnecting
    assert client.state is ConnectionState.DISCONNECTING
    try:
        assert await asyncio.wait_for(client.connect(), WAIT_S) is True
        await closing
        assert client.state is ConnectionState.CONNECTED and await client.health_check() is True
    finally:
        await client.disconnect()
