"""The server's own accept loop, so that it can stop accepting for a while
(docs/protocol.md §12.1).

``create_server`` accepts every socket the kernel has ready, up to its
backlog per wakeup, before any of them has been read: a burst of honest
clients over ``max_pending_handshakes`` made the cap evict the first of
them although their connects had already arrived (300 clients at once: 172
refused). Neither asyncio's nor uvloop's ``Server`` can pause accepting,
so the sockets ``create_server`` bound are served here instead: a socket is
accepted only while ``room()`` says there is a place for it (a free place
under the cap, or a pending socket old enough to be evicted); otherwise
the rest wait in the kernel's listen backlog (``LISTEN_BACKLOG``) until a
handshake ends or the oldest pending socket is old enough, rechecked every
``RECHECK_S``. Works the same on asyncio and uvloop, and per worker with
``--workers`` (each its own socket, SO_REUSEPORT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

__all__ = ["Listener", "LISTEN_BACKLOG", "RECHECK_S"]

log = logging.getLogger("ipc_server")

LISTEN_BACKLOG = 1024  # the kernel queues this many (capped by net.core.somaxconn) while the server waits
RECHECK_S = 0.005  # while no place is free: how often the places are looked at again
_BATCH = 100  # sockets accepted in one turn at most, as asyncio's accept does


class Listener:
    """Accepts on the sockets of ``server`` (made with ``start_serving=False``).

    Args:
        room: how many sockets may be accepted now (0: none), and if none,
            the seconds until one may be (``Admission.room``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, server: asyncio.AbstractServer, factory: Callable[[], asyncio.BaseProtocol], room: Callable[[int], tuple[int, float]]) -> None:
        self._loop, self._server, self._factory, self._room = loop, server, factory, room
        self.sockets: list[socket.socket] = []
        for bound in server.sockets:  # type: ignore[attr-defined]
            sock = bound.dup()  # a plain socket on either loop; the server's copy stays unserved
            sock.setblocking(False)
            sock.listen(LISTEN_BACKLOG)
            self.sockets.append(sock)
        self._starting = 0  # accepted, their connection_made still to come: they count as pending
        self._tasks = [loop.create_task(self._serve(sock)) for sock in self.sockets]

    async def _serve(self, sock: socket.socket) -> None:
        loop = self._loop
        while True:
            places, wait_s = self._room(self._starting)
            if not places:
                await asyncio.sleep(min(wait_s, RECHECK_S) if wait_s > 0 else RECHECK_S)
                continue
            try:
                accepted = [await loop.sock_accept(sock)]
                while len(accepted) < min(places, _BATCH):  # what else is ready, without a wait
                    try:
                        accepted.append(sock.accept())
                    except (BlockingIOError, InterruptedError):
                        break
            except OSError as exc:  # EMFILE, ENOBUFS...: as asyncio, wait and try again
                log.error("accepting a connection failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for conn, _ in accepted:
                self._start(conn)

    def _start(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        self._starting += 1
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
        task.add_done_callback(lambda t, conn=conn: self._started(t, conn))  # type: ignore[misc]

    def _started(self, task: asyncio.Task[object], conn: socket.socket) -> None:
        self._starting -= 1
        if task.cancelled() or task.exception() is not None:
            conn.close()

    def is_serving(self) -> bool:
        return any(not task.done() for task in self._tasks)

    def close(self) -> None:
        """Stop accepting and close the listening sockets: the port is free."""
        for task in self._tasks:
            task.cancel()
        for sock in self.sockets:
            sock.close()
        self._server.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
