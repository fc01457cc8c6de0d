"""Which replayed rows of the queue file the socket has taken (docs/resilience.md
§4, "Persistence"). A persisted message is deleted from the file only once
the kernel has its bytes, as the Node client does in its write callback:
deleted as soon as it was handed to asyncio's transport, a message still in
the transport's buffer (a reader that stopped reading) was lost to a kill.

asyncio says nothing when its buffer empties, so the replay asks
(``ClientConnection.taken()``) as it writes and waits for turns, and every
``SETTLE_EVERY_S`` after it while rows are left; a clean close (disconnect())
wrote them all. A row whose connection was lost first stays on disk, sent
again by the next load: at least once.
"""

from __future__ import annotations

from collections import deque

from .connection import ClientConnection

__all__ = ["Unwritten", "SETTLE_EVERY_S", "SETTLE_BATCH"]

# How often the rows left after a replay are checked until the buffer drains.
SETTLE_EVERY_S = 0.01
# A long replay that never waits deletes its taken rows at least this often,
# so a kill mid-replay re-sends few (the deletes go in one statement).
SETTLE_BATCH = 256


class Unwritten:
    """The rows written to one connection, each with the connection's
    ``accepted`` count at its end, oldest first."""

    __slots__ = ("conn", "rows")

    def __init__(self) -> None:
        self.conn: ClientConnection | None = None
        self.rows: deque[tuple[int, int]] = deque()

    def add(self, conn: ClientConnection, store_id: int) -> None:
        if conn is not self.conn:  # a new connection: the last one's rows stay on disk
            self.conn = conn
            self.rows.clear()
        self.rows.append((conn.accepted, store_id))

    def pending(self, conn: ClientConnection) -> int:
        return len(self.rows) if conn is self.conn else 0

    def taken(self, conn: ClientConnection, closed_cleanly: bool = False) -> list[int]:
        """The rows whose bytes ``conn`` handed to the kernel: all of them
        once it closed cleanly; none once it is closing otherwise (a lost
        transport drops its buffer, so its count says nothing)."""
        if conn is not self.conn or not self.rows:
            return []
        if closed_cleanly:
            upto = conn.accepted
        elif conn.is_open:
            upto = conn.taken()
        else:
            return []
        rows, out = self.rows, []
        while rows and rows[0][0] <= upto:
            out.append(rows.popleft()[1])
        return out

    def clear(self) -> None:
        self.conn = None
        self.rows.clear()
