"""The TTL response cache (docs/resilience.md §11): the legacy package's
``cachedRequest`` (seed 001, "Performance Optimization") inside the client.

Opt-in per call (``cache_ttl``); keyed by channel and canonical payload
(:func:`ipc_client.coalescing.request_key`); only successful answers are
stored. Bounded by ``cache_max_entries``: the least recently used entry
leaves first, and an expired one is dropped when it is looked up. Pure
bookkeeping on an injected clock, tested without sockets or sleeping; hits,
misses and the size are kept in the client's metrics.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from ipc_protocol import Message

from .metrics import ClientMetrics

__all__ = ["ResponseCache", "DEFAULT_CACHE_MAX_ENTRIES", "check_cache_ttl"]

DEFAULT_CACHE_MAX_ENTRIES = 1000  # where the legacy package started cleaning up its cache


def check_cache_ttl(ttl: object) -> float:
    """A per-call ``cache_ttl``: a positive number of seconds."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"cache_ttl must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


class ResponseCache:
    """Successful answers by request key, each until its own expiry."""

    def __init__(self, max_entries: int, metrics: ClientMetrics, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
            raise ValueError(f"cache_max_entries must be an integer >= 0 (0 turns caching off), got {max_entries!r}")
        self.max_entries = max_entries
        self._metrics = metrics
        self._clock = clock
        # key -> (expiry on the clock, the response); least recently used first
        self._entries: collections.OrderedDict[str, tuple[float, Message]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Message | None:
        """The stored answer while it is fresh (a hit), else None (a miss)."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self._clock():
                self._entries.move_to_end(key)
                self._metrics.cache_hits += 1
                return entry[1]
            del self._entries[key]
            self._metrics.cache_size = len(self._entries)
        self._metrics.cache_misses += 1
        return None

    def put(self, key: str, reply: Message, ttl: float) -> None:
        """Store a successful answer for ``ttl`` seconds, evicting the least recently used past the bound."""
        if self.max_entries == 0:
            return
        entries = self._entries
        entries[key] = (self._clock() + ttl, reply)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        self._metrics.cache_size = len(entries)

    def clear(self) -> None:
        self._entries.clear()
        self._metrics.cache_size = 0

    def __repr__(self) -> str:
        return f"<ResponseCache {len(self._entries)}/{self.max_entries}>"
