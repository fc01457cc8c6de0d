"""Graceful shutdown (docs/protocol.md §13): stop accepting, let what is in
flight finish within the grace period, answer the rest ``shutting_down``,
close every connection, abort those that do not close.

``IPCServer.close`` runs the steps in order; this object keeps what they
wait on. The handler and forwarding tables tell it when they empty, but
only while it waits (``draining``), so the request path pays one attribute
test for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from .connection import ServerConnection
from .goaway import close_for_shutdown

__all__ = ["Shutdown"]

log = logging.getLogger("ipc_server")

_CLOSE_WAIT_S = 2.0  # for the peers to close once told to go (goaway.py); then their sockets are aborted


class Shutdown:
    def __init__(self) -> None:
        self.closing = False  # close() began: refuse new connections and requests
        self.leaving = False  # lame duck (§13.1): no new connections, clients told to move
        self.closed = asyncio.Event()
        self.draining = False  # drain() waits: tell it when the tables empty
        self._busy: Callable[[], bool] = lambda: False
        self._drained: asyncio.Future[None] | None = None
        self._all_closed: asyncio.Future[None] | None = None

    async def drain(self, loop: asyncio.AbstractEventLoop, grace_s: float, busy: Callable[[], bool]) -> None:
        """Wait until ``busy()`` is false (nothing in flight) or the grace period ends."""
        self._busy = busy
        deadline = loop.time() + grace_s
        self.draining = True
        try:
            while busy() and loop.time() < deadline:
                self._drained = loop.create_future()
                try:
                    await asyncio.wait_for(self._drained, deadline - loop.time())
                except (asyncio.TimeoutError, TimeoutError):
                    break
        finally:
            self.draining = False
            self._drained = None

    def check_drained(self) -> None:
        """A handler call or forwarded request ended (called while draining)."""
        waiter = self._drained
        if waiter is not None and not waiter.done() and not self._busy():
            waiter.set_result(None)

    async def until_gone(self, loop: asyncio.AbstractEventLoop, connections: Collection[ServerConnection], timeout_s: float) -> None:
        """Lame duck (§13.1): wait until every connection has gone, ``timeout_s``
        has passed, or :meth:`close_connections` closes them."""
        if not connections or timeout_s <= 0:
            return
        self._all_closed = waiter = loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            pass

    async def close_connections(self, loop: asyncio.AbstractEventLoop, connections: set[ServerConnection]) -> None:
        """Tell them all to go (goaway.py); abort any still open after a short wait."""
        if self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)  # a lame duck's wait ends: they are being closed
        for conn in list(connections):
            close_for_shutdown(conn)
        if not connections:
            return
        self._all_closed = loop.create_future()
        try:
            await asyncio.wait_for(self._all_closed, _CLOSE_WAIT_S)
        except (asyncio.TimeoutError, TimeoutError):
            for conn in list(connections):
                conn.abort()

    def connection_gone(self, remaining: int) -> None:
        waiter = self._all_closed
        if remaining == 0 and waiter is not None and not waiter.done():
            waiter.set_result(None)
