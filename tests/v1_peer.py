"""A raw version-1 peer writing frames as the legacy ``ipc-framework`` 1.1.2
client writes them, for tests that must not need the real package: its
connect frame was copied from a run of the real 1.1.2
``FrameworkClient.connect()`` against a listening socket (the seven fields,
a uuid ``message_id``, a float ``timestamp``, ``reply_to`` null), its
``subscribe()`` sends ``{"connection_id": ...}`` as the payload, and it
encodes with ``json.dumps`` (ASCII escapes, ``NaN`` as a bare token)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

from .conftest import WAIT_S


def v1_frame(app_id: str, channel: str, mtype: str, payload: Any) -> bytes:
    """As 1.1.2 writes one: the seven fields, a uuid message id, a float timestamp."""
    obj = {"message_id": str(uuid.uuid4()), "app_id": app_id, "channel_id": channel, "message_type": mtype, "payload": payload, "timestamp": time.time(), "reply_to": None}
    body = json.dumps(obj).encode()
    return len(body).to_bytes(4, "big") + body


class V1Peer:
    """A version-1 peer on a non-blocking socket (``waiting`` peeks at it)."""

    def __init__(self, sock: socket.socket, app_id: str, connection_id: str) -> None:
        self.sock, self.app_id, self.connection_id = sock, app_id, connection_id

    @classmethod
    async def connect(cls, port: int, connection_id: str, app_id: str = "app", **extra: Any) -> tuple[V1Peer, dict[str, Any]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), WAIT_S)
        peer = cls(sock, app_id, connection_id)
        await peer.send("system", "request", {"action": "connect", "connection_id": connection_id, **extra})
        return peer, await peer.recv()

    async def send(self, channel: str, mtype: str, payload: Any) -> None:
        await asyncio.wait_for(asyncio.get_running_loop().sock_sendall(self.sock, v1_frame(self.app_id, channel, mtype, payload)), WAIT_S)

    async def subscribe(self, channel: str) -> None:
        await self.send(channel, "subscribe", {"connection_id": self.connection_id})

    async def _exactly(self, n: int) -> bytes:
        loop, data = asyncio.get_running_loop(), b""
        while len(data) < n:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, n - len(data)), WAIT_S)
            assert chunk, "closed by the server"
            data += chunk
        return data

    async def recv(self) -> dict[str, Any]:
        size = int.from_bytes(await self._exactly(4), "big")
        return json.loads(await self._exactly(size))

    def waiting(self) -> bytes | None:
        """What the server wrote that is unread (b"": its EOF), None for nothing."""
        try:
            return self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return None

    def close(self) -> None:
        self.sock.close()

    async def until_closed(self) -> list[dict[str, Any]]:
        """The frames the server wrote before its EOF (bounded by WAIT_S each)."""
        frames: list[dict[str, Any]] = []
        while True:
            try:
                frames.append(await self.recv())
            except AssertionError:  # _exactly: the EOF
                return frames
