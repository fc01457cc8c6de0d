"""The client's socket pump over the core's :class:`ClientProtocol`: it reads
into a buffer, hands the bytes to the protocol, routes the messages that
come back, acts on its events (the handshake's end, pongs, violations), and
writes frames. It also keeps the connection's frame encoding for its
version and frame limit, and the heartbeat's timer.

Writes: the first frame of a loop iteration is written at once (a lone
request pays no delay); the frames that follow in the same iteration go out
together when it ends, at most ``_BATCH_MAX_FRAMES`` or ``_BATCH_MAX_BYTES``
per write: one system call per batch instead of one per frame, while
bounded batches keep client and server from running in lock step. A read of
several frames wakes several writers at once (many requesters, a
responder's handlers), and they run in the next iteration: what they write
goes out in about ``_WRITES_PER_READ`` batches, so that the server starts
on the first while the rest are encoded. The hot path's frames are written
here directly; what the protocol queues itself (the connect, pings, pongs)
is written after the event that queued it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from ipc_protocol import (
    ConnectionLost,
    FrameTooLarge,
    Heartbeat,
    HeartbeatAction,
    IPCError,
    Message,
    NotConnected,
    RequestTimeout,
)
from ipc_protocol.attachments import BINARY, BinaryFrame, Frame
from ipc_protocol.envelope import encode_message_parts
from ipc_protocol.framing import frame_parts
from ipc_protocol.client_protocol import ClientProtocol, Connected, HandshakeRefused
from ipc_protocol.protocol import HANDSHAKE, Event, PongReceived, ProtocolViolation
from ipc_protocol.write_queue import FrameWindows, WriteQueue

from .reads import frame_buffers, read_buffer
from .socket_options import tune
from .write_line import WriteLine

__all__ = ["ClientConnection"]

# A batch goes out at this many frames even before the iteration ends, so
# the server starts on the first of a large batch while we encode the rest
# (as the server's own _FLUSH_EVERY_FRAMES).
_BATCH_MAX_FRAMES = 16
# ... or at this many bytes: 16 large frames would be a whole round of
# requests in flight, which the server could only start on once all were
# written (12 KB requests, 16 in flight: 2.1k -> 2.7k round trips/s).
_BATCH_MAX_BYTES = 64 * 1024
# What the writers a read of n frames woke write goes out in batches of
# n / 4 frames (at least one): in one batch, a whole round of requests in
# flight, client and server ran in lock step, each idle while the other
# worked (16 in flight: 22k -> 46k round trips/s; 64: unchanged).
_WRITES_PER_READ = 4
# A binary frame smaller than this is joined and batched like any frame;
# a larger one is written from its buffers, its attachments uncopied (§16.4).
_JOIN_BELOW_BYTES = 64 * 1024


class ClientConnection(asyncio.BufferedProtocol):
    """One connection to the server. ``legacy`` and ``max_send`` are what
    the handshake agreed (before it: version 2 and our limit): every frame
    is encoded for that version and refused locally when the server would
    refuse it (§1.1). ``on_pong(conn, latency_s)`` hears the heartbeat's pongs."""

    def __init__(
        self,
        proto: ClientProtocol,
        on_message: Callable[[ClientConnection, Message], None],
        on_lost: Callable[[ClientConnection, BaseException | None], None],
        on_pong: Callable[[ClientConnection, float | None], None] | None = None,
    ) -> None:
        self.proto = proto
        proto.keep_frame_buffers(frame_buffers())
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_pong = on_pong
        self.legacy = False  # a version-1 server (§10)
        self.going_away = False  # the server's goaway notice came on it (going_away.py)
        self.connection_id = proto.connection_id  # as the server named it in the handshake
        self.max_send: int = proto.max_frame_size
        self.transport: asyncio.Transport | None = None
        self.heartbeat: Heartbeat | None = None
        self.last_received: float | None = None  # loop time of the last bytes read, for get_connection_health()
        self.closed = asyncio.get_running_loop().create_future()
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[Connected] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._batch: list[bytes] = []  # frames written after the first of this loop iteration, for its end
        self._batch_bytes = 0
        self._batch_cap = _BATCH_MAX_FRAMES  # frames per batch in this iteration
        # _end_iteration callbacks scheduled: while any is, writes are batched.
        self._iteration_ends = 0
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._lent = read_buffer()  # what the read in progress lands in (get_buffer)
        self._queue: WriteQueue | None = None  # a large frame going out, and the frames behind it
        self.line = WriteLine(self._loop, lambda: self._drain is not None or self._queue is not None)  # calls waiting for room
        self.accepted = 0  # bytes of every frame given to write(), for taken()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        tune(transport)

    # Reads land in the thread's read buffer, or a large frame's own (reads.py).

    def get_buffer(self, sizehint: int) -> memoryview:
        # A large frame is read in place; its buffer grows in place only while
        # no view of it is held, so the last read's view goes first.
        self._lent = shared = read_buffer()
        self._lent = self.proto.read_buffer(shared)
        return self._lent

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._lent[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        proto = self.proto
        self.last_received = now = self._loop.time()
        frames = proto.receive_data(data, None if proto.heartbeat is None else now)
        if not frames:
            if proto.violation is not None:
                self._violated(proto.violation)
            return
        on_message = self._on_message
        for body in frames:
            item = proto.receive_frame(body)
            if type(item) is Message:
                on_message(self, item)
            elif not self._event(item):  # type: ignore[arg-type]
                return  # the protocol failed: read no more
        if len(frames) > 1:
            # Batch what the writers it woke write in the next iteration; this
            # end runs after them (they were scheduled first).
            self._batch_cap = min(_BATCH_MAX_FRAMES, len(frames) // _WRITES_PER_READ or 1)
            self._iteration_ends += 1
            self._loop.call_soon(self._end_iteration)

    def _event(self, event: Event) -> bool:
        """Act on what the protocol reports; False once it reads no more."""
        if type(event) is PongReceived:
            if self._on_pong is not None:
                self._on_pong(self, event.latency_s)
            return True
        if type(event) is Connected:
            self.legacy, self.max_send, self.connection_id = event.legacy, event.max_frame_size, event.connection_id
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(event)
            return True
        if type(event) is HandshakeRefused:
            self.error = event.error  # kept for handshake(): a refusal may come before it is called (§12)
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_exception(event.error)
                self._handshake.exception()  # mark retrieved: the wait may have timed out already
            return False
        if type(event) is ProtocolViolation:
            self._violated(event)
            return False
        self._write_queued()  # PingReceived: the pong it queued
        return True

    def _violated(self, violation: ProtocolViolation) -> None:
        """The server broke the protocol: nothing after this can be trusted.
        The protocol's error frame is not sent (the client never sends one).
        The error is this side's own (``FrameError``...), as the server sent
        none: a TLS alert must stay a ``FrameError`` for tls.py to name TLS."""
        self.error = violation.error
        self.abort()

    def _write_queued(self) -> None:
        """Write what the protocol queued itself (connect, ping, pong)."""
        for frame in self.proto.data_to_send():
            if self.is_open:
                self.write(frame)

    # -- write backpressure: calls wait in `line` before writing, producers in drain() --

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_future()
        if self._queue is not None:
            self._queue.paused = True

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        self._resume_queue()  # may pause again: writers woken wait on the new drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        self.line.resumed()

    @property
    def writing_paused(self) -> bool:  # the transport is over its high-water mark: writers should drain()
        return self._drain is not None

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait while the transport's buffer is over its high-water mark;
        False if it still is after ``timeout`` seconds."""
        if self._drain is None:
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._drain)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        return True

    def eof_received(self) -> bool:
        """The server's EOF: nothing more comes. Aborted: a close would wait to
        flush what a peer that stopped reading never takes, the loss unseen."""
        self.abort()
        return False  # the close asyncio adds does nothing now; True would warn over TLS

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_heartbeat()
        self.proto.connection_lost()
        self._batch.clear()
        self._batch_bytes = 0
        self._queue = None
        err = self.error or exc
        self.line.lost(f"the connection was lost{f': {err}' if err else ''}")  # before resume_writing() gives a turn
        self.resume_writing()  # release writers; their next write sees the closed connection
        if self.error is None:
            self.error = exc
        if not self.closed.done():
            self.closed.set_result(None)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionLost(f"connection closed during the handshake: {self.error or 'EOF'}"))
            self._handshake.exception()
        self._on_lost(self, self.error)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # -- encoding: the one choke point for outgoing frames -------------------

    def frame(self, msg: Message) -> Frame:
        """Encode ``msg`` for this connection's version; refuse locally what the server would refuse (§1.1)."""
        return self.frame_body(encode_message_parts(msg, legacy=self.legacy))

    def frame_body(self, body: bytes | BinaryFrame) -> Frame:
        """The frame of ``body``; a binary one goes as it is to a server that
        granted ``binary``, else as the tagged base64 of §16.5."""
        if isinstance(body, BinaryFrame) and BINARY not in self.proto.features:
            body = body.tagged(self.legacy)
        if self.max_send is not None and len(body) > self.max_send:
            raise FrameTooLarge(len(body), self.max_send)
        return frame_parts(body)

    def send(self, msg: Message) -> None:
        """Encode and write ``msg``; ConnectionLost once the connection is closed."""
        if not self.is_open:
            raise ConnectionLost("the connection is closed")
        self.write(self.frame(msg))

    def send_body(self, body: bytes | BinaryFrame) -> None:
        """:meth:`send` for a message already encoded (``encode_*_parts``)."""
        if not self.is_open:
            raise ConnectionLost("the connection is closed")
        self.write(self.frame_body(body))

    # -- the handshake's wait and the heartbeat (§3, §9) ----------------------

    async def handshake(self, timeout: float, peer: str) -> Connected:
        """Send the connect (the protocol queues it) and wait for the server's
        answer: :class:`Connected`, or the typed error of its refusal."""
        self._handshake = self._loop.create_future()
        if self.proto.state is not HANDSHAKE:  # refused (too_many_connections) or closed before we asked
            raise self.error if isinstance(self.error, IPCError) else ConnectionLost(f"connection closed during the handshake: {self.error or 'EOF'}")
        self.proto.connect()
        self._write_queued()
        try:
            async with asyncio.timeout(timeout) as scope:  # not wait_for: on 3.11 it may swallow a cancel that comes with the reply
                return await asyncio.shield(self._handshake)
        except TimeoutError as exc:
            if scope.expired():
                raise RequestTimeout(f"no handshake reply from {peer}") from None
            # The server's answer, code timeout (its auth timeout passed first): its words, not ours.
            raise NotConnected(f"cannot connect to {peer}: the server refused the connect ({getattr(exc, 'code', 'timeout')}): {exc}") from exc

    def start_heartbeat(self, on_dead: Callable[[Heartbeat], None]) -> None:
        """Once connected, keep the protocol's heartbeat (§9), if one is due:
        ping on silence; after its timeout, call ``on_dead`` and abort."""
        if self.proto.start_heartbeat(self._loop.time()):
            self.heartbeat = self.proto.heartbeat
            self._heartbeat_task = self._loop.create_task(self._heartbeat(on_dead))

    def stop_heartbeat(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None

    async def _heartbeat(self, on_dead: Callable[[Heartbeat], None]) -> None:
        hb, loop, proto = self.heartbeat, self._loop, self.proto
        assert hb is not None
        while self.is_open:
            await asyncio.sleep(max(hb.next_check(loop.time()), 0.005))
            action = proto.tick(loop.time())
            if action is HeartbeatAction.PING:
                self._write_queued()
            elif action is HeartbeatAction.DEAD:
                silent = loop.time() - hb.last_received
                on_dead(hb)
                # A timeout, as Node's: the client reports it on "error" too (lifecycle).
                self.error = RequestTimeout(f"heartbeat timeout: nothing received for {round(silent, 3):g} s")
                self._heartbeat_task = None
                self.abort()
                return

    def write(self, frame: Frame) -> None:
        """Write ``frame``: at once if it is the first of this loop iteration,
        else with the others of the iteration when it ends (order is kept)."""
        if isinstance(frame, BinaryFrame):
            if frame.nbytes < _JOIN_BELOW_BYTES:
                frame = bytes(frame)
            else:  # its buffers, a window at a time, after what is batched (§16.4, write_queue)
                self.accepted += frame.nbytes
                self._flush()
                self._hold(FrameWindows(frame.parts))
                return
        self.accepted += len(frame)
        if self._queue is not None:  # behind a large frame
            self._queue.hold(frame)
        elif self._iteration_ends:
            batch = self._batch
            batch.append(frame)
            self._batch_bytes += len(frame)
            if len(batch) >= self._batch_cap or self._batch_bytes >= _BATCH_MAX_BYTES:
                self._flush()
        else:
            assert self.transport is not None
            self._iteration_ends = 1
            self._loop.call_soon(self._end_iteration)
            self.transport.write(frame)

    def taken(self) -> int:
        """How many ``accepted`` bytes the kernel took: not batched, queued or in
        the transport's buffer (under TLS, the TCP one beneath too). Only while ``is_open``."""
        t, q = self.transport, self._queue
        inner = getattr(getattr(t, "_ssl_protocol", None), "_transport", None)
        held = (0 if t is None else t.get_write_buffer_size()) + (0 if inner is None else inner.get_write_buffer_size())
        return self.accepted - held - self._batch_bytes - (0 if q is None else q.nbytes)

    def _end_iteration(self) -> None:
        self._iteration_ends -= 1
        if not self._iteration_ends:
            self._batch_cap = _BATCH_MAX_FRAMES
            self._flush()

    def _flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self._batch_bytes = 0
        if self.transport is not None and not self.transport.is_closing():
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            if self._queue is not None:
                self._queue.hold(data)
            else:
                self.transport.write(data)

    def _hold(self, windows: FrameWindows) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = WriteQueue()
            queue.hold(windows)
            self._resume_queue()
        else:
            queue.hold(windows)

    def _resume_queue(self) -> None:
        queue = self._queue
        if queue is not None and self.transport is not None and queue.resume(self.transport):
            self._queue = None

    def close(self) -> None:
        self.proto.close()
        if self.transport is not None:
            self._flush()
            queue, self._queue = self._queue, None
            if queue is not None:  # what waits goes to the transport, which writes it before it closes
                queue.unwindow(self.transport)
                for data in queue.rest():
                    self.transport.write(data)
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
