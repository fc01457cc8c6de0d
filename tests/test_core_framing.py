"""Framing on bytes: every split of the stream, limits on the prefix."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol import FrameDecoder, encode_frame
from ipc_protocol.exceptions import FrameError, FrameTooLarge, ProtocolError

BODIES = [b'{"a":1}', b"{}", b'{"k":"' + b"x" * 1000 + b'"}', bytes(range(1, 200))]
STREAM = b"".join(encode_frame(b) for b in BODIES)


def test_encode_prefixes_big_endian_length() -> None:
    assert encode_frame(b"{}") == b"\x00\x00\x00\x02{}"
    assert encode_frame(b"x" * 258)[:4] == b"\x00\x00\x01\x02"


def test_encode_refuses_empty_body() -> None:
    with pytest.raises(FrameError):
        encode_frame(b"")


def test_whole_stream_in_one_chunk() -> None:
    assert FrameDecoder().feed(STREAM) == BODIES


def test_one_byte_at_a_time() -> None:
    dec = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += dec.feed(STREAM[i : i + 1])
    assert out == BODIES
    assert dec.buffered == 0


def test_prefix_split_across_chunks() -> None:
    frame = encode_frame(b'{"x":1}')
    dec = FrameDecoder()
    assert dec.feed(frame[:2]) == []
    assert dec.feed(frame[2:3]) == []
    assert dec.feed(frame[3:]) == [b'{"x":1}']


def test_trailing_partial_frame_is_kept() -> None:
    dec = FrameDecoder()
    tail = encode_frame(b'{"tail":true}')
    assert dec.feed(STREAM + tail[:6]) == BODIES
    assert dec.buffered == 6
    assert dec.feed(tail[6:]) == [b'{"tail":true}']


def test_many_frames_in_one_chunk() -> None:
    frames = [b'{"i":%d}' % i for i in range(1000)]
    assert FrameDecoder().feed(b"".join(encode_frame(f) for f in frames)) == frames


@pytest.mark.parametrize("seed", range(20))
def test_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    dec = FrameDecoder()
    out: list[bytes] = []
    pos = 0
    while pos < len(STREAM):
        step = rng.randint(1, 64)
        out += dec.feed(STREAM[pos : pos + step])
        pos += step
    assert out == BODIES
    assert {type(body) for body in out} == {bytes}  # never a view or a bytearray of the decoder's buffer


def test_a_short_tail_goes_on_with_the_next_chunk() -> None:
    # Reads end mid-frame: in the prefix, or in the body after it was read.
    for cut in (2, 4, 9):
        dec = FrameDecoder()
        assert dec.feed(memoryview(STREAM[:cut])) == []
        out = dec.feed(memoryview(STREAM[cut:]))
        assert out == BODIES and {type(body) for body in out} == {bytes}
        assert dec.buffered == 0


def test_a_tail_longer_than_the_chunk_is_buffered() -> None:
    body = b'{"k":"' + b"y" * 60_000 + b'"}'  # under the size assembled in a buffer of its own
    frame = encode_frame(body) + encode_frame(b"{}")
    dec = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(frame), 100):
        out += dec.feed(frame[i : i + 100])
    assert out == [body, b"{}"]
    assert dec.buffered == 0


def test_large_frame_over_many_chunks() -> None:
    body = b'{"blob":"' + b"z" * (8 * 1024 * 1024) + b'"}'
    frame = encode_frame(body)
    dec = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(frame), 65536):
        out += dec.feed(frame[i : i + 65536])
    assert out == [body]


def test_limit_checked_on_the_prefix_before_buffering() -> None:
    dec = FrameDecoder(max_frame_size=100)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed((101).to_bytes(4, "big"))  # no body bytes at all yet
    assert info.value.size == 101 and info.value.limit == 100
    assert info.value.code == "too_large"


def test_limit_exact_size_is_accepted() -> None:
    body = b"{" + b" " * 98 + b"}"
    assert FrameDecoder(max_frame_size=100).feed(encode_frame(body)) == [body]


def test_zero_length_is_bad_frame() -> None:
    with pytest.raises(FrameError) as info:
        FrameDecoder().feed(b"\x00\x00\x00\x00")
    assert info.value.code == "bad_frame"


def test_errors_are_sticky() -> None:
    dec = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameTooLarge):
        dec.feed(b"\x00\x00\x00\xff")
    with pytest.raises(FrameTooLarge):
        dec.feed(encode_frame(b"{}"))


def test_no_limit() -> None:
    dec = FrameDecoder(max_frame_size=None)
    # The largest prefix is accepted; its frame's buffer grows with what comes.
    assert dec.feed(b"\xff\xff\xff\xff") == []
    assert dec.buffered == 4
    assert dec.feed(b"{}") == [] and dec.buffered == 6


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_property_any_split_yields_the_frames(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    dec = FrameDecoder()
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += dec.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert out == bodies


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decodes_or_raises_a_documented_error(data: bytes) -> None:
    dec = FrameDecoder(max_frame_size=64)
    try:
        for body in dec.feed(data):
            assert 0 < len(body) <= 64
    except ProtocolError as exc:
        assert exc.code in ("bad_frame", "too_large")


def test_frame_parts_prefixes_as_encode_frame_from_a_bounded_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """``frame_parts`` takes a JSON body's prefix from a cache of lengths
    (a relay's hot path): the same bytes as ``encode_frame``, the cache
    bounded, an empty or too large body refused in encode_frame's words."""
    from ipc_protocol import framing

    monkeypatch.setattr(framing, "_PREFIXES", {})
    monkeypatch.setattr(framing, "_PREFIXES_KEPT", 8)
    for n in [1, 2, 255, 256, 257, 65_535, 65_536, 70_000, 2, 256, 1, 3, 4, 5, 6, 7, 8, 9]:
        body = b"{" + b" " * (n - 1)
        assert framing.frame_parts(body) == encode_frame(body)
        assert framing.frame_parts(body) == encode_frame(body)  # from the cache the second time
    assert len(framing._PREFIXES) == 8
    with pytest.raises(FrameError):
        framing.frame_parts(b"")
    monkeypatch.setattr(framing, "MAX_FRAME_LIMIT", 3)  # past the limit: refused, its length never cached
    assert framing.frame_parts(b"{ }") == encode_frame(b"{ }")
    with pytest.raises(FrameTooLarge):
        framing.frame_parts(b"{  }")
