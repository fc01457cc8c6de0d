"""A fake server for peers that misbehave on purpose (the ``fake_server``
fixture, conftest.py): a bare asyncio TCP server that completes the
handshake and then does only what the test tells it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from interop_settings import WAIT_S, changed_within


class FakeServer:
    """A bare asyncio TCP server that completes the handshake and then does
    only what the test tells it: write raw bytes, stay silent, or answer pings.
    It uses the Python core (ipc_protocol) for framing."""

    def __init__(self, *, heartbeat_interval_ms: int = 15000, answer_pings: bool = True) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.answer_pings = answer_pings
        self.frames: list[Any] = []
        self.writers: list[asyncio.StreamWriter] = []
        self._changed = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> FakeServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from ipc_protocol import FrameDecoder, MessageType, decode_message
        from ipc_protocol.messages import response_to

        self.writers.append(writer)
        decoder = FrameDecoder(None)
        try:
            while data := await reader.read(65536):
                for body in decoder.feed(data):
                    msg = decode_message(body)
                    self.frames.append(msg)
                    self._changed.set()
                    action = msg.payload.get("action") if isinstance(msg.payload, dict) else None
                    if msg.message_type is MessageType.REQUEST and msg.channel_id == "system":
                        if action == "connect":
                            self.send(writer, response_to(msg, {
                                "status": "connected", "connection_id": msg.payload["connection_id"], "protocol": 2,
                                "server": "fake/0", "heartbeat_interval_ms": self.heartbeat_interval_ms,
                                "max_frame_size": 16 * 1024 * 1024,
                            }))
                        elif action == "ping" and self.answer_pings:
                            self.send(writer, response_to(msg, {"status": "pong"}))
                    elif msg.message_type in (MessageType.SUBSCRIBE, MessageType.UNSUBSCRIBE):
                        status = "subscribed" if msg.message_type is MessageType.SUBSCRIBE else "unsubscribed"
                        self.send(writer, response_to(msg, {"status": status}))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def send(writer: asyncio.StreamWriter, msg: Any) -> None:
        from ipc_protocol import encode_frame, encode_message

        writer.write(encode_frame(encode_message(msg)))

    async def wait_frame(self, pred: Callable[[Any], bool], *, timeout: float = WAIT_S) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for msg in self.frames:
                if pred(msg):
                    return msg
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"the fake server got no matching frame within {timeout} s")
            await changed_within(self._changed, remaining)

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
