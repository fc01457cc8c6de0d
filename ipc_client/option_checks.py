"""The rules of a client's options, checked when the client is made, the
same rules as Node's (js-client/lib/options.js) with Python's split: a
value of the wrong type (a string, a bool for a number) is a ``TypeError``,
a number out of range (NaN and infinities among them) a ``ValueError``;
both name the option. Node throws a TypeError for both, and a RangeError
for contradictory values (``max_delay`` under ``initial_delay``), which
are ``ValueError`` here."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["as_number", "check_bool", "check_callable", "check_count", "check_seconds", "check_port", "check_client_options", "check_pool_options"]


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


def check_seconds(name: str, value: object, *, minimum: float = 0.0, exclusive: bool = False, none: bool = False) -> float | None:
    """A finite number of seconds, at least ``minimum`` (over it, when
    ``exclusive``); ``None`` too when ``none`` (as Node's ``null``: off)."""
    if none and value is None:
        return None
    expected = f"a finite number of seconds {'>' if exclusive else '>='} {minimum:g}{' or None' if none else ''}"
    seconds = as_number(name, value, expected)
    if not (math.isfinite(seconds) and (seconds > minimum if exclusive else seconds >= minimum)):
        raise ValueError(f"{name} must be {expected}, got {_shown(value)}")
    return seconds


def check_count(name: str, value: object, *, minimum: int = 0, none: bool = False, infinite: bool = False) -> None:
    """An integer, at least ``minimum``; ``None`` too when ``none``, ``math.inf``
    when ``infinite`` (as Node's Infinity). A number that is not an integer
    (``1.5``, ``nan``) is a ValueError, as for ``max_frame_size`` and
    ``cache_max_entries``."""
    if none and value is None:
        return
    expected = " or ".join([f"an integer >= {minimum}"] + ["math.inf"] * infinite + ["None"] * none)
    number = as_number(name, value, expected)
    if infinite and number == math.inf:
        return
    if not isinstance(value, numbers.Integral) or number < minimum:
        raise ValueError(f"{name} must be {expected}, got {_shown(value)}")


def check_port(value: object) -> None:
    """An integer 1..65535; its decimal string too (read from the environment,
    say), which asyncio takes and Node converts."""
    expected = "an integer between 1 and 65535"
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    port = as_number("port", value, expected)
    if not isinstance(value, numbers.Integral) or not 1 <= port <= 65535:
        raise ValueError(f"port must be {expected}, got {_shown(value)}")


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {_shown(value)}")


def check_callable(name: str, value: object) -> None:
    """A function (any callable) or None, as Node's function or null."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, got {type(value).__name__} {_shown(value)}")


def check_client_options(request_timeout: Any, max_concurrent_handlers: Any, expose_stacks: Any, max_held_messages: Any = math.inf) -> None:
    """The options of :class:`IPCClient` that its connections do not read
    (those are :class:`ConnectOptions`' and :class:`Backoff`'s)."""
    check_seconds("request_timeout", request_timeout, exclusive=True)
    check_count("max_concurrent_handlers", max_concurrent_handlers, minimum=1, infinite=True)
    check_count("max_held_messages", max_held_messages, minimum=1, infinite=True)
    check_bool("expose_stacks", expose_stacks)


def check_pool_options(min_connections: Any, max_connections: Any, acquire_timeout: Any, idle_timeout: Any) -> None:
    """A pool's own options (a load-balanced client's pools' too), by the
    rules above, as Node's pool checks them: a NaN ``acquire_timeout`` made
    a waiter wait for ever, a NaN ``idle_timeout`` closed no idle member."""
    check_count("min_connections", min_connections)
    check_count("max_connections", max_connections, minimum=1)
    if min_connections > max_connections:
        raise ValueError(f"min_connections must be <= max_connections, got {min_connections} > {max_connections}")
    check_seconds("acquire_timeout", acquire_timeout, exclusive=True)
    check_seconds("idle_timeout", idle_timeout, exclusive=True, none=True)
