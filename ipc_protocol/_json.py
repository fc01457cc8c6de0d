"""JSON in the bridge's profile: UTF-8, no NaN or Infinity (JavaScript cannot
parse them), strings that are valid Unicode. pydantic-core's parser and
serialiser are used because they are several times faster than ``json``."""

from __future__ import annotations

import math
from itertools import accumulate
from typing import Any

import pydantic_core

from .exceptions import FrameError, MessageError

__all__ = ["dumps", "loads", "peek_message_id", "plain"]


_N, _I = ord("N"), ord("I")
_SHORTEST_OVERFLOW = 309  # digits of the smallest integer that overflows a double
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_OVERFLOWING_RUN = b"0" * _SHORTEST_OVERFLOW
# Every run of 309 bytes holds two bytes 154 apart at multiples of 154.
_RUN_SAMPLE_STEP = _SHORTEST_OVERFLOW // 2
# The deepest value both decoders read (pydantic-core's parser stops at 201
# levels; the Node decoder refuses the same): the frame's object is level 1.
MAX_DEPTH = 201


def dumps(obj: Any) -> bytes:
    """Serialise ``obj``; raise :class:`MessageError` for values JSON cannot carry."""
    try:
        out = pydantic_core.to_json(obj, inf_nan_mode="constants")
    except pydantic_core.PydanticSerializationError as exc:
        raise MessageError(f"value is not JSON serialisable: {exc}") from exc
    if (_N in out or _I in out) and _names_non_finite(out) and pydantic_core.to_json(obj, inf_nan_mode="null") != out:
        # Rare: either a real NaN/Infinity, or those letters inside a string;
        # only a real one is written differently as null.
        raise MessageError("NaN and Infinity are not valid JSON")
    # Only an int as large as 10**309 can overflow here (a float that did is
    # Infinity, caught above), and it is written as a run of 309+ digits:
    # frames shorter than that skip the screen. Such a run puts digits at
    # two neighbouring multiples of 154, so a frame is folded whole (digits
    # to "0") and searched for the run only when every 154th byte, folded,
    # shows two in a row: a few bytes looked at instead of all of them
    # (partition: see _FOLD).
    if (
        len(out) > _SHORTEST_OVERFLOW
        and out[::_RUN_SAMPLE_STEP].translate(_DIGITS).partition(b"00")[1]
        and out.translate(_DIGITS).partition(_OVERFLOWING_RUN)[1]
        and _has_non_finite(obj)
    ):
        raise MessageError("a number overflows a double: no JavaScript peer can read it (send it as a string)")
    # Deeper than MAX_DEPTH takes MAX_DEPTH brackets nested around a value:
    # reading the nesting in the text (C speed) spares the walk of the value
    # every frame but those that may be that deep (or whose strings hold
    # brackets).
    if len(out) > 2 * MAX_DEPTH and not _nested_below(out, MAX_DEPTH) and _deeper_than(obj, MAX_DEPTH):
        raise MessageError(f"a value is nested deeper than {MAX_DEPTH} levels: no peer decodes it")
    return out


# A number can overflow a double only with a 3-digit positive exponent or
# 210+ digits (with at most a 2-digit exponent, 10**209 * 10**99 is the
# smallest that overflows). Fold digits, ".", "+" and "-" to "0" and "E" to
# "e"; then plain substring searches find those shapes (several times faster
# than a regex on a small frame). An exponent follows a digit, so the search
# is for "0e000" (a sign after the "e" is one more "0", a negative exponent
# a false alarm); it counts only when the run of "0"s before the "e" starts
# where a JSON number can start (after ":", ",", "[", whitespace or at the
# start): hex ids such as "9f3e012" hold the same letters but after a
# letter. Only a hit pays for walking the value. ``partition`` rather than
# ``find`` (which parses its arguments as a tuple, ~700 instructions a call
# on 3.11) or ``in`` (which first tries the needle as an int and formats a
# TypeError to drop): this runs on every frame decoded.
_FOLD = bytes.maketrans(b"123456789.+-E", b"000000000000e")
_BIG_EXPONENT = b"0e000"
_LONG_DIGITS = b"0" * 210
_SOME_DIGITS = b"0" * 32  # longer than any double in full (timestamps are 18): a cheap first look
_NUMBER_STARTS = frozenset(b":,[ \t\r\n")
_COPIED_AT_MOST = 4096  # past a hit, the text left that _maybe_huge copies to find the next
_RUN_LOOKED_AT = 64  # the bytes before a hit that _exponent_at_number looks at


def _maybe_huge(raw: bytes | bytearray) -> bool:
    """False when no number in ``raw`` can overflow a double; True may be a false alarm."""
    folded = raw.translate(_FOLD)
    if folded.partition(_SOME_DIGITS)[1] and folded.partition(_LONG_DIGITS)[1]:
        return True
    head, hit, rest = folded.partition(_BIG_EXPONENT)
    first = True
    while hit:
        # The run of "0"s before the "e" ends ``head``: a number when it
        # follows a number start, or starts the text. Past the first hit, a
        # run that fills ``head`` goes on back into the hit before, to its
        # "e" (as does a hit overlapping that one, at its last "0"): not one.
        lead = head.rstrip(b"0")
        if lead[-1] in _NUMBER_STARTS if lead else first:
            return True
        if len(rest) > _COPIED_AT_MOST:  # each hit would copy the rest: found in place instead
            return _exponent_at_number(folded, len(folded) - len(rest))
        head, hit, rest = rest.partition(_BIG_EXPONENT)
        first = False
    return False


