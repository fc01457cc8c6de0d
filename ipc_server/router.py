"""Who answers a request (docs/protocol.md §6.1, §7): in-process handlers
first, then responder clients, chosen round robin among the least busy.

Pure bookkeeping: no I/O. The server asks ``HandlerRegistry.find`` and then
``ResponderTable.pick``; the load of a responder is whatever the caller's
``load`` function says (its requests in flight).
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ipc_client.at_once import makes_generator, never_waits
from ipc_protocol.channels import is_pattern, is_reserved, validate_channel
from ipc_protocol.codes import ErrorCode

from .sublist import Sublist, pattern_tokens

__all__ = ["Handler", "HandlerRegistry", "ResponderTable", "target_problem"]

T = TypeVar("T", bound=Hashable)

_NONE: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Handler:
    """A handler registered in the server process."""

    channel: str
    fn: Callable[..., Any]
    is_async: bool
    app_id: str | None = None  # None: answers every app
    never_waits: bool = False  # an async def that never awaits: run at once on 3.11 (ipc_client.at_once)
    generates: bool = False  # a generator function: called on the loop, no thread (ipc_client.at_once.makes_generator)


class HandlerRegistry:
    """Handlers by channel or pattern, optionally limited to one app. Pattern
    handlers are indexed by pattern, each with its registration number."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str | None, str], Handler] = {}
        self._patterns: list[Handler] = []  # registration order
        # app (None: every app) -> channel or pattern -> handler, in registration
        # order: what ``services`` and ``describe`` list, a page at a time
        self._by_app: dict[str | None, dict[str, Handler]] = {}
        self._index: Sublist[list[tuple[int, Handler]]] = Sublist()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)

    def add(self, channel: str, fn: Callable[..., Any], app_id: str | None = None) -> Handler:
        if self.get(channel, app_id) is not None:
            raise ValueError(f"a handler is already registered for {channel!r}")
        handler = Handler(channel, fn, inspect.iscoroutinefunction(fn) or _is_async_callable(fn), app_id, never_waits(fn), makes_generator(fn))
        if is_pattern(channel):
            self._patterns.append(handler)
            entries = self._index.get(channel)
            if entries is None:
                entries = []
                self._index.insert(channel, entries)
            entries.append((next(self._seq), handler))
        else:
            self._exact[(app_id, channel)] = handler
        self._by_app.setdefault(app_id, {})[channel] = handler
        return handler

    def get(self, channel: str, app_id: str | None = None) -> Handler | None:
        if is_pattern(channel):
            return next((h for h in self._patterns if h.channel == channel and h.app_id == app_id), None)
        return self._exact.get((app_id, channel))

    def remove(self, channel: str, app_id: str | None = None) -> bool:
        handler = self.get(channel, app_id)
        if handler is None:
            return False
        if is_pattern(channel):
            self._patterns.remove(handler)
            entries = self._index.get(channel)
            assert entries is not None
            entries[:] = [e for e in entries if e[1] is not handler]
            if not entries:
                self._index.remove(channel)
        else:
            del self._exact[(app_id, channel)]
        own = self._by_app[app_id]
        del own[channel]
        if not own:
            del self._by_app[app_id]
        return True

    def find(self, app_id: str, channel: str) -> Handler | None:
        """The handler for a request: exact (this app, then any app), then patterns."""
        exact = self._exact
        handler = exact.get((app_id, channel)) or exact.get((None, channel))
        if handler is not None or not self._patterns:
            return handler
        best: tuple[int, Handler] | None = None
        for entries in self._index.match(channel):
            # in registration order: the first open to this app is this pattern's candidate
            for seq, h in entries:
                if h.app_id is None or h.app_id == app_id:
                    if best is None or seq < best[0]:
                        best = (seq, h)
                    break
        return best[1] if best is not None else None

    def serving(self, app_id: str, channel: str) -> Handler | None:
        """The handler ``find`` would run for ``channel`` of ``app_id``; for a
        pattern, the one of its registrations ``find`` picks when this pattern
        matches (the earliest open to the app), so ``describe`` publishes the
        schema of the handler that answers."""
        if not is_pattern(channel):
            return self.find(app_id, channel)
        entries = self._index.get(channel) or ()
        return next((h for _, h in entries if h.app_id is None or h.app_id == app_id), None)

    def all(self) -> list[Handler]:
        """Every handler, exact ones first (a cluster node's interest, docs/cluster.md)."""
        return [*self._exact.values(), *self._patterns]

    def of_app(self, app_id: str | None) -> Mapping[str, Handler]:
        """The handlers registered for ``app_id`` alone (None: those for every
        app), by channel or pattern in registration order; not to be changed."""
        return self._by_app.get(app_id, _NONE)

    def channels(self, app_id: str) -> list[str]:
        out = [ch for (app, ch) in self._exact if app in (None, app_id)]
        out += [h.channel for h in self._patterns if h.app_id in (None, app_id)]
        return out


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)
    return inspect.iscoroutinefunction(call)


