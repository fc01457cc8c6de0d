"""Many deadlines on one loop timer.

A request waiting for its answer needs a deadline, and nearly every request
is answered long before it. A ``call_later`` per request costs a timer
handle, a heap push in the loop and a cancel; here a deadline is a tuple in
our own heap and one loop timer is armed for the earliest. Answered entries
are discarded from the live table and left in the heap; the heap is rebuilt
from the live table when stale entries outnumber live ones, so memory stays
proportional to what is in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable

__all__ = ["Deadlines"]

# asyncio may run a timer up to one clock tick early.
_RESOLUTION = time.get_clock_info("monotonic").resolution


class Deadlines:
    """Calls ``on_expired(key)`` once for each key whose deadline (loop time)
    passes before it is discarded."""

    def __init__(self, on_expired: Callable[[str], None]) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the timer runs on
        self._on_expired = on_expired
        self._live: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def add(self, key: str, when: float) -> None:
        """Watch ``key`` (unique among those live) until ``when``."""
        self._live[key] = when
        heap = self._heap
        if len(heap) > 2 * len(self._live) + 64:
            heap = self._heap = [(w, k) for k, w in self._live.items()]
            heapq.heapify(heap)
        else:
            heapq.heappush(heap, (when, key))
        if self._timer is None or when < self._timer_at:
            self._arm(when)

    def discard(self, key: str) -> None:
        """Stop watching ``key`` (answered, or failed some other way)."""
        self._live.pop(key, None)

    def clear(self) -> None:
        self._live.clear()
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer = None
        heap, live = self._heap, self._live
        assert self._loop is not None
        due = self._loop.time() + _RESOLUTION
        expired = []
        while heap:
            when, key = heap[0]
            if live.get(key) != when:  # answered, or re-added with another deadline
                heapq.heappop(heap)
            elif when <= due:
                heapq.heappop(heap)
                del live[key]
                expired.append(key)
            else:
                self._arm(when)
                break
        for key in expired:
            self._on_expired(key)
