"""How our server refuses a real ``ipc-framework`` 1.1.2 client's handshake
(docs/protocol.md §10, §12; docs/legacy.md): once its connect has been read,
every refusal is a version-1 frame (the seven fields, the error in the
payload), which the 1.1.2 client parses; a socket refused before its
connect was read (``max_connections`` at accept) gets the version-2 error
frame, since its version is not known yet.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ipc_server import IPCServer

from .legacy_support import (  # noqa: F401 - server and clients are fixtures
    APP, LEGACY_KEYS, WAIT_S, Clients, RecordingLegacyClient, blocking, clients, server,
)


class HeldConnect(RecordingLegacyClient):
    """The real 1.1.2 client, whose connect frame waits for ``release`` (the
    TCP connection is made at once): its connect then arrives at a server
    that filled up meanwhile."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_open = threading.Event()
        self.release = threading.Event()
        self.connect_id = ""

    def _send_message(self, message: Any) -> str:
        if not self.release.is_set() and isinstance(message.payload, dict) and message.payload.get("action") == "connect":
            self.connect_id = message.message_id
            self.socket_open.set()
            self.release.wait(WAIT_S)
        return super()._send_message(message)  # type: ignore[no-any-return]


def refused(client: RecordingLegacyClient) -> dict[str, Any]:
    """The one frame a refused 1.1.2 client got."""
    [answer] = client.received()
    return answer


async def connect_refused(client: RecordingLegacyClient) -> None:
    try:
        assert await blocking(client.connect) is False
        assert not client.connected
    finally:
        if client.socket is not None:
            client.socket.close()


@pytest.mark.parametrize("server", [{"token": "s3cret"}], indirect=True)
async def test_a_token_refusal_is_a_version_1_frame(server: IPCServer) -> None:
    client = RecordingLegacyClient(APP, host="127.0.0.1", port=server.port, connection_timeout=WAIT_S)
    await connect_refused(client)
    answer = refused(client)
    assert set(answer) == LEGACY_KEYS, answer  # 1.1.2 fails to parse a frame with "error" and never learns why
    assert answer["message_type"] == "response" and answer["channel_id"] == "system"
    assert answer["payload"] == {"error": {"code": "unauthorized", "message": "invalid or missing token"}}
    assert server.stats.snapshot()["errors"].get("unauthorized") == 1


@pytest.mark.parametrize("server", [{"max_connections": 1}], indirect=True)
async def test_a_connect_that_arrives_once_the_server_is_full_is_refused_in_version_1(server: IPCServer, clients: Clients) -> None:
    late = HeldConnect(APP, host="127.0.0.1", port=server.port, connection_timeout=WAIT_S)
    connecting = asyncio.ensure_future(connect_refused(late))
    try:
        assert await blocking(late.socket_open.wait, WAIT_S)  # accepted while there was room
        await clients.v2(server.port)  # takes the last place
    finally:
        late.release.set()
    await asyncio.wait_for(connecting, 2 * WAIT_S)
    answer = refused(late)
    assert set(answer) == LEGACY_KEYS, answer
    assert answer["payload"]["error"]["code"] == "too_many_connections"
    assert answer["reply_to"] == late.connect_id


@pytest.mark.parametrize("server", [{"max_connections": 1}], indirect=True)
async def test_a_socket_refused_at_accept_gets_the_version_2_frame(server: IPCServer, clients: Clients) -> None:
    """docs/legacy.md: before the connect is read the version is unknown, so
    the refusal is the version-2 error frame (reply_to null); 1.1.2 cannot
    parse it and its connect() returns False."""
    await clients.legacy(server.port)  # takes the only place
    client = RecordingLegacyClient(APP, host="127.0.0.1", port=server.port, connection_timeout=WAIT_S)
    await connect_refused(client)
    answer = refused(client)
    assert set(answer) == LEGACY_KEYS | {"error"}
    assert (answer["payload"], answer["reply_to"], answer["error"]["code"]) == (None, None, "too_many_connections")
    assert server.stats.snapshot()["errors"].get("too_many_connections") == 1
