"""One open stream's books on the server (docs/protocol.md §15.3, §15.5):
the credit its consumer granted less the items sent, and its idle clock;
kept by ``streams`` for relayed streams and by ``stream_producers`` for
in-process ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipc_protocol.streams import Credit

if TYPE_CHECKING:
    import asyncio

    from .connection import ServerConnection
    from .handlers import HandlerCall

__all__ = ["StreamState"]


class StreamState:
    """One open stream: its credit and its idle clock (§15.3, §15.5).
    ``key`` is the forwarding table's for a relayed stream; ``call`` the
    handler call of an in-process one."""

    __slots__ = ("credit", "idle_s", "last", "key", "call", "waiter", "paused")

    def __init__(self, window: int, idle_s: float | None, now: float) -> None:
        self.credit = Credit(window)
        self.idle_s = idle_s
        self.last = now  # the latest item, or grant after a stall
        self.key: tuple[ServerConnection, str] | None = None
        self.call: HandlerCall | None = None
        self.waiter: asyncio.Future[None] | None = None  # an in-process producer waiting for credit
        self.paused = False  # an in-process producer waiting for its consumer's connection to drain

    def granted(self, n: int, now: float) -> bool:
        """Add ``n`` credits; False past the maximum. A grant to a stalled
        producer restarts its idle clock (it was the consumer's turn)."""
        if self.credit.available == 0:
            self.last = now
        if not self.credit.grant(n):
            return False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True
