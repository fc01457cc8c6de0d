"""The encoder's screens on the JSON it writes (docs/protocol.md §1.1): an
int that overflows a double and a value nested deeper than 201 levels are
refused wherever they sit in a frame, however large, and the quick looks
that spare most frames the full ones never let one through."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol import Message, MessageType, decode_message, encode_message
from ipc_protocol._json import MAX_DEPTH, _nested_below, dumps
from ipc_protocol.exceptions import MessageError

# Strings that make the text's brackets lie: brackets, quotes and
# backslashes inside strings, escaped and not.
_tricky_text = st.text(alphabet='[]{}"\\\nab', max_size=6)
_json_values = st.recursive(
    st.none() | st.integers(-5, 5) | _tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    """How deep the brackets of ``value``'s JSON nest."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _strings_hold_brackets(value: Any) -> bool:
    if isinstance(value, str):
        return any(c in value for c in "[]{}")
    if isinstance(value, dict):
        return any(_strings_hold_brackets(k) or _strings_hold_brackets(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_strings_hold_brackets(v) for v in value)
    return False


@given(_json_values, st.integers(1, 8))
@settings(max_examples=500, deadline=None)
def test_the_nesting_read_from_the_text_is_never_below_the_values(value: Any, limit: int) -> None:
    """Never "below" for a value that is not (whatever its strings hold);
    exact when no string holds a bracket."""
    below = _nested_below(pydantic_core.to_json(value), limit)
    if below:
        assert _depth(value) < limit
    elif not _strings_hold_brackets(value):
        assert _depth(value) >= limit


@given(_json_values, st.integers(1, 8), st.integers(0, 3))
@settings(max_examples=300, deadline=None)
def test_counting_the_brackets_reads_the_same_nesting_as_the_rounds(value: Any, limit: int, rounds_first: int) -> None:
    """A long text is read by counting its brackets once a few rounds have
    not emptied it: the same verdicts, whatever the rounds done before."""
    text = pydantic_core.to_json(value)
    by_rounds = _nested_below(text, limit)
    with mock.patch.multiple("ipc_protocol._json", _ROUNDS_FIRST=rounds_first, _ROUND_BYTES=0):
        assert _nested_below(text, limit) == by_rounds


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ({"}": [1], "[": 1}, 2),  # brackets in keys and strings
        (["]", [[1]], "["], 3),  # brackets in strings that pair up around the structure
        (['"]', '"', [[1]], '"[', '"'], 3),  # escaped quotes
        (["\\", "]", "\\", [[1]], "\\", "[\\"], 3),  # escaped backslashes before a closing quote
    ],
    ids=["keys", "strings", "escaped-quotes", "escaped-backslashes"],
)
def test_brackets_in_strings_never_pass_for_structure(value: Any, limit: int) -> None:
    """Texts whose brackets, read without telling strings apart, would
    nest less deep than the value does."""
    assert _depth(value) == limit
    assert not _nested_below(pydantic_core.to_json(value), limit)


def _wide(rows: int, note: str) -> list[dict[str, Any]]:
    return [{"id": i, "tags": [{"k": "a"}, {"k": "b"}], "note": note} for i in range(rows)]


def _nested(levels: int) -> Any:
    value: Any = 1
    for i in range(levels - 1):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("note", ["plain", 'brackets ]]}} and "quotes" \\ inside'], ids=["plain-strings", "strings-with-brackets"])
def test_a_wide_frame_travels_and_a_deep_value_in_it_is_refused(note: str) -> None:
    """Hundreds of brackets that do not nest are no reason to refuse; one
    value too deep among them is, whether the text alone can tell
    (plain strings) or the value must be walked (strings with brackets)."""
    wide = _wide(120, note)
    msg = Message.build(MessageType.PUBLISH, "app", "c", wide)
    assert decode_message(encode_message(msg)).payload == wide
    deep = [*wide, _nested(MAX_DEPTH)]  # the payload is level 2, its list items level 3
    with pytest.raises(MessageError, match="nested deeper than 201"):
        encode_message(Message.build(MessageType.PUBLISH, "app", "c", deep))
    fits = [*wide, _nested(MAX_DEPTH - 2)]
    assert decode_message(encode_message(Message.build(MessageType.PUBLISH, "app", "c", fits))).payload == fits


@given(st.integers(0, 700), st.integers(309, 420), st.booleans())
@settings(max_examples=200, deadline=None)
def test_an_int_that_overflows_is_refused_wherever_it_sits(offset: int, digits: int, negative: bool) -> None:
    """The encoder looks at every 154th byte first: a run of 309+ digits
    is caught at any offset from the start of the frame."""
    big = 2 * 10 ** (digits - 1)  # 309 digits and more: past the largest double (1.8e308)
    with pytest.raises(MessageError, match="overflows a double"):
        dumps({"pad": "x" * offset, "n": -big if negative else big, "after": list(range(50))})


def test_many_long_numbers_that_fit_travel() -> None:
    """Numbers everywhere make the first look pass on to the full one, which
    finds no overflow: the largest ints a double holds, side by side."""
    value = [10**308 + i for i in range(40)]
    body = dumps({"n": value})
    assert json.loads(body)["n"] == value
