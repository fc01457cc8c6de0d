"""Text a peer chose (an app id, a connection id, a channel, an error's
text), made safe for a log line or a terminal (docs/operations.md §4)."""

from __future__ import annotations

__all__ = ["LOG_TEXT_LIMIT", "LOG_VALUE_LIMIT", "clipped", "printable"]

# The characters of a peer's value a log line shows (docs/operations.md §4).
LOG_VALUE_LIMIT = 128
# And of a text that quotes such values (an error's, a close reason).
LOG_TEXT_LIMIT = 512


def printable(value: object) -> str:
    """``str(value)`` with each character that is not printable escaped as
    ``repr`` escapes it (``\\n``, ``\\x1b``, ``\\u202e``), without quotes:
    a newline in a peer's text would start a forged log line, an escape
    sequence would reach the operator's terminal. Printable text, other
    scripts included, is returned as it is."""
    text = value if isinstance(value, str) else str(value)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clipped(value: object, limit: int = LOG_VALUE_LIMIT) -> str:
    """``printable(value)`` cut to ``limit`` characters, then ``…(N chars)``
    with the value's own length: a peer's 1,000,000-character message id
    made a 6 MB log line. Only the start is escaped, so a long value costs
    no more than a short one."""
    text = value if isinstance(value, str) else str(value)
    shown = printable(text[:limit])
    if len(text) <= limit and len(shown) <= limit:
        return shown
    if len(shown) > limit:  # cut between escapes, never inside one
        kept, size = [], 0
        for c in text[:limit]:
            piece = c if c.isprintable() else repr(c)[1:-1]
            size += len(piece)
            if size > limit:
                break
            kept.append(piece)
        shown = "".join(kept)
    return f"{shown}\u2026({len(text)} chars)"
