"""What the legacy ``ipc-framework`` 1.1.2 compatibility tests share
(tests/test_legacy_compat.py: its client against our server;
tests/test_legacy_server.py: our client against its server): the real
package's client and server, made and stopped around each test, and the
checks of what a version-1 peer receives (docs/protocol.md §3, §9, §10).

The legacy package is blocking and threaded: its calls run in worker threads
(``asyncio.to_thread``) so the event loop serving our side keeps running.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from ipc_framework import FrameworkClient, FrameworkServer
from ipc_framework.core import Message as LegacyMessage
from ipc_framework.core import MessageType as LegacyType

from ipc_client import IPCClient
from ipc_server import IPCServer
from ipc_server.connection import ConnState, ServerConnection

APP = "compat"
WAIT_S = 5.0
HEARTBEAT_S = 0.2

# The seven fields of a version-1 frame; 1.1.2 drops the connection on any other.
LEGACY_KEYS = frozenset({"message_id", "app_id", "channel_id", "message_type", "payload", "timestamp", "reply_to"})


# -- helpers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def blocking(fn: Callable[..., Any], *args: Any, timeout: float = 2 * WAIT_S, **kwargs: Any) -> Any:
    """Run a blocking legacy call in a worker thread, bounded."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout)


def frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj).encode("utf-8")
    return len(body).to_bytes(4, "big") + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]]:
    size = int.from_bytes(await reader.readexactly(4), "big")
    raw = (await reader.readexactly(size)).decode("utf-8")
    return raw, json.loads(raw)


def is_ping(obj: dict[str, Any]) -> bool:
    payload = obj.get("payload")
    return (
        obj.get("message_type") == "request"
        and obj.get("channel_id") == "system"
        and isinstance(payload, dict)
        and payload.get("action") == "ping"
    )


class RecordingLegacyClient(FrameworkClient):
    """The real 1.1.2 client, unchanged except that it keeps a copy of every
    frame it receives (parsing and dispatch are still the package's own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[dict[str, Any]] = []
        self._frames_lock = threading.Lock()

    def _receive_message(self) -> str | None:
        data = super()._receive_message()
        if data is not None:
            with self._frames_lock:
                self.frames.append(json.loads(data))
        return data

    def received(self) -> list[dict[str, Any]]:
        with self._frames_lock:
            return list(self.frames)


class Inbox:
    """Collects messages delivered on a legacy client's receive thread."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def _wait(self, count: int, timeout: float) -> list[Any]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._items) >= count, timeout)
            return list(self._items)

    async def get(self, count: int = 1, timeout: float = WAIT_S) -> list[Any]:
        items = await blocking(self._wait, count, timeout, timeout=timeout + 1)
        assert len(items) >= count, f"expected {count} message(s) within {timeout} s, got {len(items)}"
        return items


class Clients:
    """Makes clients and stops every one of them at teardown."""

    def __init__(self) -> None:
        self.legacy_clients: list[RecordingLegacyClient] = []
        self.v2_clients: list[IPCClient] = []

    async def legacy(self, port: int, app_id: str = APP) -> RecordingLegacyClient:
        client = RecordingLegacyClient(app_id, host="127.0.0.1", port=port, connection_timeout=WAIT_S)
        self.legacy_clients.append(client)
        assert await blocking(client.connect) is True
        return client

    async def v2(self, port: int, app_id: str = APP) -> IPCClient:
        client = IPCClient(app_id, "127.0.0.1", port, reconnect=False, connect_timeout=WAIT_S, request_timeout=WAIT_S)
        self.v2_clients.append(client)
        await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    async def close(self) -> None:
        while self.v2_clients:
            await asyncio.wait_for(self.v2_clients.pop().disconnect(), WAIT_S)
        while self.legacy_clients:
            legacy = self.legacy_clients.pop()
            if legacy.socket is not None:
                # Wakes the receive thread at once (closing alone leaves its recv() blocked).
                with contextlib.suppress(OSError):
                    legacy.socket.shutdown(socket.SHUT_RDWR)
            await blocking(legacy.disconnect)
            if legacy.socket is not None:  # disconnect() is a no-op once the server hung up
                legacy.socket.close()


@pytest.fixture
async def server(request: pytest.FixtureRequest):
    """Our server on a free port; indirect parametrization passes config overrides."""
    overrides = getattr(request, "param", {})
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=1.0, no_responders_grace_s=0, **overrides) as srv:
        yield srv


@pytest.fixture
async def clients():
    made = Clients()
    yield made
    await made.close()


def legacy_echo(srv: FrameworkServer, msg: LegacyMessage) -> None:
    """A 1.1.x request handler, written the way ipc_framework/examples/basic_server.py does."""
    conn = srv.connection_manager.get_connection(msg.payload["connection_id"])
    srv.send_to_connection(conn, msg.create_response({"echo": msg.payload.get("value"), "server": "1.1.2"}))


@pytest.fixture
async def legacy_server():
    """The real 1.1.2 server, with app ``APP`` and a request handler on channel ``x``."""
    srv = FrameworkServer(host="127.0.0.1", port=free_port())
    await blocking(srv.start)
    app = srv.create_application(APP)
    channel = app.create_channel("x")
    channel.set_handler(LegacyType.REQUEST, lambda msg: legacy_echo(srv, msg))
    try:
        yield srv
    finally:
        await blocking(srv.stop)


def server_conn(server: IPCServer, connection_id: str) -> ServerConnection:
    found = [c for c in server.connections if c.connection_id == connection_id]
    assert len(found) == 1, f"no open server connection {connection_id!r}: {server.connections}"
    return found[0]


def assert_legacy_frames(frames: list[dict[str, Any]]) -> None:
    """Every frame a 1.1.2 peer got holds exactly the seven version-1 fields."""
    assert frames
    for obj in frames:
        assert set(obj) == LEGACY_KEYS, obj


def legacy_error(response: LegacyMessage | None, code: str) -> dict[str, Any]:
    """The §10 error shape: a response whose payload is ``{"error": {code, message}}``."""
    assert response is not None, "the legacy client got no response"
    assert response.message_type is LegacyType.RESPONSE
    assert isinstance(response.payload, dict) and set(response.payload) == {"error"}, response.payload
    error = response.payload["error"]
    assert {"code", "message"} <= set(error), error
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


async def assert_legacy_alive(server: IPCServer, legacy: RecordingLegacyClient) -> None:
    assert legacy.connected
    assert await blocking(legacy.ping) is True
    assert server_conn(server, legacy.connection_id).state is ConnState.OPEN
    assert_legacy_frames(legacy.received())

