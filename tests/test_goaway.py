"""The shutdown's close of each connection (docs/protocol.md §13 item 3,
ipc_server/goaway.py): no reset may discard answers a client has not read.
A client granted ``goaway`` is told to send no more and read on, the server
answering what crosses the notice; any other peer has the server's writing
side shut, and what it sends after is read and dropped, never reset."""

from __future__ import annotations

import asyncio

from ipc_protocol import Message
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame


def _is_goaway(msg: Message) -> bool:
    return msg.channel_id == "system" and isinstance(msg.payload, dict) and msg.payload.get("event") == "goaway"


async def _until(predicate: object) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_a_peer_granted_goaway_is_told_then_answered_until_it_closes() -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        server.add_handler("echo", lambda m: m.payload)
        peer = await RawPeer.open(server.port)
        peer.send(frame("request", "system", {"action": "connect", "connection_id": "p", "protocol": 2, "features": ["goaway"]}, message_id="hello"))
        assert (await peer.recv()).payload["features"] == ["goaway"]
        closing = asyncio.ensure_future(server.close())
        notice = await peer.recv()
        assert (notice.message_type.value, notice.channel_id, notice.payload, notice.reply_to) == ("publish", "system", {"event": "goaway"}, None)
        # What crosses the notice is read and answered, not reset.
        for i in range(20):
            peer.send(frame("request", "echo", i, message_id=f"late-{i}"))
        answers = [await peer.recv() for _ in range(20)]
        assert [(a.reply_to, a.error.code if a.error else None) for a in answers] == [(f"late-{i}", "shutting_down") for i in range(20)]
        assert not closing.done()  # the server waits for the client to close
        await peer.close()
        await asyncio.wait_for(closing, WAIT_S)


async def test_a_peer_without_goaway_still_reads_what_was_written_before_the_close() -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        release = asyncio.Event()

        async def slow(msg: Message) -> str:
            await release.wait()
            return "done"

        server.add_handler("slow", slow)
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        peer.send(frame("request", "slow", None, message_id="first"))
        await _until(lambda: server.stats.requests >= 1)
        closing = asyncio.ensure_future(server.close(grace_s=WAIT_S))
        await _until(lambda: server._shutdown.draining)
        release.set()  # answered within the grace: written, then the close
        (conn,) = server.connections
        await _until(lambda: conn._ended)
        # The peer, unaware, sends on before it reads: a closed socket would
        # answer with a reset, and the reset discard the answer unread.
        for i in range(50):
            peer.send(frame("request", "slow", None, message_id=f"late-{i}"))
        await peer.writer.drain()  # a reset would show here already (ConnectionResetError)
        got = await peer.closed()
        assert [m.reply_to for m in got] == ["first"]
        assert got[0].payload == "done"
        await peer.close()
        await asyncio.wait_for(closing, WAIT_S)


def test_the_feature_and_the_notice_are_those_of_the_shared_spec() -> None:
    import json
    from pathlib import Path

    from ipc_protocol.cluster_info import ASKED_FEATURES
    from ipc_protocol.restarts import GOAWAY, goaway_notice, is_goaway

    spec = json.loads((Path(__file__).resolve().parent.parent / "interop-tests" / "spec" / "restarts.json").read_text())["goaway"]
    notice = goaway_notice("app")
    assert GOAWAY == spec["feature"] and GOAWAY in ASKED_FEATURES
    assert {"message_type": notice.message_type.value, "channel_id": notice.channel_id, "payload": notice.payload} == spec["notice"]
    assert is_goaway(notice) and not is_goaway(notice.model_copy(update={"channel_id": "news"}))
