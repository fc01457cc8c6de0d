"""The JSON profile's screens on long frames (docs/protocol.md §1.1): they
cost time in proportion to a frame's length, whatever it holds, and still
find what they look for. Past its first few KiB the decoder's overflow
screen finds a text's exponent-shaped hits in place, and the encoder's
depth read counts the brackets of a long text after a few rounds."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol import decode_message
from ipc_protocol._json import _COPIED_AT_MOST, MAX_DEPTH, _maybe_huge, _nested_below, loads
from ipc_protocol.exceptions import FrameError

_OVERFLOWING = ["1e400", "-1E+400", "2.5e0309", "1" + "0" * 300 + "e9", "9" * 320]


def _hex_ids(n: int, seed: int) -> list[str]:
    """Ids such as traces carry: about one "digit e digit digit digit" in 120 hex digits."""
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(n)]


def _frame(ids: list[str], number: str | None, at: int) -> bytes:
    items = [json.dumps(i) for i in ids]
    if number is not None:
        items.insert(at, number)
    return ('{"message_id":"m","app_id":"a","channel_id":"c","message_type":"publish","payload":[' + ",".join(items) + "]}").encode()


@given(st.integers(300, 700), st.integers(0, 10_000), st.sampled_from(_OVERFLOWING), st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_a_number_that_overflows_is_found_past_the_first_kib_of_hex_ids(n: int, seed: int, number: str, where: float) -> None:
    ids = _hex_ids(n, seed)
    body = _frame(ids, number, int(where * n))
    assert len(body) > 2 * _COPIED_AT_MOST  # hits past the first KiB are found in place
    assert _maybe_huge(body)
    with pytest.raises(FrameError, match="overflows a double"):
        decode_message(body)
    assert decode_message(_frame(ids, None, 0)).payload == ids


def test_hex_ids_alone_raise_no_alarm_however_many() -> None:
    """Every hit in them follows a letter, a quote or another hit's "e"."""
    body = _frame(_hex_ids(3000, 1), None, 0)
    assert not _maybe_huge(body)
    assert len(loads(body)["payload"]) == 3000


def test_a_long_run_before_an_exponent_is_an_alarm_not_a_miss() -> None:
    """In place, only the bytes just before a hit are read: a mantissa
    longer than that is taken as a number (then the value is walked)."""
    pad = ",".join(json.dumps(i) for i in _hex_ids(300, 2))
    for mantissa in ("1" * 100 + "e500", "1" * 100 + "e005"):
        body = f'{{"p":[{pad},{mantissa}]}}'.encode()
        assert _maybe_huge(body)
    with pytest.raises(FrameError, match="overflows a double"):
        loads(f'{{"p":[{pad},{"1" * 100}e500]}}'.encode())
    assert loads(f'{{"p":[{pad},{"1" * 100}e005]}}'.encode())["p"][-1] == float("1" * 100 + "e5")


def _cpu_s(screen: Callable[[bytes], object], text: bytes) -> float:
    """The least CPU time of three screenings of ``text``."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        screen(text)
        best = min(best, time.process_time() - t0)
    return best


def test_the_screen_costs_time_in_proportion_to_the_frame() -> None:
    """A frame of ids eight times longer takes about eight times as long to
    screen, not sixty-four: copying what followed each hit made a 16 MiB
    frame of them hold the server for minutes. The bound is loose; a cost
    that grows with the square of the length misses it by far."""
    small = _frame(_hex_ids(15_000, 3), None, 0)  # ~0.5 MB
    large = _frame(_hex_ids(120_000, 4), None, 0)  # ~4 MB
    assert _cpu_s(_maybe_huge, large) < 24 * max(_cpu_s(_maybe_huge, small), 1e-4)


@pytest.mark.parametrize("deepest", [198, 199])
def test_a_long_frame_of_deep_lists_is_read_at_its_length(deepest: int) -> None:
    """Copies of a list nested ``deepest`` levels: past the first rounds the
    brackets are counted (a round over all of it per level took seconds on
    16 MiB); inside the frame's object and a list, 199 levels nest 201 deep."""
    nest = b"[" * deepest + b"]" * deepest
    text = b'{"p":[' + b",".join([nest] * 400) + b"]}"
    assert len(text) > 64 * 1024
    assert _nested_below(text, MAX_DEPTH) is (deepest + 2 < MAX_DEPTH)
    assert _nested_below(text, deepest + 3) is True
    assert _nested_below(text, deepest + 2) is False


def test_reading_the_nesting_costs_about_the_same_however_deep() -> None:
    """Two texts of the same length, lists nested 190 deep and 10 deep: a
    round per level made the deep one cost nineteen times the other. The
    bound is loose; a cost that grows with the depth misses it by far."""
    deep = b"[" + b",".join([b"[" * 190 + b"]" * 190] * 2_000) + b"]"
    shallow = b"[" + b",".join([b"[" * 10 + b"]" * 10] * 38_000) + b"]"
    assert abs(len(deep) - len(shallow)) < len(deep) // 10
    depth = partial(_nested_below, limit=MAX_DEPTH)
    assert _cpu_s(depth, deep) < 6 * max(_cpu_s(depth, shallow), 1e-4)
