"""The rules of a client's options, checked when the client is made, the
same rules as Node's (js-client/lib/options.js) with Python's split: a
value of the wrong type (a string, a bool for a number) is a ``TypeError``,
a number out of range (NaN and infinities among them) a ``ValueError``;
both name the option."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["as_number", "check_seconds", "check_client_options"]


def _shown(value: object) -> str:
    return f"{value!r:.40}"


def as_number(name: str, value: object, expected: str) -> float:
    """``value`` as a float; a TypeError saying ``name`` must be ``expected``
    when it is not a number (a bool is not)."""
    if value.__class__ is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {_shown(value)}")
    try:
        return float(value)
    except OverflowError:  # an int past a double's range
        return math.inf


def check_seconds(name: str, value: object, *, minimum: float = 0.0, exclusive: bool = False) -> float:
    """A finite number of seconds, at least ``minimum`` (over it, when ``exclusive``)."""
    expected = f"a finite number of seconds {'>' if exclusive else '>='} {minimum:g}"
    seconds = as_number(name, value, expected)
    if not (math.isfinite(seconds) and (seconds > minimum if exclusive else seconds >= minimum)):
        raise ValueError(f"{name} must be {expected}, got {_shown(value)}")
    return seconds


def check_client_options(request_timeout: Any, max_concurrent_handlers: Any) -> None:
    """The options of :class:`IPCClient` that its connections do not read
    (those are :class:`ConnectOptions`' and :class:`Backoff`'s)."""
    check_seconds("request_timeout", request_timeout, exclusive=True)
    if max_concurrent_handlers < 1:
        raise ValueError("max_concurrent_handlers must be >= 1")
