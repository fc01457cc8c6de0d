"""Handler sameness without hashing: a subscription holds each handler once
by equality, as ``subscribe()`` compares them (a bound method is a new
object at each access, equal to the last), and a handler need not be
hashable (a dataclass instance with ``__call__`` defines ``__eq__`` and
so has no hash). Nothing here raises: a handler's type never breaks the
delivery of a publish, which runs inside the connection's reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["each_once", "same"]


def same(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """Whether ``a`` and ``b`` are one handler: identical, or equal (an
    ``__eq__`` that raises, or answers what is no bool, counts as not equal)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a handler's own __eq__: not the same
        return False


def each_once(lists: Sequence[Sequence[Callable[..., Any]]]) -> list[Callable[..., Any]]:
    """The handlers of ``lists`` (one per matching pattern, each already
    without repeats), each once, in order: by hash when all have one, else
    by comparison (quadratic, but only when the subscriptions change)."""
    if len(lists) == 1:
        return list(lists[0])
    try:
        return list(dict.fromkeys(h for hs in lists for h in hs))
    except Exception:  # noqa: BLE001 - unhashable, or a __hash__/__eq__ that raises
        pass
    once: list[Callable[..., Any]] = []
    for hs in lists:
        for h in hs:
            if not any(same(h, seen) for seen in once):
                once.append(h)
    return once
