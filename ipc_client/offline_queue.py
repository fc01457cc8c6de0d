"""The offline queue: calls made while the connection is down wait here.

Pure bookkeeping, no I/O and no clock of its own (times are passed in), so it
is tested without sockets or sleeping. Bounded by count and by bytes; highest
priority leaves first, FIFO within a priority; each entry has a deadline.
When full, a named policy decides who loses (docs/resilience.md §4).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ipc_protocol import QueueFull

__all__ = ["OfflineQueue", "QueuedCall", "OverflowPolicy", "DEFAULT_QUEUE_MAX_SIZE", "DEFAULT_QUEUE_MAX_BYTES"]

DEFAULT_QUEUE_MAX_SIZE = 1000
DEFAULT_QUEUE_MAX_BYTES = 8 * 1024 * 1024  # NATS' reconnect buffer size


class OverflowPolicy(StrEnum):
    REJECT = "reject"  # the new call fails with QueueFull
    DROP_OLDEST = "drop_oldest"  # the oldest entry is evicted
    DROP_LOWEST_PRIORITY = "drop_lowest_priority"  # the oldest of the lowest priority is evicted


@dataclass(eq=False)
class QueuedCall:
    """One waiting call. ``waiter`` and ``store_id`` belong to the client."""

    priority: int
    deadline: float
    size: int
    message: Any
    waiter: Any = None  # the caller's future, for requests; None for one-way messages
    store_id: int | None = None
    cause: BaseException | None = None  # a keyed request's resend: the connection loss it was queued again after
    timeout: float | None = None  # a request's own, named if it expires once sent
    seq: int = 0
    queued: bool = field(default=False, repr=False)

    @property
    def one_way(self) -> bool:
        return self.waiter is None


class OfflineQueue:
    def __init__(
        self,
        max_size: int = DEFAULT_QUEUE_MAX_SIZE,
        max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
        overflow: OverflowPolicy | str = OverflowPolicy.REJECT,
    ) -> None:
        if max_size < 0 or max_bytes < 0:
            raise ValueError("queue limits must not be negative")
        self.max_size = max_size
        self.max_bytes = max_bytes
        self.overflow = OverflowPolicy(overflow)
        self.bytes = 0
        self.dropped = 0
        self._seq = 0
        self._count = 0
        # Three lazy heaps over the same entries; removed entries are skipped.
        self._by_priority: list[tuple[int, int, QueuedCall]] = []  # (-priority, seq): next to send
        self._by_lowest: list[tuple[int, int, QueuedCall]] = []  # (priority, seq): next to evict
        self._by_deadline: list[tuple[float, int, QueuedCall]] = []
        self._by_age: dict[int, QueuedCall] = {}  # insertion order = age
        self._priorities: Counter[int] = Counter()

    def __len__(self) -> int:
        return self._count

    def push(self, entry: QueuedCall) -> list[QueuedCall]:
        """Admit ``entry``; return the entries evicted to make room.

        Raises QueueFull when the policy refuses the new entry (``reject``, an
        entry larger than the whole queue, or one of lower priority than
        everything queued under ``drop_lowest_priority``).
        """
        if self.max_size == 0 or entry.size > self.max_bytes:
            raise QueueFull(f"the message ({entry.size} bytes) does not fit in the offline queue")
        evicted: list[QueuedCall] = []
        while self._count >= self.max_size or self.bytes + entry.size > self.max_bytes:
            if self.overflow is OverflowPolicy.REJECT:
                raise QueueFull(f"the offline queue is full ({self._count} messages, {self.bytes} bytes)")
            victim = self._oldest() if self.overflow is OverflowPolicy.DROP_OLDEST else self._lowest()
            if victim is None:  # pragma: no cover - the loop condition implies an entry
                raise QueueFull("the offline queue is full")
            if self.overflow is OverflowPolicy.DROP_LOWEST_PRIORITY and victim.priority > entry.priority:
                self._restore(evicted)
                raise QueueFull(f"the offline queue is full of messages with priority above {entry.priority}")
            self._remove(victim)
            evicted.append(victim)
        self.dropped += len(evicted)
        self._seq += 1
        entry.seq = self._seq
        entry.queued = True
        self._count += 1
        self.bytes += entry.size
        self._priorities[entry.priority] += 1
        heapq.heappush(self._by_priority, (-entry.priority, entry.seq, entry))
        heapq.heappush(self._by_lowest, (entry.priority, entry.seq, entry))
        heapq.heappush(self._by_deadline, (entry.deadline, entry.seq, entry))
        self._by_age[entry.seq] = entry
        return evicted

    def retract(self, entry: QueuedCall, evicted: list[QueuedCall]) -> None:
        """Undo a ``push`` its caller could not complete (the queue file
        refused the message): ``entry`` leaves, the entries it evicted return."""
        if entry.queued:
            self._remove(entry)
        self._restore(evicted)
        self.dropped -= len(evicted)

    def pop(self) -> QueuedCall | None:
        """The next entry to send: highest priority, then oldest."""
        heap = self._by_priority
        while heap:
            entry = heapq.heappop(heap)[2]
            if entry.queued:
                self._remove(entry)
                return entry
        return None

    def discard(self, entry: QueuedCall) -> bool:
        """Take ``entry`` out (its caller gave up); False if it was not queued."""
        if not entry.queued:
            return False
        self._remove(entry)
        return True

    def expire(self, now: float) -> list[QueuedCall]:
        """Remove and return every entry whose deadline is at or before ``now``."""
        expired = []
        heap = self._by_deadline
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)[2]
            if entry.queued:
                self._remove(entry)
                expired.append(entry)
        return expired

    def next_deadline(self) -> float | None:
        heap = self._by_deadline
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def drain(self) -> list[QueuedCall]:
        """Remove and return everything, in sending order."""
        out = []
        while (entry := self.pop()) is not None:
            out.append(entry)
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "size": self._count,
            "bytes": self.bytes,
            "max_size": self.max_size,
            "max_bytes": self.max_bytes,
            "dropped": self.dropped,
            "by_priority": {p: n for p, n in sorted(self._priorities.items(), reverse=True) if n},
        }

    # -- internals -------------------------------------------------------------

    def _remove(self, entry: QueuedCall) -> None:
        entry.queued = False
        self._count -= 1
        self.bytes -= entry.size
        self._priorities[entry.priority] -= 1
        if not self._priorities[entry.priority]:
            del self._priorities[entry.priority]
        self._by_age.pop(entry.seq, None)
        if self._count == 0:  # drop the dead heap entries in one go
            self._by_priority.clear()
            self._by_lowest.clear()
            self._by_deadline.clear()

    def _oldest(self) -> QueuedCall | None:
        return next(iter(self._by_age.values()), None)

    def _lowest(self) -> QueuedCall | None:
        heap = self._by_lowest
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def _restore(self, entries: list[QueuedCall]) -> None:
        """Put back entries evicted for a push that was then refused."""
        for entry in entries:
            entry.queued = True
            self._count += 1
            self.bytes += entry.size
            self._priorities[entry.priority] += 1
            self._by_age[entry.seq] = entry
            heapq.heappush(self._by_priority, (-entry.priority, entry.seq, entry))
            heapq.heappush(self._by_lowest, (entry.priority, entry.seq, entry))
            heapq.heappush(self._by_deadline, (entry.deadline, entry.seq, entry))
        self._by_age = dict(sorted(self._by_age.items()))
