"""The server's socket adapter: when queued frames reach the transport.

A real IPCServer routes the frames; only the transports are recorders, so
the tests can see each write (over TCP the peer cannot tell writes apart).
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest

from ipc_protocol import FrameDecoder, Message, MessageType, decode_message, encode_frame, encode_message
from ipc_protocol.envelope import encode_request
from ipc_protocol.messages import connect_request
from ipc_server import IPCServer
from ipc_server.connection import _FLUSH_EVERY_FRAMES, ServerConnection
from ipc_server import reading
from ipc_server.inflight import InflightLimit

from .recording_transport import RecordingTransport


class Peer:
    """One connection of the server, fed bytes as if read from its socket."""

    def __init__(self, server: IPCServer, name: str) -> None:
        self.conn = ServerConnection(server)
        self.transport = RecordingTransport()
        self.conn.connection_made(self.transport)
        self.read(encode_frame(encode_message(connect_request("app", name, client="test"))))

    def read(self, data: bytes) -> None:
        """One read from the socket: the bytes land in the server's buffer."""
        view = self.conn.get_buffer(len(data))
        view[: len(data)] = data
        self.conn.buffer_updated(len(data))

    def frames(self, write: bytes) -> list[Message]:
        return [decode_message(body) for body in FrameDecoder(None).feed(write)]


def _requests(channel: str, n: int) -> bytes:
    return b"".join(encode_frame(encode_request("app", channel, i, timeout_ms=5000)[1]) for i in range(n))


@pytest.fixture(autouse=True)
def whole_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read's frames go on in one turn, however slow the machine: the
    writes these tests count are those of one turn (a turn's budget is
    time: reading.py, tests/test_fair_reads.py)."""
    monkeypatch.setattr(reading, "TURN_BUDGET_S", 60.0)


@pytest.fixture
async def server() -> IPCServer:
    server = IPCServer("127.0.0.1", 0)
    server.loop = asyncio.get_running_loop()
    return server


async def test_the_frames_of_a_loop_iteration_go_out_in_one_write_when_it_ends(server: IPCServer) -> None:
    responder, requester = Peer(server, "responder"), Peer(server, "requester")
    await asyncio.sleep(0)  # the handshake answers go out
    responder.read(encode_frame(encode_message(Message.build(MessageType.SUBSCRIBE, "app", "work", {"serve": True}))))
    requester.read(_requests("work", 1))
    requester.read(_requests("work", 2))
    await asyncio.sleep(0)
    responder.transport.writes.clear()
    requester.read(_requests("work", 3))
    requester.read(_requests("work", 1))
    assert responder.transport.writes == []  # nothing before the iteration ends
    await asyncio.sleep(0)
    assert len(responder.transport.writes) == 1
    assert [m.payload for m in responder.frames(responder.transport.writes[0])] == [0, 1, 2, 0]


async def test_a_large_batch_goes_out_in_pieces(server: IPCServer) -> None:
    """A peer starts on the first frames while the server encodes the rest."""
    responder, requester = Peer(server, "responder"), Peer(server, "requester")
    responder.read(encode_frame(encode_message(Message.build(MessageType.SUBSCRIBE, "app", "work", {"serve": True}))))
    await asyncio.sleep(0)
    responder.transport.writes.clear()
    requester.read(_requests("work", _FLUSH_EVERY_FRAMES + 1))
    assert [len(responder.frames(w)) for w in responder.transport.writes] == [_FLUSH_EVERY_FRAMES]
    await asyncio.sleep(0)
    assert [len(responder.frames(w)) for w in responder.transport.writes] == [_FLUSH_EVERY_FRAMES, 1]


async def test_each_write_before_the_iteration_ends_doubles_the_next_one(server: IPCServer) -> None:
    """A very large batch (a fan-out of a read of hundreds of publishes) takes a
    few writes, not one per 32 frames; the next iteration starts at 32 again."""
    responder, requester = Peer(server, "responder"), Peer(server, "requester")
    responder.read(encode_frame(encode_message(Message.build(MessageType.SUBSCRIBE, "app", "work", {"serve": True}))))
    await asyncio.sleep(0)
    responder.transport.writes.clear()
    n = _FLUSH_EVERY_FRAMES
    requester.read(_requests("work", n + 2 * n + 4 * n + 1))
    assert [len(responder.frames(w)) for w in responder.transport.writes] == [n, 2 * n, 4 * n]
    await asyncio.sleep(0)
    assert [len(responder.frames(w)) for w in responder.transport.writes] == [n, 2 * n, 4 * n, 1]
    responder.transport.writes.clear()
    requester.read(_requests("work", n + 1))
    await asyncio.sleep(0)
    assert [len(responder.frames(w)) for w in responder.transport.writes] == [n, 1]


async def test_what_a_read_of_one_frame_sends_is_written_at_once(server: IPCServer) -> None:
    """Nothing else in the read could join it; later frames of the iteration are batched."""
    responder, requester = Peer(server, "responder"), Peer(server, "requester")
    responder.read(encode_frame(encode_message(Message.build(MessageType.SUBSCRIBE, "app", "work", {"serve": True}))))
    await asyncio.sleep(0)
    responder.transport.writes.clear()
    requester.read(_requests("work", 1))
    assert [[m.payload for m in responder.frames(w)] for w in responder.transport.writes] == [[0]]
    requester.read(_requests("work", 1))
    requester.read(_requests("work", 2))
    assert len(responder.transport.writes) == 1  # the rest waits for the iteration's end
    await asyncio.sleep(0)
    assert [[m.payload for m in responder.frames(w)] for w in responder.transport.writes] == [[0], [0, 0, 1]]


async def _requester_past_its_handshake(server: IPCServer) -> Peer:
    """A connection whose handshake answer went out; its writes start empty."""
    requester = Peer(server, "requester")
    await asyncio.sleep(0)
    requester.transport.writes.clear()
    return requester


async def test_the_answers_of_a_reads_handlers_go_out_together_in_the_iteration_they_run(server: IPCServer) -> None:
    """No loop iteration of latency added between a handler's answer and its write."""

    async def echo(msg: Message) -> Any:
        return msg.payload

    server.add_handler("echo", echo)
    requester = await _requester_past_its_handshake(server)
    requester.read(_requests("echo", 5))
    await asyncio.sleep(0)  # one iteration: the handler tasks run, then the write
    assert len(requester.transport.writes) == 1
    assert [m.payload for m in requester.frames(requester.transport.writes[0])] == [0, 1, 2, 3, 4]


