"""The subscription table of one app: who receives a publish on a channel.

Pure bookkeeping, no I/O. Exact channels are a dict lookup; patterns are
scanned only on a cache miss, and the per-channel result (each subscriber
once, however many of its patterns match) is cached until the table changes
(docs/protocol.md §5.3).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from ipc_protocol.channels import is_pattern, pattern_matches

__all__ = ["SubscriptionTable"]

T = TypeVar("T", bound=Hashable)

_CACHE_LIMIT = 10_000


class SubscriptionTable(Generic[T]):
    __slots__ = ("_exact", "_patterns", "_cache")

    def __init__(self) -> None:
        self._exact: dict[str, set[T]] = {}
        self._patterns: dict[str, set[T]] = {}
        self._cache: dict[str, tuple[T, ...]] = {}

    def add(self, pattern: str, subscriber: T) -> bool:
        """Subscribe; return False when it was already subscribed to ``pattern``."""
        table = self._patterns if is_pattern(pattern) else self._exact
        members = table.setdefault(pattern, set())
        if subscriber in members:
            return False
        members.add(subscriber)
        self._cache.clear()
        return True

    def remove(self, pattern: str, subscriber: T) -> bool:
        table = self._patterns if is_pattern(pattern) else self._exact
        members = table.get(pattern)
        if not members or subscriber not in members:
            return False
        members.discard(subscriber)
        if not members:
            del table[pattern]
        self._cache.clear()
        return True

    def match(self, channel: str) -> tuple[T, ...]:
        """Every subscriber with at least one matching subscription, once."""
        hit = self._cache.get(channel)
        if hit is not None:
            return hit
        found: set[T] = set(self._exact.get(channel, ()))
        for pattern, members in self._patterns.items():
            if pattern_matches(pattern, channel):
                found |= members
        result = tuple(found)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[channel] = result
        return result

    def counts(self) -> dict[str, int]:
        """Subscriber count per channel or pattern."""
        out = {k: len(v) for k, v in self._exact.items()}
        out.update({k: len(v) for k, v in self._patterns.items()})
        return out

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)

    def __repr__(self) -> str:
        return f"<SubscriptionTable exact={len(self._exact)} patterns={len(self._patterns)} cached={len(self._cache)}>"
