"""The client's socket adapter: what reaches the transport, and in what order."""

from __future__ import annotations

import asyncio

from collections.abc import Callable

from ipc_client.connection import _BATCH_MAX_BYTES, _BATCH_MAX_FRAMES, ClientConnection
from ipc_protocol import Message, MessageType, encode_frame, encode_message
from ipc_protocol.client_protocol import ClientProtocol

from .recording_transport import RecordingTransport

_CONNECTED = Message.build(MessageType.RESPONSE, "app", "system", {"status": "connected", "connection_id": "c", "protocol": 2})


def _connection(on_message: Callable[[ClientConnection, Message], None] = lambda c, m: None) -> tuple[ClientConnection, RecordingTransport]:
    """An open connection (its handshake done) over a recording transport."""
    conn = ClientConnection(ClientProtocol("app", "c", client="test"), on_message, lambda c, e: None)
    transport = RecordingTransport()
    conn.connection_made(transport)
    conn.data_received(encode_frame(encode_message(_CONNECTED)))
    return conn, transport


async def _next_iteration() -> None:
    await asyncio.sleep(0)


async def test_the_first_frame_of_an_iteration_goes_out_at_once() -> None:
    conn, transport = _connection()
    conn.write(b"lone request")
    assert transport.writes == [b"lone request"]
    await _next_iteration()
    conn.write(b"next iteration")
    assert transport.writes == [b"lone request", b"next iteration"]


async def test_the_frames_that_follow_in_the_iteration_go_out_together_at_its_end() -> None:
    conn, transport = _connection()
    for i in range(5):
        conn.write(b"f%d" % i)
    assert transport.writes == [b"f0"]
    await _next_iteration()
    assert transport.writes == [b"f0", b"f1f2f3f4"]


async def test_a_large_batch_is_written_in_pieces() -> None:
    conn, transport = _connection()
    for _ in range(1 + _BATCH_MAX_FRAMES + 1):
        conn.write(b"x")
    assert transport.writes == [b"x", b"x" * _BATCH_MAX_FRAMES]
    await _next_iteration()
    assert transport.writes == [b"x", b"x" * _BATCH_MAX_FRAMES, b"x"]


async def test_a_batch_of_large_frames_goes_out_at_its_byte_cap() -> None:
    """Fewer frames than the frame cap, but enough bytes: written as soon
    as they reach the byte cap, so the server starts on them meanwhile."""
    conn, transport = _connection()
    large = b"y" * (_BATCH_MAX_BYTES // 3 + 1)
    conn.write(b"first")
    for _ in range(4):
        conn.write(large)
    assert transport.writes == [b"first", large * 3]
    await _next_iteration()
    assert transport.writes == [b"first", large * 3, large]


def _answers(n: int) -> bytes:
    return b"".join(encode_frame(encode_message(Message.build(MessageType.RESPONSE, "app", "echo", i, reply_to=f"r{i}"))) for i in range(n))


async def _writers_woken_by_a_read(n: int) -> tuple[RecordingTransport, list[asyncio.Task[None]]]:
    """``n`` writers each wait for an answer, as requesters do, and write their
    next request once it comes; one read brings all ``n`` answers."""
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[Message]] = {f"r{i}": loop.create_future() for i in range(n)}
    conn, transport = _connection(lambda c, m: waiting[m.reply_to].set_result(m))  # type: ignore[index]

    async def writer(fut: asyncio.Future[Message]) -> None:
        msg = await fut
        conn.write(b"next%d " % msg.payload)

    tasks = [loop.create_task(writer(fut)) for fut in waiting.values()]
    await _next_iteration()
    conn.data_received(_answers(n))
    await _next_iteration()
    return transport, tasks


async def test_the_writers_one_read_wakes_write_in_a_few_batches() -> None:
    """A read of 16 answers wakes 16 writers (requesters with 16 in flight):
    their frames go out in four batches, so the server starts on the first
    while the rest are encoded, instead of all client and server running in
    lock step; a read of three, a frame a write."""
    transport, tasks = await _writers_woken_by_a_read(16)
    assert transport.writes == [b"".join(b"next%d " % i for i in range(at, at + 4)) for at in range(0, 16, 4)]
    await asyncio.gather(*tasks)
    transport, tasks = await _writers_woken_by_a_read(3)
    assert transport.writes == [b"next0 ", b"next1 ", b"next2 "]
    await asyncio.gather(*tasks)


async def test_an_iteration_after_a_read_batches_as_before() -> None:
    """The batches of a read's writers are for that iteration only."""
    conn, transport = _connection()
    conn.data_received(_answers(3))
    await _next_iteration()
    await _next_iteration()
    for _ in range(1 + _BATCH_MAX_FRAMES):
        conn.write(b"x")
    assert transport.writes == [b"x", b"x" * _BATCH_MAX_FRAMES]


async def test_a_writer_woken_by_a_read_of_one_frame_writes_at_once() -> None:
    transport, tasks = await _writers_woken_by_a_read(1)
    assert transport.writes == [b"next0 "]
    await asyncio.gather(*tasks)


async def test_close_writes_the_waiting_frames_first() -> None:
    conn, transport = _connection()
    conn.write(b"first ")
    conn.write(b"last words")
    conn.close()
    assert b"".join(transport.writes) == b"first last words" and transport.closing
    await _next_iteration()
    assert b"".join(transport.writes) == b"first last words"


async def test_frames_waiting_when_the_connection_is_lost_are_dropped() -> None:
    conn, transport = _connection()
    conn.write(b"sent")
    conn.write(b"too late")
    conn.connection_lost(None)
    await _next_iteration()
    assert transport.writes == [b"sent"]
