"""The server's listening sockets: one port for every address of its host.

``create_server`` binds one socket per address the host resolves to
(``localhost``: ``::1`` and ``127.0.0.1`` on most systems) and, for port 0,
lets each pick its own free port: the server reported the first, and a
client that reached the other address found nothing there. Here, with
port 0 and several addresses, one free port is chosen on the first address
and all are bound to it; if another address has that port taken, a fresh
one is tried, a bounded number of times.

The sockets are bound here and served by ``accepting.Listener``, which
accepts only while admission has a place (docs/protocol.md §12.1).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

from .accepting import LISTEN_BACKLOG, Listener

__all__ = ["listen", "listen_gated", "Listener", "PORT_TRIES"]

PORT_TRIES = 20  # free ports tried before the bind error is the caller's


async def listen_gated(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, *, reuse_port: bool, room: Callable[[int], tuple[int, float]]
) -> Listener:
    """``listen``'s sockets, served by a :class:`Listener` that accepts
    while ``room`` allows (the bridge's port, docs/protocol.md §12.1)."""
    return Listener(loop, await listen(loop, factory, host, port, reuse_port=reuse_port, start_serving=False), factory, room)


async def listen(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, *, reuse_port: bool, start_serving: bool = True
) -> asyncio.Server:
    """``loop.create_server(factory, host, port)``, every socket on one
    port, which port 0 picks (``free_port`` on the first address);
    ``reuse_port``: bound with SO_REUSEPORT, so several servers share it."""
    options: dict[str, Any] = {"reuse_address": True, "reuse_port": reuse_port or None, "backlog": LISTEN_BACKLOG, "start_serving": start_serving}
    addresses = await _addresses(loop, host) if port == 0 else []
    if len(addresses) < 2:
        return await loop.create_server(factory, host, port, **options)
    for attempt in range(1, PORT_TRIES + 1):
        chosen = free_port(*addresses[0])
        try:
            return await loop.create_server(factory, host, chosen, **options)
        except OSError as exc:  # another address has it taken: another port
            if exc.errno != errno.EADDRINUSE or attempt == PORT_TRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _addresses(loop: asyncio.AbstractEventLoop, host: str) -> list[tuple[int, tuple[Any, ...]]]:
    """The (family, address) pairs ``create_server`` would bind, each once."""
    infos = await loop.getaddrinfo(host, 0, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: dict[tuple[int, Any], tuple[int, tuple[Any, ...]]] = {}
    for family, _, _, _, address in infos:
        seen.setdefault((family, address[0]), (family, address))
    return list(seen.values())


def free_port(family: int, address: tuple[Any, ...]) -> int:
    """A port free on ``address`` now (bound to port 0, read back, closed)."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address[0], 0, *address[2:]))
        return int(sock.getsockname()[1])
