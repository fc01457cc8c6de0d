"""A call's ``timeout`` argument, checked where the call is made.

Every call that takes a timeout reads it here, so a value that is not one
fails at once with a ``TypeError`` or ``ValueError`` naming it (as Node's
``checkTimeout``, js-client/lib/call_options.js), instead of an error from
deep inside (``int(nan)``, a comparison of a string) or, for a one-way
message, no error at all. ``None`` keeps meaning the default.
"""

from __future__ import annotations

import math
import numbers
from typing import overload

from ipc_protocol import RequestTimeout

__all__ = ["check_timeout", "send_deadline", "seconds_text"]


@overload
def check_timeout(value: object, default: float, name: str = "timeout") -> float: ...


@overload
def check_timeout(value: object, default: None = None, name: str = "timeout") -> float | None: ...


def check_timeout(value: object, default: float | None = None, name: str = "timeout") -> float | None:
    """``value`` in seconds, ``default`` when it is None. TypeError when it is
    not a number (a string, a bool), ValueError when it is NaN or infinite.
    What a finite number means (zero or less: the deadline has passed) is
    the call's business."""
    if value is None:
        return default
    if value.__class__ is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a number of seconds (None: the default), got {type(value).__name__} {value!r:.40}")
    try:
        seconds = float(value)
    except OverflowError:  # an int past a double's range
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be a finite number of seconds (None: the default), got {value!r:.40}")
    return seconds


def send_deadline(now: float, value: object, default: float, kind: str, channel: str) -> float:
    """The loop time by which a message must be sent (``now`` plus the
    checked timeout). A timeout of zero or less has passed already, so the
    message is not sent: ``RequestTimeout``, as for a request."""
    if value is None:  # most calls: the client's default, checked when it was made
        return now + default
    seconds = check_timeout(value, default)
    if seconds <= 0:
        raise RequestTimeout(f"{kind} on {channel!r} timed out before it was sent (timeout {seconds:g} s)")
    return now + seconds


def seconds_text(seconds: float) -> str:
    """A timeout as its caller gave it, for an error message: to the
    millisecond, no exponent and no trailing zeros (0.3, 1, 2.5, 3600),
    as Node names its milliseconds; ``:g`` below a millisecond."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{seconds:g}" if text in ("0", "-0") else text
