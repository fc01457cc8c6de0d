"""The server's listening sockets: one port for every address of its host.

``create_server`` binds one socket per address the host resolves to
(``localhost``: ``::1`` and ``127.0.0.1`` on most systems) and, for port 0,
lets each pick its own free port: the server reported the first, and a
client that reached the other address found nothing there. Here, with
port 0 and several addresses, one free port is chosen on the first address
and all are bound to it; if another address has that port taken, a fresh
one is tried, a bounded number of times.

The kernel's listen queue is ``LISTEN_BACKLOG`` (capped by
``net.core.somaxconn``): a restart's clients reconnect together, and a full
queue makes the kernel drop their SYNs (a retransmit a second later). But
asyncio accepts as many sockets in one wakeup as the backlog it was given,
before it reads any of them: 1,000 clients whose connects had come were
accepted whole, past the pending cap's hard bound, and half were evicted
(docs/protocol.md §12.1). So asyncio is given ``ACCEPT_BATCH``, and the
sockets are then listened on again with the deeper queue.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["listen", "LISTEN_BACKLOG", "ACCEPT_BATCH", "PORT_TRIES"]

PORT_TRIES = 20  # free ports tried before the bind error is the caller's
LISTEN_BACKLOG = 1024  # connections the kernel queues before the server accepts them
ACCEPT_BATCH = 100  # sockets asyncio accepts in one wakeup before it reads any (asyncio's default backlog)


async def listen(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, *, reuse_port: bool) -> asyncio.Server:
    """``loop.create_server(factory, host, port)``, every socket on one
    port, which port 0 picks (``free_port`` on the first address);
    ``reuse_port``: bound with SO_REUSEPORT, so several servers share it."""
    options: dict[str, Any] = {"reuse_address": True, "reuse_port": reuse_port or None, "backlog": ACCEPT_BATCH}
    addresses = await _addresses(loop, host) if port == 0 else []
    if len(addresses) < 2:
        return _deepened(await loop.create_server(factory, host, port, **options))
    for attempt in range(1, PORT_TRIES + 1):
        chosen = free_port(*addresses[0])
        try:
            return _deepened(await loop.create_server(factory, host, chosen, **options))
        except OSError as exc:  # another address has it taken: another port
            if exc.errno != errno.EADDRINUSE or attempt == PORT_TRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _deepened(server: asyncio.Server) -> asyncio.Server:
    """``server``'s sockets listened on again with ``LISTEN_BACKLOG`` (the
    kernel's queue); the loop keeps ``ACCEPT_BATCH`` as its batch."""
    for bound in server.sockets:
        sock = socket.socket(bound.family, bound.type, 0, fileno=bound.fileno())
        try:
            sock.listen(LISTEN_BACKLOG)
        finally:
            sock.detach()  # the descriptor stays the server's
    return server


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
