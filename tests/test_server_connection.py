"""The server's socket adapter: when queued frames reach the transport.

A real IPCServer routes the frames; only the transports are recorders, so
the tests can see each write (over TCP the peer cannot tell writes apart).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ipc_protocol import FrameDecoder, Message, MessageType, decode_message, encode_frame, encode_message
from ipc_protocol.envelope import encode_request
from ipc_protocol.messages import connect_request
from ipc_server import IPCServer
from ipc_server.connection import _FLUSH_EVERY_FRAMES, ServerConnection


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


class Peer:
    """One connection of the server, fed bytes as if read from its socket."""

    def __init__(self, server: IPCServer, name: str) -> None:
        self.conn = ServerConnection(server)
        self.transport = RecordingTransport()
        self.conn.connection_made(self.transport)
        self.read(encode_frame(encode_message(connect_request("app", name, client="test"))))
        self.transport.writes.clear()

    def read(self, data: bytes) -> None:
        """One read from the socket: the bytes land in the server's buffer."""
        view = self.conn.get_buffer(len(data))
        view[: len(data)] = data
        self.conn.buffer_updated(len(data))

    def frames(self, write: bytes) -> list[Message]:
        return [decode_message(body) for body in FrameDecoder(None).feed(write)]


def _requests(channel: str, n: int) -> bytes:
    return b"".join(encode_frame(encode_request("app", channel, i, timeout_ms=5000)[1]) for i in range(n))


@pytest.fixture
async def server() -> IPCServer:
    server = IPCServer("127.0.0.1", 0)
    server.loop = asyncio.get_running_loop()
    return server


async def test_frames_queued_while_a_read_is_handled_go_out_in_one_write_when_it_is(server: IPCServer) -> None:
    responder, requester = Peer(server, "responder"), Peer(server, "requester")
    responder.read(encode_frame(encode_message(Message.build(MessageType.SUBSCRIBE, "app", "work", {"serve": True}))))
    responder.transport.writes.clear()
    requester.read(_requests("work", 3))
    assert len(responder.transport.writes) == 1  # no loop iteration needed
    assert [m.payload for m in responder.frames(responder.transport.writes[0])] == [0, 1, 2]


async def test_a_large_batch_goes_out_in_pieces(server: IPCServer) -> None:
    responder, requester = Peer(server, "responder"), Peer(server, "requester")
    responder.read(encode_frame(encode_message(Message.build(MessageType.SUBSCRIBE, "app", "work", {"serve": True}))))
    responder.transport.writes.clear()
    requester.read(_requests("work", _FLUSH_EVERY_FRAMES + 1))
    assert [len(responder.frames(w)) for w in responder.transport.writes] == [_FLUSH_EVERY_FRAMES, 1]


async def test_a_lone_handler_answer_goes_out_as_the_handler_returns(server: IPCServer) -> None:
    async def echo(msg: Message) -> Any:
        return msg.payload

    server.add_handler("echo", echo)
    requester = Peer(server, "requester")
    requester.read(_requests("echo", 1))
    assert requester.transport.writes == []
    await asyncio.sleep(0)  # one loop iteration: the handler's task runs, and writes
    assert [m.payload for w in requester.transport.writes for m in requester.frames(w)] == [0]


async def test_the_answers_of_handlers_started_by_one_read_go_out_together(server: IPCServer) -> None:
    async def echo(msg: Message) -> Any:
        return msg.payload

    server.add_handler("echo", echo)
    requester = Peer(server, "requester")
    requester.read(_requests("echo", 5))
    await asyncio.sleep(0)
    assert len(requester.transport.writes) == 1
    assert [m.payload for m in requester.frames(requester.transport.writes[0])] == [0, 1, 2, 3, 4]


async def test_an_answer_after_an_await_goes_out_at_once(server: IPCServer) -> None:
    release = asyncio.Event()

    async def slow(msg: Message) -> Any:
        await release.wait()
        return msg.payload

    server.add_handler("slow", slow)
    requester = Peer(server, "requester")
    requester.read(_requests("slow", 2))
    await asyncio.sleep(0)  # both started, both waiting
    release.set()
    for _ in range(3):
        await asyncio.sleep(0)
    answers = [m.payload for w in requester.transport.writes for m in requester.frames(w)]
    assert sorted(answers) == [0, 1]
