"""The subscription table of one app: who receives a publish on a channel.

Pure bookkeeping, no I/O. Exact channels are a dict lookup; patterns live in
a token index (``sublist.Sublist``), so a cache miss costs the channel's
tokens, not a scan of every pattern. The per-channel result (each subscriber
once, however many of its patterns match) is cached until the table changes
(docs/protocol.md §5.3).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator
from itertools import chain, islice
from typing import Generic, TypeVar, Union

from ipc_protocol.channels import is_pattern

from .sublist import Sublist, pattern_tokens

__all__ = ["SubscriptionTable"]

T = TypeVar("T", bound=Hashable)

_CACHE_LIMIT = 10_000


class _Many(set):  # type: ignore[type-arg]
    """The subscribers of a channel or pattern once it has had two (it stays a
    set as they leave, until it is empty). A first subscriber is stored bare:
    most patterns have one, and a set would be most of a pattern's memory."""

    __slots__ = ()


_Members = Union[T, _Many]


def _has(members: object, subscriber: object) -> bool:
    return subscriber in members if type(members) is _Many else members == subscriber


class SubscriptionTable(Generic[T]):
    __slots__ = ("_exact", "_patterns", "_pattern_members", "_cache", "tokens")

    def __init__(self) -> None:
        self._exact: dict[str, _Members[T]] = {}
        self._patterns: Sublist[_Members[T]] = Sublist()
        # The index's patterns as they came, with the same members: the index
        # matches, this lists (``counts``, ``page``) without walking the index,
        # which builds a name per node and holds a level's every child at once.
        self._pattern_members: dict[str, _Members[T]] = {}
        self._cache: dict[str, tuple[T, ...]] = {}
        # The tokens of the distinct patterns in the index: a match walks at
        # most this many nodes, held to ``max_pattern_tokens_per_app`` (§12).
        self.tokens = 0

    def add(self, pattern: str, subscriber: T) -> bool:
        """Subscribe; return False when it was already subscribed to ``pattern``."""
        if is_pattern(pattern):
            # one walk of the index for a new pattern, the usual case
            members = self._patterns.insert(pattern, subscriber, replace=False)
            if members is None:
                self._pattern_members[pattern] = subscriber
                self.tokens += pattern_tokens(pattern)
            else:
                if _has(members, subscriber):
                    return False
                if type(members) is _Many:
                    members.add(subscriber)
                else:
                    self._pattern_members[pattern] = many = _Many((members, subscriber))
                    self._patterns.insert(pattern, many)
        else:
            members = self._exact.get(pattern)
            if members is None:
                self._exact[pattern] = subscriber
            elif _has(members, subscriber):
                return False
            elif type(members) is _Many:
                members.add(subscriber)
            else:
                self._exact[pattern] = _Many((members, subscriber))
        if self._cache:
            self._cache.clear()
        return True

    def indexed(self, pattern: str) -> bool:
        """Whether ``pattern`` is in the index already (one subscriber or more)."""
        return pattern in self._pattern_members

    def remove(self, pattern: str, subscriber: T) -> bool:
        if is_pattern(pattern):
            # one walk when ``subscriber`` was the pattern's only subscriber
            members = self._patterns.remove(pattern, only=subscriber)
            if members is None or not _has(members, subscriber):
                return False
            if type(members) is _Many:
                members.discard(subscriber)
                if not members:
                    self._patterns.remove(pattern)
                    del self._pattern_members[pattern]
                    self.tokens -= pattern_tokens(pattern)
            else:  # its only subscriber: the index forgot it
                del self._pattern_members[pattern]
                self.tokens -= pattern_tokens(pattern)
        else:
            members = self._exact.get(pattern)
            if members is None or not _has(members, subscriber):
                return False
            if type(members) is _Many:
                members.discard(subscriber)
                if not members:
                    del self._exact[pattern]
            else:
                del self._exact[pattern]
        if self._cache:
            self._cache.clear()
        return True

    def remove_all(self, patterns: Collection[str], subscriber: T) -> None:
        """Unsubscribe ``subscriber`` from each of ``patterns`` (a connection
        closing). When it holds a fair share of the app's patterns, one sweep
        of the index costs less than a walk of it per pattern."""
        if len(patterns) * 4 < len(self._patterns):
            for pattern in patterns:
                self.remove(pattern, subscriber)
            return
        for pattern in patterns:
            if not is_pattern(pattern):
                self.remove(pattern, subscriber)
        self._patterns.sweep(lambda members: _without(members, subscriber))
        listed = self._pattern_members
        for pattern in patterns:  # what the sweep forgot (the same members: emptied, or the subscriber alone)
            members = listed.get(pattern)
            if members is not None and (not members if type(members) is _Many else members == subscriber):
                del listed[pattern]
                self.tokens -= pattern_tokens(pattern)
        self._cache.clear()

    def match(self, channel: str) -> tuple[T, ...]:
        """Every subscriber with at least one matching subscription, once."""
        hit = self._cache.get(channel)
        if hit is not None:
            return hit
        exact = self._exact.get(channel)
        matched = self._patterns.match(channel) if self._patterns else ()
        if exact is not None:
            matched = [*matched, exact] if matched else [exact]
        if not matched:
            result: tuple[T, ...] = ()
        elif len(matched) == 1:
            only = matched[0]
            # `type() is` (the fast check) narrows the first branch only; a T is never a _Many (a set is unhashable)
            result = tuple(only) if type(only) is _Many else (only,)  # type: ignore[assignment]
        else:
            found: set[T] = set()
            for members in matched:
                if type(members) is _Many:
                    found |= members
                else:
                    found.add(members)  # type: ignore[arg-type]  # a T, as above
            result = tuple(found)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[channel] = result
        return result

    def counts(self) -> dict[str, int]:
        """Subscriber count per channel or pattern."""
        out = {k: _count(v) for k, v in self._exact.items()}
        out.update((k, _count(v)) for k, v in self._pattern_members.items())
        return out

    def page(self, offset: int, limit: int) -> dict[str, int]:
        """At most ``limit`` entries of :meth:`counts`, from ``offset``, in
        its order (exact channels, then patterns, each as they came): a page
        costs its own entries and a skip of ``offset`` at C speed, not the
        table. The order holds while the table does not change."""
        exact, patterns = self._exact, self._pattern_members
        entries: Iterator[tuple[str, object]]
        if offset < len(exact):
            entries = chain(islice(exact.items(), offset, None), patterns.items())
        else:
            entries = islice(patterns.items(), offset - len(exact), None)
        return {k: _count(v) for k, v in islice(entries, limit)}

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)

    def __repr__(self) -> str:
        return f"<SubscriptionTable exact={len(self._exact)} patterns={len(self._patterns)} cached={len(self._cache)}>"


def _without(members: _Members[T], subscriber: T) -> _Members[T] | None:
    if type(members) is _Many:
        members.discard(subscriber)
        return members or None
    return None if members == subscriber else members


def _count(members: object) -> int:
    return len(members) if type(members) is _Many else 1
