"""A connection's requests in flight and the pause of its reading
(docs/protocol.md §12): at the limit the server stops reading it, so a
client that sends faster than it is answered waits in its own socket
buffer instead of the server's memory; at half the limit reading resumes.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["InflightLimit"]


class InflightLimit:
    """Requests a connection sent that are being answered (handlers or forwarded).

    Args:
        limit: pause at this many; None: never.
        pause, resume: stop and restart reading the connection's socket.
    """

    __slots__ = ("count", "paused", "_limit", "_pause", "_resume")

    def __init__(self, limit: int | None, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self.count = 0
        self.paused = False
        self._limit = limit
        self._pause = pause
        self._resume = resume

    def started(self) -> None:
        self.count += 1
        if self._limit is not None and self.count >= self._limit and not self.paused:
            self.paused = True
            self._pause()

    def finished(self) -> None:
        self.count -= 1
        if self.paused and self.count <= (self._limit or 0) // 2:
            self.paused = False
            self._resume()

    def __repr__(self) -> str:
        return f"<InflightLimit {self.count}/{self._limit}{' paused' if self.paused else ''}>"