async def test_the_answer_to_a_connections_only_request_is_written_before_the_books_close(server: IPCServer) -> None:
    """Nothing could join it: its bookkeeping waits, the requester does not."""

    async def echo(msg: Message) -> Any:
        return msg.payload

    server.add_handler("echo", echo)
    requester = await _requester_past_its_handshake(server)
    inflight_at_write: list[int] = []
    record = requester.transport.write
    requester.transport.write = lambda data: (inflight_at_write.append(requester.conn.inflight.count), record(data))  # type: ignore[method-assign]
    requester.read(_requests("echo", 1))
    await asyncio.sleep(0)
    assert inflight_at_write == [1]  # written while its request still counted
    assert requester.conn.inflight.count == 0
    assert [m.payload for m in requester.frames(requester.transport.writes[0])] == [0]


async def test_a_handler_that_waits_is_answered_when_it_finishes(server: IPCServer) -> None:
    release = asyncio.Event()

    async def slow(msg: Message) -> Any:
        await release.wait()
        return msg.payload

    server.add_handler("slow", slow)
    requester = await _requester_past_its_handshake(server)
    requester.read(_requests("slow", 2))
    await asyncio.sleep(0)
    assert requester.transport.writes == []  # the flush queued behind them found nothing to send
    release.set()
    for _ in range(3):  # the event wakes the handlers, they answer, the write
        await asyncio.sleep(0)
    assert [m.payload for w in requester.transport.writes for m in requester.frames(w)] == [0, 1]


async def test_a_failing_connection_sends_what_it_queued_then_its_error(server: IPCServer) -> None:
    requester = Peer(server, "requester")
    requester.read(encode_frame(encode_message(Message.build(MessageType.REQUEST, "app", "system", {"action": "ping"}))))
    requester.read(encode_frame(b"[1]"))  # not an object: bad_frame, and the connection closes
    frames = [m for w in requester.transport.writes for m in requester.frames(w)]
    assert frames[0].payload["status"] == "connected" and frames[1].payload == {"status": "pong"}
    assert frames[-1].error is not None and frames[-1].error.code == "bad_frame"
    assert requester.transport.closing


def test_only_the_facade_knows_the_server_module() -> None:
    """The pump and the concerns talk to the server through interfaces, not imports."""
    package = Path(ServerConnection.__module__.replace(".", "/")).parent
    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / package).glob("*.py")):
        if path.name in ("__init__.py", "command.py", "server.py"):
            continue
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "server" not in imported and "ipc_server.server" not in imported, path.name


def test_past_the_inflight_limit_new_work_is_held_and_answers_are_not() -> None:
    calls: list[str] = []

    class Reader:
        def pause_reading(self) -> None:
            calls.append("pause")

        def resume_reading(self) -> None:
            calls.append("resume")

        def release_held(self) -> None:
            calls.append("release")

    def msg(mtype: MessageType, mid: str, reply_to: str | None = None) -> Message:
        return Message.build(mtype, "app", "ch", None, message_id=mid, reply_to=reply_to)

    limit = InflightLimit(2, Reader(), max_held_bytes=1000)
    limit.started()
    assert not limit.holding
    limit.started()
    assert limit.holding and limit.full
    publish, response = msg(MessageType.PUBLISH, "p"), msg(MessageType.RESPONSE, "r", reply_to="x")
    assert not limit.waits(publish) and not limit.waits(response)  # nothing held: they take no place
    assert limit.waits(msg(MessageType.REQUEST, "q1"))
    limit.hold(msg(MessageType.REQUEST, "q1"), b"q1" * 100, 0.0)
    limit.hold(msg(MessageType.REQUEST, "q2"), b"q2" * 100, 0.0)
    assert limit.waits(publish) and not limit.waits(response)  # behind held work, in order; answers never
    assert not limit.waits(msg(MessageType.CANCEL, "c", reply_to="q1"))  # goes at once, and takes q1 out
    assert [entry.request_id for entry in limit.held] == ["q2"] and calls == []
    limit.hold(msg(MessageType.REQUEST, "q3"), b"q3" * 400, 0.0)  # past 1,000 bytes held: the socket waits
    assert calls == ["pause"] and limit.reading_paused
    limit.finished()
    assert calls == ["pause", "release"]
    first = limit.take_next()  # one place free: q2 goes alone, q3 stays held as it was
    assert first is not None and first.body == b"q2" * 100 and not limit.holding  # dispatched, not held again
    limit.started()
    limit.went()
    assert limit.take_next() is None and limit.holding and limit.held_count == 1  # q3 waits for the next place
    limit.finished()
    limit.finished()  # one release scheduled, not two
    assert calls == ["pause", "release"]
    second = limit.take_next()
    assert second is not None and second.body == b"q3" * 400
    limit.went()
    assert not limit.holding and limit.held_count == 0
    assert limit.released() and not limit.reading_paused
    unlimited = InflightLimit(None, Reader())
    for _ in range(10_000):
        unlimited.started()
    assert not unlimited.holding
