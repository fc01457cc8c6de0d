"""The client's socket adapter: what reaches the transport, and in what order."""

from __future__ import annotations

import asyncio
from typing import Any

from ipc_client._connection import _SOON_MAX_FRAMES, ClientConnection


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _connection() -> tuple[ClientConnection, RecordingTransport]:
    conn = ClientConnection(lambda c, m: None, lambda c, e: None, None)
    transport = RecordingTransport()
    conn.connection_made(transport)
    return conn, transport


async def _next_iteration() -> None:
    await asyncio.sleep(0)


async def test_answers_written_in_one_iteration_go_out_in_one_write() -> None:
    conn, transport = _connection()
    for i in range(5):
        conn.write_soon(b"a%d" % i)
    assert transport.writes == []
    await _next_iteration()
    assert transport.writes == [b"a0a1a2a3a4"]


async def test_a_large_batch_is_written_in_pieces() -> None:
    conn, transport = _connection()
    for i in range(_SOON_MAX_FRAMES + 1):
        conn.write_soon(b"x")
    assert transport.writes == [b"x" * _SOON_MAX_FRAMES]
    await _next_iteration()
    assert transport.writes == [b"x" * _SOON_MAX_FRAMES, b"x"]


async def test_an_immediate_write_goes_out_after_the_waiting_answers() -> None:
    """Order is kept across the two kinds of write."""
    conn, transport = _connection()
    conn.write_soon(b"answer")
    conn.write(b"request")
    assert b"".join(transport.writes) == b"answerrequest"
    await _next_iteration()
    assert b"".join(transport.writes) == b"answerrequest"


async def test_close_writes_the_waiting_answers_first() -> None:
    conn, transport = _connection()
    conn.write_soon(b"last words")
    conn.close()
    assert transport.writes == [b"last words"] and transport.closing
    await _next_iteration()
    assert transport.writes == [b"last words"]


async def test_answers_waiting_when_the_connection_is_lost_are_dropped() -> None:
    conn, transport = _connection()
    conn.write_soon(b"too late")
    conn.connection_lost(None)
    await _next_iteration()
    assert transport.writes == []
