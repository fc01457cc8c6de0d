"""What a connection shares with, and needs from, its server: the read
buffer every connection of the server reads into, the owner interface the
server implements, and the socket options of an accepted transport."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sized
from typing import TYPE_CHECKING, Protocol

from ipc_protocol import Message
from ipc_protocol.frame_buffers import FrameBuffers
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol

from .config import ServerConfig
from . import reading
from .stats import ServerStats

if TYPE_CHECKING:
    from .connection import ServerConnection
    from .host_lines import HostLines

__all__ = ["SharedReads", "ConnectionOwner", "configure_transport"]

_READ_BUFFER_SIZE = 256 * 1024  # asyncio's own read size


class SharedReads:
    """What the connections of one server share about reading (the loop
    reads one socket at a time). ``buffer``: every read lands here;
    asyncio's plain ``Protocol`` path allocates a buffer per read instead,
    which the allocator serves with mmap: more system calls and page faults
    on every read. ``lone``: true while a read of a single frame is
    dispatched; what it sends, to any connection, is written at once.
    ``batch``: true while a read of several frames is dispatched; what it
    sends waits for the end of the loop iteration, where the answers of
    its other frames join it. ``lent``: what the read in progress lands
    in, ``buffer`` or the rest of a large frame's own buffer (read in place).
    ``frame_buffers``: large frames' buffers, kept for the next ones.
    ``waiting``: connections whose frames wait for a turn (reading.py);
    ``turn_s``: the share of the budget each one's frames get in a turn,
    one budget split between them, so a request of another connection
    waits about one budget behind N busy ones, not N."""

    __slots__ = ("buffer", "lone", "batch", "lent", "frame_buffers", "waiting", "turn_s")

    def __init__(self, size: int = _READ_BUFFER_SIZE) -> None:
        self.buffer = memoryview(bytearray(size))
        self.lone = False
        self.batch = False
        self.lent = self.buffer
        self.frame_buffers = FrameBuffers()
        self.waiting = 0
        self.turn_s = reading.TURN_BUDGET_S

    def waits(self, more: int) -> None:
        """A connection starts (1) or stops (-1) waiting for a turn: the budget is shared anew."""
        self.waiting += more
        budget = reading.TURN_BUDGET_S
        self.turn_s = max(budget / max(self.waiting, 1), min(reading.MIN_TURN_S, budget))

    def lend(self, protocol: ServerProtocol) -> memoryview:
        """Where ``protocol``'s next read lands, noted as the read in progress.
        The last read's view goes first: a large frame's buffer grows in
        place only while no view of it is held."""
        self.lent = self.buffer
        self.lent = view = protocol.read_buffer(self.buffer)
        return view


class ConnectionOwner(Protocol):
    """What a connection needs from its server (``IPCServer`` implements it)."""

    config: ServerConfig
    stats: ServerStats
    reads: SharedReads
    refusal_lines: HostLines  # lines of sockets refused at or before their handshake, per host
    # In-process handlers: while there are none, or a connection has called
    # none, its frames are decoded without their payload (ipc_protocol.relayed).
    @property
    def handlers(self) -> Sized: ...

    # A socket was accepted: keep it (True) or refuse it (the owner aborts it).
    def admit(self, conn: ServerConnection) -> bool: ...

    # A socket still in its handshake is being closed (timed out, refused, broke the
    # protocol): it no longer counts as pending, though its socket may linger (close()).
    def handshake_ended(self, conn: ServerConnection) -> None: ...

    # A valid connect: decide, then ``conn.accept(connection_id)``.
    def connect_requested(self, conn: ServerConnection, request: ConnectRequested) -> None: ...

    # One message of an open connection; ``body`` is its frame body.
    def dispatch(self, conn: ServerConnection, msg: Message, body: bytes) -> None: ...

    # The peer sent its EOF and waits for its answers (half_close.py): it is no
    # longer a subscriber or a responder; what it sent is still answered.
    def half_closed(self, conn: ServerConnection) -> None: ...

    # The socket is gone: forget the connection.
    def connection_closed(self, conn: ServerConnection) -> None: ...


def configure_transport(transport: asyncio.WriteTransport) -> None:
    """No Nagle delay (frames are already batched), TCP keepalive, and no
    transport write limit: the slow-consumer check is ours (§12)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:  # pragma: no cover - not a TCP socket
            pass
    transport.set_write_buffer_limits(high=2**30)