class ResponderTable(Generic[T]):
    """Responder registrations of one app. Patterns are indexed with the
    number of their registration: the earliest registered of the matches
    serves (§7.2), found without a scan of every pattern."""

    __slots__ = ("_exact", "_patterns", "_pattern_members", "_seq", "_next", "tokens")

    def __init__(self) -> None:
        self._exact: dict[str, list[T]] = {}
        # pattern -> (its registration number, the pattern, its responders)
        self._patterns: Sublist[tuple[int, str, list[T]]] = Sublist()
        # The index's patterns in registration order, with the same lists: the
        # index matches, this lists (``counts``, a page) without walking it.
        self._pattern_members: dict[str, list[T]] = {}
        self._seq = itertools.count()
        self._next: dict[str, int] = {}
        self.tokens = 0  # of the distinct patterns in the index, as SubscriptionTable's

    def _members(self, pattern: str) -> list[T] | None:
        if is_pattern(pattern):
            entry = self._patterns.get(pattern)
            return entry[2] if entry is not None else None
        return self._exact.get(pattern)

    def add(self, pattern: str, responder: T) -> bool:
        if is_pattern(pattern):  # one walk of the index for a new pattern
            first = [responder]
            entry = self._patterns.insert(pattern, (next(self._seq), pattern, first), replace=False)
            if entry is None:
                self._pattern_members[pattern] = first
                self.tokens += pattern_tokens(pattern)
                return True
            members = entry[2]
        else:
            members = self._exact.setdefault(pattern, [])
        if responder in members:
            return False
        members.append(responder)
        return True

    def indexed(self, pattern: str) -> bool:
        """Whether ``pattern`` is in the index already (one responder or more)."""
        return pattern in self._pattern_members

    def remove(self, pattern: str, responder: T) -> bool:
        members = self._members(pattern)
        if not members or responder not in members:
            return False
        members.remove(responder)
        if not members:
            if is_pattern(pattern):
                self._patterns.remove(pattern)
                del self._pattern_members[pattern]
                self.tokens -= pattern_tokens(pattern)
            else:
                del self._exact[pattern]
            self._next.pop(pattern, None)
        return True

    def count(self, pattern: str) -> int:
        return len(self._members(pattern) or ())

    def find(self, channel: str) -> tuple[str, list[T]] | None:
        """The registration that serves ``channel``: exact first, then patterns in order."""
        members = self._exact.get(channel)
        if members:
            return channel, members
        if not self._patterns:
            return None
        matched = self._patterns.match(channel)
        if not matched:
            return None
        _, pattern, members = min(matched) if len(matched) > 1 else matched[0]  # numbers are unique
        return pattern, members

    def pick(self, channel: str, load: Callable[[T], int]) -> T | None:
        """Round robin among the responders with the fewest requests in flight."""
        found = self.find(channel)
        if found is None:
            return None
        pattern, members = found
        if len(members) == 1:
            return members[0]
        return self._choose(pattern, members, load)

    def pick_exact(self, channel: str, load: Callable[[T], int]) -> T | None:
        """As :meth:`pick`, among the registrations of ``channel`` itself only."""
        members = self._exact.get(channel)
        return self._choose(channel, members, load) if members else None

    def _choose(self, pattern: str, members: list[T], load: Callable[[T], int]) -> T:
        n = len(members)
        if n == 1:
            return members[0]
        start = self._next.get(pattern, 0) % n
        best_i, best_load = start, load(members[start])
        for step in range(1, n):
            if best_load == 0:
                break
            i = (start + step) % n
            current = load(members[i])
            if current < best_load:
                best_i, best_load = i, current
        self._next[pattern] = best_i + 1
        return members[best_i]

    def counts(self) -> dict[str, int]:
        """Responders per channel, then per pattern, each in registration order."""
        out = {k: len(v) for k, v in self._exact.items()}
        out.update((pattern, len(members)) for pattern, members in self._pattern_members.items())
        return out

    def listed(self) -> tuple[Mapping[str, list[T]], Mapping[str, list[T]]]:
        """The registrations, exact channels and patterns, each by name in
        registration order (pages of ``services``, ``describe``); not to be changed."""
        return self._exact, self._pattern_members

    def __len__(self) -> int:
        return len(self._exact) + len(self._pattern_members)


@functools.lru_cache(maxsize=4096)
def target_problem(channel: str) -> tuple[ErrorCode, str] | None:
    """Why ``channel`` cannot be published or requested on (§4.3, §4.4), or None.
    Cached: the same few channels carry nearly all the traffic."""
    try:
        validate_channel(channel)
    except ValueError as exc:
        return ErrorCode.BAD_MESSAGE, str(exc)
    if is_reserved(channel):
        return ErrorCode.FORBIDDEN, f"channel {channel!r} is reserved for the server"
    return None
