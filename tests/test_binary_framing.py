"""Large frames in the frame decoder (docs/protocol.md §1, §16): a frame
that one read does not complete is assembled in a buffer of its own, which
the pumps read into directly (``read_buffer``), so megabytes of attachments
are not copied from read to read. Every split of the stream still gives the
same frames, and the limits hold."""

from __future__ import annotations

import os

import pytest

from ipc_protocol import FrameDecoder, FrameTooLarge, encode_frame

BIG = 300_000


def frame(body: bytes) -> bytes:
    out = encode_frame(body)
    return bytes(out)


def body(n: int, seed: int = 0) -> bytes:
    return b"{" + bytes((i * 7 + seed) & 0xFF for i in range(n - 1))


def read_in_place(decoder: FrameDecoder, stream: bytes, read_size: int) -> tuple[list[bytes], int]:
    """What a pump does: read into ``read_buffer``'s view, feed the slice read."""
    shared = memoryview(bytearray(read_size))
    frames: list[bytes] = []
    in_place = 0
    pos = 0
    while pos < len(stream):
        view = decoder.read_buffer(shared)
        if view.obj is not shared.obj:
            in_place += 1
        n = min(len(view), len(stream) - pos)
        view[:n] = stream[pos : pos + n]  # the socket's recv_into
        pos += n
        frames += decoder.feed(view[:n])
    return frames, in_place


def test_a_large_frame_is_read_in_place_and_comes_out_whole() -> None:
    bodies = [body(BIG), body(10), body(BIG + 1, 3), body(70_000, 5)]
    stream = b"".join(frame(b) for b in bodies)
    frames, in_place = read_in_place(FrameDecoder(None), stream, 65_536)
    assert frames == bodies and all(type(f) is bytes for f in frames)
    assert in_place == 3  # after its first read, the rest of each large frame landed in its own buffer


@pytest.mark.parametrize("step", [1, 3, 4099, 65_536, 1 << 20])
def test_every_split_gives_the_same_frames(step: int) -> None:
    bodies = [body(70_000), body(5), body(BIG, 1)] if step == 1 else [body(BIG), body(5), body(BIG, 1)]
    stream = b"".join(frame(b) for b in bodies)
    decoder = FrameDecoder(None)
    frames: list[bytes] = []
    for i in range(0, len(stream), step):
        frames += decoder.feed(stream[i : i + step])
    assert frames == bodies
    assert decoder.buffered == 0


def test_a_large_frame_then_small_ones_in_the_same_read() -> None:
    decoder = FrameDecoder(None)
    big, rest = frame(body(BIG)), frame(body(20)) + frame(body(30))
    assert decoder.feed(big[:1000]) == []
    assert decoder.buffered == 1000
    assert decoder.feed(big[1000:] + rest) == [body(BIG), body(20), body(30)]
    assert decoder.buffered == 0


def test_the_limit_holds_for_a_large_frame_being_read() -> None:
    decoder = FrameDecoder(None)
    big = frame(body(BIG))
    assert decoder.feed(big[:70_000]) == []
    decoder.max_frame_size = BIG - 1  # a handshake lowered it meanwhile (§1)
    with pytest.raises(FrameTooLarge):
        decoder.feed(big[70_000:])


def test_a_large_frame_of_random_bytes_round_trips_through_pumps_reads() -> None:
    data = b"\x00" + os.urandom(2 * 1024 * 1024)
    frames, _ = read_in_place(FrameDecoder(None), frame(data) + frame(b"{}"), 262_144)
    assert frames == [data, b"{}"]
