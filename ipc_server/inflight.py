"""A connection's requests in flight and the pause of its reading
(docs/protocol.md §12): at the limit the server stops reading it, so a
client that sends faster than it is answered waits in its own socket
buffer instead of the server's memory; at half the limit reading resumes.
The frames of the read that reached the limit wait as well (``deferred``,
dispatched first on resuming: ``flow_control``), so the limit holds exactly.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["InflightLimit", "Reader"]


class Reader(Protocol):
    """What the limit pauses: the connection's reading of its socket."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class InflightLimit:
    """Requests a connection sent that are being answered (handlers or forwarded).

    Args:
        limit: pause at this many; None: never.
        reader: whose reading stops and restarts (the connection itself: no
            callbacks kept per connection).
    """

    __slots__ = ("count", "paused", "deferred", "_limit", "_reader")

    def __init__(self, limit: int | None, reader: Reader) -> None:
        self.count = 0
        self.paused = False
        self.deferred: list[bytes] | None = None  # frames read, not yet dispatched
        self._limit = limit
        self._reader = reader

    def started(self) -> None:
        self.count += 1
        if self._limit is not None and self.count >= self._limit and not self.paused:
            self.paused = True
            self._reader.pause_reading()

    def finished(self) -> None:
        self.count -= 1
        if self.paused and self.count <= (self._limit or 0) // 2:
            self.paused = False
            self._reader.resume_reading()

    def __repr__(self) -> str:
        return f"<InflightLimit {self.count}/{self._limit}{' paused' if self.paused else ''}>"
