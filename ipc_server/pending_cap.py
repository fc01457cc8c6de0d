"""The pending-handshake cap (docs/protocol.md §12.1): the sockets not yet
past the handshake, and which of them makes room for a new one.

At the cap the oldest *silent* socket is evicted: pending for
``SILENT_AFTER_S`` or more with nothing of a connect in, neither read (its
credentials being checked) nor complete among its unread bytes (a part of
a frame is nothing). A socket younger than that may still have its connect
on the way: a burst of clients is accepted up to 100 sockets a wakeup,
before any of them could be read or even had its connect written, and
evicting the first for the last refused 172 of 300 honest clients. A
slow-loris flood's sockets are evicted once that old, and never delay a
client: accepting never stops.

So the cap may be exceeded, by sockets with their connects in (read this
turn) or too young to tell, up to ``HARD_BOUND_FACTOR`` times the cap; at
that bound the oldest silent socket goes, however young, else the oldest.

The test peeks, consuming nothing: FIONREAD for the bytes waiting, then at
most 4 of them (the length prefix). It runs only at the cap, and a socket
seen with its connect in is not peeked again: it is read this turn, and
then it is either past the handshake or has its connect read.
"""

from __future__ import annotations

import array
import fcntl
import socket
import termios
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ipc_protocol.server_protocol import ServerProtocol

__all__ = ["PendingCap", "PendingSocket", "ConnectWaiting", "SILENT", "BYTES", "CONNECT", "peek", "HARD_BOUND_FACTOR", "SILENT_AFTER_S"]

SILENT_AFTER_S = 1.0  # pending this long with nothing in: silent (an honest client's connect comes within it)
HARD_BOUND_FACTOR = 4  # pending sockets kept over the cap, with connects in or too young to tell: at most this × the cap

SILENT, BYTES, CONNECT = 0, 1, 2  # nothing (or part of a frame); bytes of unknown meaning (TLS); a connect in
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class PendingSocket(Protocol):
    """A socket in its handshake, as the pending cap sees it."""

    peer: Any

    def fail(self, code: str, message: str) -> None: ...

    def waiting(self) -> int:
        """SILENT, BYTES or CONNECT: what it sent that was not yet dealt with."""
        ...


def peek(transport: Any) -> tuple[int, bytes]:
    """The bytes waiting unread in ``transport``'s socket, and the first 4
    of them (asyncio's TransportSocket and uvloop's PseudoSocket both give
    the descriptor; a throwaway socket object peeks on it, then lets go)."""
    if transport is None or transport.is_closing():  # on uvloop its fd may be closed, its number reused
        return 0, b""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return 0, b""
    fd = sock.fileno()
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count)
        if count[0] <= 0:
            return 0, b""
        view = socket.socket(sock.family, socket.SOCK_STREAM, 0, fileno=fd)
        try:
            return count[0], view.recv(4, _PEEK)
        finally:
            view.detach()  # the descriptor stays the transport's
    except OSError:  # closing under us: nothing to keep it for
        return 0, b""


class ConnectWaiting:
    """``waiting`` for a connection in the bridge's handshake (a mixin of
    ``ServerConnection``): CONNECT once its connect was read (its
    credentials are being checked) or is complete among the bytes waiting,
    with what the decoder holds of it; on a TLS port any bytes waiting are
    BYTES: records, whose frames cannot be seen."""

    __slots__ = ()

    if TYPE_CHECKING:
        protocol: ServerProtocol
        transport: Any

    def waiting(self) -> int:
        protocol = self.protocol
        if protocol.connect_pending:
            return CONNECT
        count, head = peek(self.transport)
        if not count:
            return SILENT
        if self.transport.get_extra_info("ssl_object") is not None:
            return BYTES
        return CONNECT if protocol.frame_complete(count, head) else SILENT


class PendingCap:
    """Sockets not past the handshake (ours or TLS's), oldest first.

    Args:
        cap: ``max_pending_handshakes``; None: no cap.
    """

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        # By when they came (time.monotonic()): not seen with a connect in, and seen with one.
        self._unknown: OrderedDict[PendingSocket, float] = OrderedDict()
        self._in: OrderedDict[PendingSocket, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._unknown) + len(self._in)

    def __contains__(self, sock: object) -> bool:
        return sock in self._unknown or sock in self._in

    def add(self, sock: PendingSocket) -> None:
        self._unknown[sock] = time.monotonic()

    def discard(self, sock: PendingSocket) -> None:
        if self._unknown.pop(sock, None) is None:
            self._in.pop(sock, None)

    def evictee(self) -> PendingSocket | None:
        """The socket to evict so that one more may come (taken out of the
        table), or None: under the cap, or over it with no silent socket."""
        cap = self.cap
        if cap is None or len(self) < cap:
            return None
        hard = len(self) >= HARD_BOUND_FACTOR * cap
        young = time.monotonic() - SILENT_AFTER_S
        silent, moved = None, []
        for sock, since in self._unknown.items():  # oldest first, no copy: at the cap this runs per accept
            if since > young and not hard:
                break  # it and all after it may still send theirs
            seen = sock.waiting()
            if seen == SILENT:
                silent = sock
                break
            if seen == CONNECT:  # for good: it is read this turn, then past the handshake or checking
                moved.append(sock)
        for sock in moved:  # moved once the walk is over
            self._in[sock] = self._unknown.pop(sock)
        if silent is not None:
            del self._unknown[silent]
            return silent
        if not hard:
            return None
        table = self._in if self._in and (not self._unknown or next(iter(self._in.values())) < next(iter(self._unknown.values()))) else self._unknown
        return table.popitem(last=False)[0]
