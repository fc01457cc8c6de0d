"""One connection's read does not hold the loop (docs/protocol.md §12,
docs/security.md §4): its frames go on a share of a loop turn at a time
(``ipc_server/reading.py``), in order, and other connections are read
between. Over real loopback TCP, with raw peers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipc_protocol import MessageType, encode_frame
from ipc_server import IPCServer, reading

from .conftest import RawPeer, frame
from .test_streams import until


def _pings(app: str, n: int) -> bytes:
    return b"".join(encode_frame(json.dumps(frame("request", "system", {"action": "ping"}, app_id=app, message_id=f"p{i}")).encode()) for i in range(n))


def _conn(server: IPCServer, app: str) -> Any:
    return next(c for c in server.connections if c.app_id == app)


async def test_another_connection_is_answered_while_a_large_read_waits_for_its_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reading, "TURN_BUDGET_S", 0.0)  # every frame costs the whole budget: one frame a turn
    async with IPCServer("127.0.0.1", 0) as server:
        hog, other = await RawPeer.open(server.port), await RawPeer.open(server.port)
        try:
            await hog.handshake("hog")
            await other.handshake("other")
            conn = _conn(server, "hog")
            dispatched = conn.traffic.received  # the hog app's messages that went on, by type
            before = dispatched[MessageType.REQUEST]
            n = 600
            hog.send_raw(_pings("hog", n))  # one write: one read
            await until(lambda: conn.frames_in > 1, "the hog's frames read")
            other.send(frame("request", "system", {"action": "ping"}, app_id="other", message_id="mine"))
            pong = await other.recv_until(lambda m: m.reply_to == "mine")
            assert pong.payload == {"status": "pong"}
            # Answered while most of the hog's frames still waited for their turns.
            assert dispatched[MessageType.REQUEST] - before < n // 2
            assert conn.unread_frames > 0
            # Every frame of the hog went on, in order, and its socket is read again.
            answers = [await hog.recv() for _ in range(n)]
            assert [a.reply_to for a in answers] == [f"p{i}" for i in range(n)]
            assert conn.unread_frames == 0 and conn.transport.is_reading()
            hog.send(frame("request", "system", {"action": "ping"}, app_id="hog", message_id="again"))
            assert (await hog.recv()).reply_to == "again"
        finally:
            await hog.close()
            await other.close()

