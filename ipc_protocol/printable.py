"""Text a peer chose (an app id, a connection id, a channel, an error's
text), made safe for a log line or a terminal (docs/operations.md §4)."""

from __future__ import annotations

__all__ = ["printable"]


def printable(value: object) -> str:
    """``str(value)`` with each character that is not printable escaped as
    ``repr`` escapes it (``\\n``, ``\\x1b``, ``\\u202e``), without quotes:
    a newline in a peer's text would start a forged log line, an escape
    sequence would reach the operator's terminal. Printable text, other
    scripts included, is returned as it is."""
    text = value if isinstance(value, str) else str(value)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
