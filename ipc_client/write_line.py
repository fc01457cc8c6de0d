"""The calls waiting for a connection's full send buffer, in arrival order
(docs/resilience.md §4, "A full send buffer"); the Node client's
``js-client/lib/write_line.js``.

A publish, notify or request that finds the transport over its high-water
mark (it called ``pause_writing``), a large frame of the connection's own
write queue still going out, or calls already waiting, waits here BEFORE
its bytes are written. Why: bytes handed to the transport are sent whatever
the caller is told afterwards. A publish that waited after writing and then
raised ``RequestTimeout`` (or was cancelled) had been sent all the same, so
a caller that retried sent it twice. A call that leaves this line, at its
deadline, its cancellation or the connection's loss, was never written.

One caller gets its turn at a time: its task then writes before its next
``await``, and the next turn is given in the loop iteration after, once the
transport has room (``resume_writing`` gives the first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ipc_protocol import ConnectionLost, RequestTimeout

__all__ = ["WriteLine"]


class WriteLine:
    """The line of one connection. ``backed_up()`` says whether a write
    now would go into a full buffer: the transport paused, or the
    connection's own write queue still holding a large frame."""

    __slots__ = ("_loop", "_backed_up", "_waiting", "_granting")

    def __init__(self, loop: asyncio.AbstractEventLoop, backed_up: Callable[[], bool]) -> None:
        self._loop = loop
        self._backed_up = backed_up
        self._waiting: dict[asyncio.Future[None], None] = {}  # oldest first
        self._granting = False  # a turn was given; its task has not run yet

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def blocked(self) -> bool:
        """Whether a write now would go into a full buffer or overtake a waiting call."""
        return bool(self._waiting) or self._granting or self._backed_up()

    async def turn(self, deadline: float | None, what: str) -> None:
        """Wait for this caller's turn to write: it then writes before its
        next ``await``. ``RequestTimeout`` at ``deadline`` (loop time) and
        ``ConnectionLost`` with the connection, nothing written either way;
        a cancelled caller leaves the line, unsent."""
        loop = self._loop
        fut: asyncio.Future[None] = loop.create_future()
        self._waiting[fut] = None
        had = 0.0 if deadline is None else max(deadline - loop.time(), 0.0)
        try:
            async with asyncio.timeout_at(deadline):
                await fut
        except TimeoutError:
            self._waiting.pop(fut, None)
            raise RequestTimeout(f"{what} was not sent: the connection's send buffer stayed full for its {had:.3g} s") from None
        except BaseException:
            self._waiting.pop(fut, None)
            raise
        if deadline is not None and loop.time() >= deadline:  # its turn came as its deadline passed: never late
            raise RequestTimeout(f"{what} was not sent: the connection's send buffer stayed full for its {had:.3g} s")

    def resumed(self) -> None:
        """The transport has room again (``resume_writing``): the next turn."""
        if not self._granting:
            self._next()

    def lost(self, reason: str) -> None:
        """The connection is gone: every waiting call raises ``ConnectionLost``, unsent."""
        waiting = list(self._waiting)
        self._waiting.clear()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(ConnectionLost(f"{reason}; the call was not sent (it waited for the full send buffer)"))
                fut.exception()  # retrieved: its caller may be gone already

    def _next(self) -> None:
        while self._waiting and not self._backed_up():
            fut = next(iter(self._waiting))
            del self._waiting[fut]
            if fut.done():  # cancelled meanwhile
                continue
            fut.set_result(None)
            self._granting = True
            self._loop.call_soon(self._granted)  # runs after the woken task wrote
            return

    def _granted(self) -> None:
        self._granting = False
        self._next()
