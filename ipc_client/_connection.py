"""The client's socket adapter: bytes in -> core -> messages to the client.

It owns the transport and the decoder and nothing else; the client decides
what messages mean. Requests are written at once: coalescing them made client
and server run in lock step in our measurements. Answers to served requests
are coalesced (``write_soon``): a responder answers a batch of requests in
one loop iteration, and one ``send`` for the batch saves a system call each.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

from ipc_protocol import FrameDecoder, Heartbeat, Message, ProtocolError, decode_message

__all__ = ["ClientConnection"]

# Coalesced frames go out at this count even before the iteration ends, so
# the server starts on the first answers of a large batch (as the server's
# own _FLUSH_EVERY_FRAMES).
_SOON_MAX_FRAMES = 16


class ClientConnection(asyncio.Protocol):
    def __init__(
        self,
        on_message: Callable[[ClientConnection, Message], None],
        on_lost: Callable[[ClientConnection, BaseException | None], None],
        max_frame_size: int | None,
    ) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self.decoder = FrameDecoder(max_frame_size)
        self.transport: asyncio.Transport | None = None
        self.heartbeat: Heartbeat | None = None
        self.handshake: asyncio.Future[Message] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._drain: asyncio.Future[None] | None = None
        self._soon: list[bytes] = []  # frames for the end of this loop iteration

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:  # pragma: no cover
                pass

    def data_received(self, data: bytes) -> None:
        if self.heartbeat is not None:
            self.heartbeat.received(self._loop.time())
        try:
            for body in self.decoder.feed(data):
                msg = decode_message(body)
                self._on_message(self, msg)
        except ProtocolError as exc:
            # The server broke the protocol: nothing after this can be trusted.
            self.error = exc
            self.abort()

    # -- write backpressure: callers await drain() while the buffer is full --

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    @property
    def writing_paused(self) -> bool:
        """The transport's buffer is over its high-water mark: writers should drain()."""
        return self._drain is not None

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait while the transport's buffer is over its high-water mark;
        False if it still is after ``timeout`` seconds."""
        if self._drain is None:
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(self._drain), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._soon.clear()
        self.resume_writing()  # release writers; their next write sees the closed connection
        if self.error is None:
            self.error = exc
        if not self.closed.done():
            self.closed.set_result(None)
        if self.handshake is not None and not self.handshake.done():
            from ipc_protocol import ConnectionLost

            self.handshake.set_exception(ConnectionLost(f"connection closed during the handshake: {self.error or 'EOF'}"))
            self.handshake.exception()
        self._on_lost(self, self.error)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, frame: bytes) -> None:
        """Write now, after any frames waiting for the end of the iteration (order is kept)."""
        assert self.transport is not None
        if self._soon:
            self._soon.append(frame)
            self._flush()
        else:
            self.transport.write(frame)

    def write_soon(self, frame: bytes) -> None:
        """Write at the end of this loop iteration, with the other frames written so."""
        soon = self._soon
        soon.append(frame)
        if len(soon) == 1:
            self._loop.call_soon(self._flush)
        elif len(soon) >= _SOON_MAX_FRAMES:
            self._flush()

    def _flush(self) -> None:
        soon = self._soon
        if not soon:
            return
        self._soon = []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(soon[0] if len(soon) == 1 else b"".join(soon))

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
