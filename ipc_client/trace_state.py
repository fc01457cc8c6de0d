"""What of a received trace context a handler's calls pass on (docs/tracing.md §1).

One rule in both clients (js-client/lib/trace_state.js mirrors it), with
OpenTelemetry or without, so the SDKs' own parsers (which differ: Python's
drops a whole ``tracestate`` for one bad member, Node's keeps the valid
ones) only ever see what already passes them unchanged.

W3C Trace Context: a vendor receiving ``tracestate`` MUST send it on, MAY
drop invalid members and duplicate keys, keeps at most 32 members, and when
it shortens one for its size removes whole members, those over 128
characters first, then from the right, and SHOULD pass on at least 512
characters. Flags it does not understand it MUST set to zero: these
clients follow Level 1, which defines only ``sampled``.
"""

from __future__ import annotations

import re

__all__ = ["MAX_MEMBERS", "MAX_TRACESTATE", "passed_flags", "passed_tracestate"]

MAX_MEMBERS = 32
MAX_TRACESTATE = 512  # characters passed on, at most (the W3C's "at least 512")
_LONG_MEMBER = 128  # removed first when shortening
# The Level-1 key and value grammar, which both OpenTelemetry APIs check.
_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_SAMPLED_DIGITS = frozenset("13579bdf")


def passed_flags(flags: str) -> str:
    """``01`` when ``flags`` (two hex digits) has the sampled bit, else ``00``:
    every other bit, the Level-2 random one included, is sent as zero."""
    return "01" if flags[1:] in _SAMPLED_DIGITS else "00"


def passed_tracestate(value: object) -> str | None:
    """The valid members of a received ``tracestate``, in order, a repeated
    key's first (leftmost, the latest) only, at most 32, cut to 512
    characters by whole members; None when nothing is left."""
    if not isinstance(value, str):
        return None
    members: list[str] = []
    keys: set[str] = set()
    for raw in value.split(","):
        member = raw.strip(" \t")
        if not member or _MEMBER.fullmatch(member) is None:
            continue  # empty, or off the grammar: dropped alone
        key = member[: member.index("=")]
        if key in keys:
            continue
        keys.add(key)
        members.append(member)
        if len(members) == MAX_MEMBERS:
            break  # the right-most ones go
    size = sum(map(len, members)) + len(members) - 1
    while size > MAX_TRACESTATE:
        longs = [i for i, m in enumerate(members) if len(m) > _LONG_MEMBER]
        gone = members.pop(longs[-1] if longs else -1)
        size -= len(gone) + 1
    return ",".join(members) if members else None
