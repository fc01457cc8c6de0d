"""The client's socket adapter: bytes in -> core -> messages to the client.

It owns the transport and the decoder and nothing else; the client decides
what messages mean.

Writes: the first frame of a loop iteration is written at once (a lone
request pays no delay); the frames that follow in the same iteration go out
together when it ends, at most ``_BATCH_MAX_FRAMES`` per write. One system
call per batch instead of one per frame cut the client's CPU per round trip
by ~20%; unbounded batches made client and server run in lock step. A read
of several frames wakes several writers at once (64 requesters, a responder's
handlers), and they run in the next iteration: their first frame is batched
too, or it would take a system call of its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import cast

from ipc_protocol import FrameDecoder, Heartbeat, Message, ProtocolError, decode_message

__all__ = ["ClientConnection"]

# Every connection of a thread reads into one buffer (a loop reads one socket
# at a time). asyncio's plain Protocol path allocates 256 KiB per read instead,
# which glibc serves with mmap: three more system calls (mmap, mremap, munmap)
# and fresh page faults on every read.
_READ_BUFFER_SIZE = 256 * 1024
_thread = threading.local()


def _read_buffer() -> memoryview:
    view: memoryview | None = getattr(_thread, "read_buffer", None)
    if view is None:
        view = _thread.read_buffer = memoryview(bytearray(_READ_BUFFER_SIZE))
    return view


# A batch goes out at this many frames even before the iteration ends, so
# the server starts on the first of a large batch while we encode the rest
# (as the server's own _FLUSH_EVERY_FRAMES).
_BATCH_MAX_FRAMES = 16


class ClientConnection(asyncio.BufferedProtocol):
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
        # Frames written after the first of this loop iteration, for its end.
        self._batch: list[bytes] = []
        # _end_iteration callbacks scheduled: while any is, writes are batched.
        self._iteration_ends = 0

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

    # Reads land in the thread's receive buffer (_read_buffer);
    # data_received copies what it keeps before the next read.

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_read_buffer()[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self.heartbeat is not None:
            self.heartbeat.received(self._loop.time())
        try:
            frames = self.decoder.feed(data)
            for body in frames:
                msg = decode_message(body)
                self._on_message(self, msg)
        except ProtocolError as exc:
            # The server broke the protocol: nothing after this can be trusted.
            self.error = exc
            self.abort()
            return
        if len(frames) > 1:
            # Batch what the writers it woke write in the next iteration; this
            # end runs after them (they were scheduled first).
            self._iteration_ends += 1
            self._loop.call_soon(self._end_iteration)

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
        self._batch.clear()
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
        """Write ``frame``: at once if it is the first of this loop iteration,
        else with the others of the iteration when it ends (order is kept)."""
        if self._iteration_ends:
            batch = self._batch
            batch.append(frame)
            if len(batch) >= _BATCH_MAX_FRAMES:
                self._flush()
        else:
            assert self.transport is not None
            self._iteration_ends = 1
            self._loop.call_soon(self._end_iteration)
            self.transport.write(frame)

    def _end_iteration(self) -> None:
        self._iteration_ends -= 1
        if not self._iteration_ends:
            self._flush()

    def _flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        self._batch = []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
