"""Whether the peer of a connection whose socket is not being read has gone
(docs/protocol.md §6.2, §12).

While the server does not read a socket (too much of what it sent waits:
``max_inflight_per_connection``, or its frames wait for a turn) the loop
does not watch it either, so its peer's reset is never seen, and what the
connection holds (requests in flight, held frames, a place under
``max_connections``) would stay until their deadlines, or forever. The
heartbeat sweep asks this of each such connection, once per sweep.

A ``poll`` of the raw socket's descriptor, with no timeout, reads nothing:
``POLLHUP``/``POLLERR`` is the peer's reset. The descriptor is the TCP
socket's also under TLS, on asyncio (a ``TransportSocket``) and on uvloop
(a pseudo-socket) alike.

The peer's FIN alone is no sign it went: a peer that half-closes
(``shutdown(SHUT_WR)``) once its requests are sent still reads their
answers (half_close.py), and what it sent before the FIN is still to be
read. A peer that closed its socket answers the server's next write with
a reset: the heartbeat still pings a connection that is not read
(``Protocol.tick``), and the reset that answers it is seen here at the
next sweep. So is that of a peer that closed with bytes still unsent (it
wrote more than the server read), whose FIN waits behind them.
"""

from __future__ import annotations

import select
from typing import Any

__all__ = ["peer_gone"]

_POLL = getattr(select, "poll", None)  # not on Windows: nothing is seen there
_RESET = getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)


def peer_gone(transport: Any) -> str | None:
    """How the transport's peer went (the reason logged), or None: still
    there, or it cannot be told."""
    if _POLL is None or transport is None or transport.is_closing():
        return None
    sock = transport.get_extra_info("socket")
    try:
        fd = sock.fileno() if sock is not None else -1
        if fd < 0:
            return None
        poller = _POLL()
        poller.register(fd, _RESET)
        events = poller.poll(0)
    except (OSError, ValueError):  # closed meanwhile
        return None
    if not events or not events[0][1] & _RESET:
        return None
    return "connection lost: reset by the peer while its socket was not read (§12)"
