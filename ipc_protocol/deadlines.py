"""Many deadlines on one timer.

Nearly every request is answered long before its deadline, so a loop timer
per request (``call_later`` + ``cancel``) is mostly wasted work; here a
deadline is an entry in our own heap and one timer is armed for the earliest.
Answered entries are discarded from the live table and left in the heap,
emptied: an entry drops its key when it is discarded, so what the key holds
(a server's handler call: the request, its task) is freed then, a little at
a time, rather than all at once when the heap is rebuilt (which made the
request that triggered it slow). The heap is rebuilt from the live table
when stale entries outnumber live ones, so memory stays proportional to
what is in flight.

Sans-I/O: the owner injects its clock and its way to schedule a callback
(an asyncio loop's ``time`` and ``call_at``).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Deadlines", "ASYNCIO_RESOLUTION_S"]

K = TypeVar("K", bound=Hashable)

# The ``resolution`` of an asyncio loop's timers: one tick of the monotonic
# clock, as asyncio may run a timer that much early.
ASYNCIO_RESOLUTION_S = time.get_clock_info("monotonic").resolution

# The key slot of a discarded entry.
_GONE: Any = object()


class _Timer(Protocol):
    def cancel(self) -> None: ...


class Deadlines(Generic[K]):
    """Calls ``on_expired(key)`` once for each key whose deadline passes
    before it is discarded.

    Args:
        on_expired: called with each expired key, earliest deadline first.
        clock: the current time, in the unit of the deadlines.
        call_at: schedules a callback at a time of ``clock``; returns a
            handle with ``cancel()``.
        resolution: how early the scheduler may run a callback (asyncio:
            one tick of the monotonic clock); a deadline that close counts
            as passed.
    """

    def __init__(
        self,
        on_expired: Callable[[K], None],
        *,
        clock: Callable[[], float],
        call_at: Callable[[float, Callable[[], None]], _Timer],
        resolution: float = 0.0,
    ) -> None:
        self._on_expired = on_expired
        self._clock = clock
        self._call_at = call_at
        self._resolution = resolution
        # One entry per deadline: [when, sequence, key], the key replaced by
        # _GONE when discarded. The sequence breaks ties, so keys are never
        # compared.
        self._live: dict[K, list[Any]] = {}
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._timer: _Timer | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def add(self, key: K, when: float) -> None:
        """Watch ``key`` until ``when``; adding a live key again replaces its deadline."""
        entry = [when, next(self._seq), key]
        old = self._live.get(key)
        if old is not None:
            old[2] = _GONE
        self._live[key] = entry
        heap = self._heap
        if len(heap) > 2 * len(self._live) + 64:
            heap = self._heap = list(self._live.values())
            heapq.heapify(heap)
        else:
            heapq.heappush(heap, entry)
        if self._timer is None or when < self._timer_at:
            self._arm(when)

    def discard(self, key: K) -> None:
        """Stop watching ``key`` (answered, or failed some other way)."""
        entry = self._live.pop(key, None)
        if entry is not None:
            entry[2] = _GONE

    def clear(self) -> None:
        self._live.clear()
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer = None
        heap, live = self._heap, self._live
        # A scheduler may run the timer early (asyncio by a clock tick, uvloop
        # by up to half a millisecond): what it was armed for is due, or the
        # timer would re-arm and spin until the clock catches up.
        due = max(self._clock() + self._resolution, self._timer_at)
        expired = []
        while heap:
            entry = heap[0]
            when, _, key = entry
            if key is _GONE:  # answered, or re-added with another deadline
                heapq.heappop(heap)
            elif when <= due:
                heapq.heappop(heap)
                del live[key]
                expired.append(key)
            else:
                self._arm(when)
                break
        failure: Exception | None = None
        for key in expired:
            try:
                self._on_expired(key)
            except Exception as exc:  # the others still expire; the first failure is raised after
                failure = failure or exc
        if failure is not None:
            raise failure
