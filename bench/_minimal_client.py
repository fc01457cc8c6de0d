"""The reference Python client: a minimal hand-written asyncio client of the
bridge's protocol, the yardstick for "the client is not the bottleneck".

An ``asyncio.Protocol`` that sends the version-2 connect, then requests,
each written at once as one frame (prefix + body in one ``write``, with
TCP_NODELAY); responses are matched to futures by ``reply_to``; publishes
go to one callback. No
envelope model, validation, timeouts, reconnects or heartbeats.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from typing import Any

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


class MinimalClient(asyncio.Protocol):
    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.closed: asyncio.Future[None] | None = None
        self.on_publish: Any = None  # called with each delivered publish's payload

    @classmethod
    async def open(cls, host: str, port: int, app_id: str) -> MinimalClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(app_id), host, port)
        client.closed = loop.create_future()
        reply = await client.request("system", {"action": "connect", "connection_id": "minimal", "protocol": 2, "client": "minimal/1"})
        if not isinstance(reply, dict) or reply.get("status") != "connected":
            raise RuntimeError(f"handshake refused: {reply!r}")
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError("connection lost")
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(error)
        self.waiting.clear()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 4:
            size = int.from_bytes(buf[pos : pos + 4], "big")
            stop = pos + 4 + size
            if stop > end:
                break
            msg = _loads(bytes(buf[pos + 4 : stop]))
            pos = stop
            fut = self.waiting.pop(msg.get("reply_to"), None)
            if fut is not None and not fut.done():
                if msg.get("error"):
                    fut.set_exception(RuntimeError(str(msg["error"])))
                else:
                    fut.set_result(msg.get("payload"))
            elif msg.get("message_type") == "publish" and self.on_publish is not None:
                self.on_publish(msg.get("payload"))
            elif msg.get("message_type") == "request" and msg.get("channel_id") == "system":
                self._send(msg["channel_id"], "response", {"status": "pong"}, reply_to=msg["message_id"])
        if pos:
            del buf[:pos]

    def _send(self, channel: str, kind: str, payload: Any, **extra: Any) -> str:
        mid = f"m{next(self.ids)}"
        body = _dumps(
            {
                "message_id": mid,
                "app_id": self.app_id,
                "channel_id": channel,
                "message_type": kind,
                "payload": payload,
                "timestamp": time.time(),
                **extra,
            }
        ).encode()
        assert self.transport is not None
        self.transport.write(len(body).to_bytes(4, "big") + body)
        return mid

    def request(self, channel: str, payload: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self._send(channel, "request", payload)] = fut
        return fut

    def subscribe(self, channel: str, on_publish: Any) -> asyncio.Future[Any]:
        """Subscribe ``channel``; resolves on the server's ack."""
        self.on_publish = on_publish
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self._send(channel, "subscribe", None)] = fut
        return fut

    def publish(self, channel: str, payload: Any) -> None:
        """Fire and forget, one frame per write."""
        self._send(channel, "publish", payload)

    def publish_acked(self, channel: str, payload: Any) -> asyncio.Future[Any]:
        """A publish the server acknowledges once it has queued every delivery."""
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self._send(channel, "publish", payload, ack=True)] = fut
        return fut

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            if self.closed is not None:
                await self.closed
