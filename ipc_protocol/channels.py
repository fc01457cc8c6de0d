"""Channel names and subscription patterns (docs/protocol.md, "Channels").

A channel is dot-separated non-empty tokens (``orders.created``). In a pattern,
the token ``*`` matches exactly one token and a final ``>`` matches one or more
remaining tokens, as in NATS subjects.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .constants import RESERVED_PREFIXES, SYSTEM_CHANNEL

__all__ = [
    "validate_channel",
    "validate_pattern",
    "is_pattern",
    "is_reserved",
    "is_servable",
    "pattern_matches",
]

MAX_CHANNEL_LENGTH = 512
# A surrogate code point: in a Python str always a lone one, which UTF-8
# cannot encode, so no frame can carry the name (docs/protocol.md §1.1).
_SURROGATE = re.compile("[\ud800-\udfff]")
_WILDCARDS = ("*", ">")


def _tokens(name: str, what: str) -> list[str]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string")
    if len(name) > MAX_CHANNEL_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_CHANNEL_LENGTH} characters")
    if not name.isascii() and _SURROGATE.search(name) is not None:
        raise ValueError(f"{what} {name!r} holds a lone surrogate, which is not valid Unicode")
    tokens = name.split(".")
    if any(not t or t.strip() != t for t in tokens):
        raise ValueError(f"{what} {name!r} has an empty token or surrounding spaces")
    return tokens


# Channels already found valid: a client checks the channel of every call,
# and a few channels carry nearly all of them (a set lookup is much cheaper
# than splitting and checking the tokens again).
_VALID_CHANNELS: set[str] = set()
_VALID_CHANNELS_MAX = 4096


def validate_channel(name: str) -> str:
    """Return ``name`` if it is a concrete channel (no wildcards), else raise ValueError."""
    if type(name) is str and name in _VALID_CHANNELS:
        return name
    tokens = _tokens(name, "channel")
    if "*" in name or ">" in name:
        if any(t in _WILDCARDS for t in tokens):
            raise ValueError(f"channel {name!r} contains a wildcard; wildcards are for subscriptions")
        raise ValueError(f"channel {name!r}: wildcards must be whole tokens")  # 'ord*' could never be subscribed to or served (§4.3)
    if len(_VALID_CHANNELS) >= _VALID_CHANNELS_MAX:
        _VALID_CHANNELS.clear()
    _VALID_CHANNELS.add(name)
    return name


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid channel or pattern, else raise ValueError."""
    tokens = _tokens(pattern, "pattern")
    for i, t in enumerate(tokens):
        if t == ">" and i != len(tokens) - 1:
            raise ValueError(f"pattern {pattern!r}: '>' may only be the last token")
        if t not in _WILDCARDS and ("*" in t or ">" in t):
            raise ValueError(f"pattern {pattern!r}: wildcards must be whole tokens")
    return pattern


def is_pattern(name: str) -> bool:
    """Whether a valid name holds a wildcard token: ``*`` and ``>`` are
    never part of a longer token in one, so looking for the characters is enough."""
    return "*" in name or ">" in name


def is_reserved(channel: str) -> bool:
    """Channels under ``system`` and ``$sys`` belong to the server."""
    head = channel.split(".", 1)[0]
    return head in RESERVED_PREFIXES


def is_servable(channel: str) -> bool:
    """Whether a client or an in-process handler may answer requests on
    ``channel``: any unreserved channel or pattern, and ``system`` itself,
    which gets the actions the server does not answer (docs/protocol.md §8)."""
    return channel == SYSTEM_CHANNEL or not is_reserved(channel)


@lru_cache(maxsize=4096)
def _split(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


def pattern_matches(pattern: str, channel: str) -> bool:
    """Whether ``channel`` matches ``pattern`` (both assumed valid)."""
    if pattern == channel:
        return True
    if "*" not in pattern and ">" not in pattern:
        return False
    p = _split(pattern)
    c = _split(channel)
    for i, tok in enumerate(p):
        if tok == ">":
            return len(c) > i
        if i >= len(c):
            return False
        if tok != "*" and tok != c[i]:
            return False
    return len(p) == len(c)
