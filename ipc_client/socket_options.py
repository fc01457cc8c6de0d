"""The options every client socket gets once connected."""

from __future__ import annotations

import asyncio
import socket

__all__ = ["tune"]


def tune(transport: asyncio.BaseTransport) -> None:
    """No Nagle delay (a lone request goes out at once), and TCP keepalive
    (a peer gone without a word is found even with heartbeats off)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:  # pragma: no cover
        pass
