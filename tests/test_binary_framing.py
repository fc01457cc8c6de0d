"""Large frames in the frame decoder (docs/protocol.md §1, §16): a frame
that one read does not complete is assembled in a buffer of its own, which
the pumps read into directly (``read_buffer``), so megabytes of attachments
are not copied from read to read; the buffer grows with what comes, so a
length prefix alone reserves nothing. Every split of the stream still
gives the same frames, and the limits hold."""

from __future__ import annotations

import os

import pytest

from ipc_protocol import FrameDecoder, FrameTooLarge, encode_frame
from ipc_protocol.framing import ASSEMBLE_FROM_BYTES

BIG = 300_000


def frame(body: bytes) -> bytes:
    out = encode_frame(body)
    return bytes(out)


def body(n: int, seed: int = 0) -> bytes:
    return b"{" + bytes((i * 7 + seed) & 0xFF for i in range(n - 1))


def read_in_place(decoder: FrameDecoder, stream: bytes, read_size: int, *, hold_views: bool = False) -> tuple[list[bytes], int, dict[int, set[int]]]:
    """What a pump does: read into ``read_buffer``'s view, feed the slice
    read, let go of the view (``hold_views``: keep them all). Returns the
    frames, the reads that landed in the shared buffer, and for each frame
    the buffers its reads in place landed in."""
    shared = memoryview(bytearray(read_size))
    frames: list[bytes] = []
    shared_reads = 0
    landed: dict[int, set[int]] = {}
    held: list[memoryview] = []
    pos = 0
    while pos < len(stream):
        view = decoder.read_buffer(shared)
        if view.obj is shared.obj:
            shared_reads += 1
        else:
            landed.setdefault(len(frames), set()).add(id(view.obj))
        n = min(len(view), len(stream) - pos)
        view[:n] = stream[pos : pos + n]  # the socket's recv_into
        pos += n
        frames += decoder.feed(view[:n])
        if hold_views:
            held.append(view)
        del view
    return frames, shared_reads, landed


def test_a_large_frame_is_read_in_place_and_comes_out_whole() -> None:
    bodies = [body(BIG), body(10), body(BIG + 1, 3), body(70_000, 5)]
    stream = b"".join(frame(b) for b in bodies)
    frames, shared_reads, landed = read_in_place(FrameDecoder(None), stream, 65_536)
    assert frames == bodies and all(type(f) is bytes for f in frames)
    # After its first read, the rest of each large frame landed in its own
    # buffer, one for the frame: it grew with what came, where it was.
    assert shared_reads == 3
    assert sorted(landed) == [0, 2, 3] and all(len(ids) == 1 for ids in landed.values())


def test_a_large_frames_buffer_grows_with_what_came() -> None:
    """A length prefix makes the decoder hold what came, not what it
    announced: the frame's buffer is at most twice what came of it (or the
    size of one read), and the frame comes out whole however it was split."""
    data = body(4 * 1024 * 1024, 7)
    stream = frame(data)
    decoder = FrameDecoder(None)
    shared = memoryview(bytearray(65_536))
    assert decoder.feed(stream[:7]) == []
    assert len(decoder.read_buffer(shared)) <= ASSEMBLE_FROM_BYTES
    pos = 7
    for step in (1, 1000, 65_536, 300_000, 2_000_000):
        got = decoder.feed(stream[pos : pos + step])
        pos += step
        came = decoder.buffered - 4
        assert got == [] and came + len(decoder.read_buffer(shared)) <= max(ASSEMBLE_FROM_BYTES, 2 * came)
    assert decoder.feed(stream[pos:]) == [data] and decoder.buffered == 0


def test_a_view_still_held_does_not_stop_the_frame_growing() -> None:
    """A pump that keeps its last read's view: the buffer cannot grow in
    place, so it moves, and the frames are the same."""
    bodies = [body(BIG), body(10), b"\x00" + os.urandom(BIG)]
    stream = b"".join(frame(b) for b in bodies)
    frames, _, landed = read_in_place(FrameDecoder(None), stream, 65_536, hold_views=True)
    assert [bytes(f) for f in frames] == bodies
    assert len(landed[0]) > 1  # moved as it grew


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
    frames, _, _ = read_in_place(FrameDecoder(None), frame(data) + frame(b"{}"), 262_144)
    assert frames == [data, b"{}"]
