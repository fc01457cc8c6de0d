"""The client's socket pump: bytes in -> core -> messages to the client.

It owns the transport, the decoder, the frame limit and protocol version of
this connection, the handshake's wait and the heartbeat's timer; the client
decides what messages mean.

Writes: the first frame of a loop iteration is written at once (a lone
request pays no delay); the frames that follow in the same iteration go out
together when it ends, at most ``_BATCH_MAX_FRAMES`` per write: one system
call per batch instead of one per frame, while bounded batches keep client
and server from running in lock step. A read of several frames wakes several
writers at once (many requesters, a responder's handlers), and they run in
the next iteration: their first frame is batched too, or it would take a
system call of its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import cast

from ipc_protocol import (
    ConnectionLost,
    FrameDecoder,
    FrameTooLarge,
    Heartbeat,
    HeartbeatAction,
    Message,
    ProtocolError,
    RequestTimeout,
    decode_message,
    encode_frame,
    encode_message,
)

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
    """One connection to the server. ``legacy`` and ``max_send`` describe
    what the handshake agreed: every frame is encoded for that version and
    refused locally when the server would refuse it (§1.1)."""

    def __init__(
        self,
        on_message: Callable[[ClientConnection, Message], None],
        on_lost: Callable[[ClientConnection, BaseException | None], None],
        max_frame_size: int | None,
    ) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self.decoder = FrameDecoder(max_frame_size)
        self.legacy = False  # a version-1 server (§10)
        self.connection_id = ""  # as the server named it in the handshake
        self.max_send: int | None = max_frame_size
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
        self._heartbeat_task: asyncio.Task[None] | None = None

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
        self.stop_heartbeat()
        self._batch.clear()
        self.resume_writing()  # release writers; their next write sees the closed connection
        if self.error is None:
            self.error = exc
        if not self.closed.done():
            self.closed.set_result(None)
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(ConnectionLost(f"connection closed during the handshake: {self.error or 'EOF'}"))
            self.handshake.exception()
        self._on_lost(self, self.error)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # -- encoding: the one choke point for outgoing frames -------------------

    def frame(self, msg: Message) -> bytes:
        """Encode ``msg`` for this connection's version; refuse locally what the server would refuse (§1.1)."""
        return self.frame_body(encode_message(msg, legacy=self.legacy))

    def frame_body(self, body: bytes) -> bytes:
        if self.max_send is not None and len(body) > self.max_send:
            raise FrameTooLarge(len(body), self.max_send)
        return encode_frame(body)

    def send(self, msg: Message) -> None:
        """Encode and write ``msg``; ConnectionLost once the connection is closed."""
        if not self.is_open:
            raise ConnectionLost("the connection is closed")
        self.write(self.frame(msg))

    # -- the handshake's wait and the heartbeat (§3, §9) ----------------------

    async def exchange_hello(self, hello: Message, timeout: float, peer: str) -> Message:
        """Send the connect frame and wait for the first response, whatever its
        ``reply_to``: a 1.1.x server answers the connect without one (§3, §10)."""
        self.handshake = self._loop.create_future()
        self.send(hello)
        try:
            return await asyncio.wait_for(asyncio.shield(self.handshake), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout(f"no handshake reply from {peer}") from None

    def start_heartbeat(self, hb: Heartbeat, ping: Callable[[], Message], on_dead: Callable[[Heartbeat], None]) -> None:
        """Ping after ``hb.interval_s`` of silence; after ``hb.timeout_s``,
        call ``on_dead`` and abort the connection."""
        self.heartbeat = hb
        self._heartbeat_task = self._loop.create_task(self._heartbeat(hb, ping, on_dead))

    def stop_heartbeat(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None

    async def _heartbeat(self, hb: Heartbeat, ping: Callable[[], Message], on_dead: Callable[[Heartbeat], None]) -> None:
        loop = self._loop
        while self.is_open:
            await asyncio.sleep(max(hb.next_check(loop.time()), 0.005))
            action = hb.poll(loop.time())
            if action is HeartbeatAction.PING:
                self.send(ping())
            elif action is HeartbeatAction.DEAD:
                on_dead(hb)
                self.error = ConnectionLost(f"heartbeat timeout: nothing received for {hb.timeout_s:g} s")
                self._heartbeat_task = None
                self.abort()
                return

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