def _exponent_at_number(folded: bytes | bytearray, start: int) -> bool:
    """``_maybe_huge``'s look for exponents from ``start``, in place: the
    same work per hit however long the text (random hex digits hold the
    shape about once in 120), where copying what follows each hit made a
    16 MiB frame of ids take minutes. Only the bytes just before a hit are
    looked at; a run of "0"s longer than that is an alarm."""
    at = folded.find(_BIG_EXPONENT, start)
    while at >= 0:
        lead = folded[max(0, at - _RUN_LOOKED_AT) : at].rstrip(b"0")
        if not lead or lead[-1] in _NUMBER_STARTS:
            return True
        at = folded.find(_BIG_EXPONENT, at + 1)
    return False


def plain(raw: bytes | bytearray, *, screened: bool = False) -> bool:
    """True when ``raw`` holds no ``NaN`` or ``Infinity`` and no number that
    can overflow a double (``screened``: a peer already made sure of that):
    pydantic-core's one-pass validation from the bytes
    (``envelope.decode_message``) would let those through, so only such a
    frame may take it. ``NaN`` in a string is a false alarm (the frame takes
    the two-step path)."""
    if (_N in raw or _I in raw) and _names_non_finite(raw):
        return False
    return screened or not _maybe_huge(raw)


def _names_non_finite(raw: bytes | bytearray) -> bool:
    """Whether ``raw`` holds the words ``NaN`` or ``Infinity`` (in a string
    too). Callers look for the bytes "N" and "I" first (memchr, inline): far
    cheaper than the words or a call, on every frame sent and decoded."""
    return bool((_N in raw and raw.partition(b"NaN")[1]) or (_I in raw and raw.partition(b"Infinity")[1]))


def parse(data: bytes | bytearray | str) -> Any:
    """:func:`loads` without the look for numbers that overflow a double:
    for what a peer that made that check relays (``decode_relayed``)."""
    try:
        # Only keys are interned: caching every short string value costs more
        # lookups than it saves.
        return pydantic_core.from_json(data, allow_inf_nan=False, cache_strings="keys")
    except ValueError as exc:
        raise FrameError(f"invalid JSON: {exc}") from exc


def loads(data: bytes | bytearray | str) -> Any:
    """Parse one JSON document; raise :class:`FrameError` when it is not valid.

    Numbers that overflow a double (``1e400``, or an integer of 309+ digits)
    are refused too: they would become infinity in a JavaScript peer, which
    can neither read nor re-encode them.
    """
    obj = parse(data)
    if type(data) is bytes:
        raw = data
    else:
        raw = data.encode() if isinstance(data, str) else bytes(data)
    if _maybe_huge(raw) and _has_non_finite(obj):
        raise FrameError("invalid JSON: a number overflows a double")
    return obj


_STRINGS_AND_BRACKETS = b'"[]{}'
_NOT_STRINGS_OR_BRACKETS = bytes(b for b in range(256) if b not in _STRINGS_AND_BRACKETS)
_ONE_KIND_OF_BRACKET = bytes.maketrans(b"{}", b"[]")
_BRACKET_STEPS = bytes.maketrans(b"[]", b"\x01\xff")  # +1 and -1 as signed bytes
_ROUNDS_FIRST = 8  # rounds of dropping "[]" before a long text's depth is counted instead
_ROUND_BYTES = 64 * 1024  # the longest text a round may take past those


def _nested_below(out: bytes, limit: int) -> bool:
    """True when the brackets of ``out`` (JSON as ``to_json`` writes it)
    surely nest fewer than ``limit`` deep; False when they may not, or a
    string holds a bracket (then only a walk of the value can tell).

    Escaped backslashes and quotes go first, so that every quote left
    delimits a string. Then all but quotes and brackets is dropped (C
    speed), ``{}`` written as ``[]``: a string holding no bracket is a pair
    of adjacent quotes, and when every quote is in such a pair, only the
    structure's brackets are left. Each round of dropping ``[]`` takes off
    the innermost level, so the rounds that empty the text are its depth."""
    if b"\\" in out:
        out = out.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = out.translate(_ONE_KIND_OF_BRACKET, _NOT_STRINGS_OR_BRACKETS)
    if kept.count(b"[") < limit:
        return True
    quotes = kept.count(b'"')
    if quotes:
        if kept.count(b'""') * 2 != quotes:
            return False
        kept = kept.translate(None, b'"')
    for done in range(limit - 1):
        if done >= _ROUNDS_FIRST and len(kept) > _ROUND_BYTES:
            # Still long after a few rounds: each more would cost its length
            # again (a 16 MiB frame of 199-deep lists took seconds). What is
            # left nests ``done`` levels less deep than the text; its depth
            # is the running count of its brackets at its peak.
            return done + max(accumulate(memoryview(kept.translate(_BRACKET_STEPS)).cast("b"))) < limit
        kept = kept.replace(b"[]", b"")
        if not kept:
            return True
    return False


def _deeper_than(obj: Any, limit: int) -> bool:
    """Whether ``obj`` (level 1) holds a value below level ``limit``."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            stack.extend((value, depth + 1) for value in item)
    return False


def _has_non_finite(obj: Any) -> bool:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, int):
            try:
                float(item)  # a Python int has no bound; a double, and JavaScript's number, do
            except OverflowError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def peek_message_id(body: bytes) -> str | None:
    """Best effort: the message_id of a frame that failed validation, so
    its error frame can say which one (§6.4)."""
    try:
        obj = loads(body)
    except FrameError:
        return None
    mid = obj.get("message_id") if isinstance(obj, dict) else None
    return mid if isinstance(mid, str) else None
