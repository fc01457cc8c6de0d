"""One connection's read does not hold the loop (docs/protocol.md §12,
docs/security.md §4): its frames go on a share of a loop turn at a time
(``ipc_server/reading.py``), in order, and other connections are read
between. Over real loopback TCP, with raw peers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest

from ipc_protocol import MessageType, encode_frame
from ipc_server import IPCServer, reading

from .conftest import WAIT_S, RawPeer, frame
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



async def test_the_hard_outbound_limit_cuts_within_a_frame_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/protocol.md §12.2: past ``max_outbound_buffer_bytes`` the
    connection is cut at once, not once the loop turn that queued the
    frames ends (a long one here: 200 answers of ~40 KB from one read)."""
    monkeypatch.setattr(reading, "TURN_BUDGET_S", 60.0)
    hard = 1024 * 1024
    async with IPCServer("127.0.0.1", 0, max_outbound_buffer_bytes=hard, outbound_soft_limit_bytes=None) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # what the server holds is what it sent
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        hog = RawPeer(*await asyncio.open_connection(sock=sock))
        try:
            await hog.handshake("hog")
            hog.send_raw(b"".join(_frame("subscribe", f"pattern.{i:05d}.*", f"s{i}") for i in range(2000)))
            for _ in range(2000):
                await hog.recv()
            conn = _conn(server, "hog")
            async with asyncio.timeout(WAIT_S):  # backed up: the kernel's buffers are full, under the limit
                while not conn.backed_up:
                    hog.send_raw(_frame("request", "system", f"b{conn.frames_in}", {"action": "channels"}))
                    await asyncio.sleep(0.01)
            assert server.stats.slow_consumers == 0
            hog.send_raw(b"".join(_frame("request", "system", f"c{i}", {"action": "channels"}) for i in range(200)))
            await until(lambda: server.stats.slow_consumers == 1, "the cut")
            [cut] = server.stats.snapshot()["slow_consumers_cut"]
            assert cut["limit"] == "hard" and hard < cut["buffered_bytes"] <= hard + 64 * 1024
        finally:
            await hog.close()


def _frame(mtype: str, channel: str, message_id: str, payload: Any = None) -> bytes:
    return encode_frame(json.dumps(frame(mtype, channel, payload, app_id="hog", message_id=message_id)).encode())


async def test_a_loop_stall_does_not_close_a_peer_that_answers_pings() -> None:
    """§9: a peer is closed for silence only once a ping sent in it went
    unanswered; after the server's own loop stalled (here for 5 heartbeat
    timeouts), each silent peer is pinged first."""
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=0.1) as server:
        peer = await RawPeer.open(server.port)
        try:
            await peer.handshake("idle")
            conn = _conn(server, "idle")
            pings = 0

            async def answer(pings_wanted: int) -> None:
                nonlocal pings
                while pings < pings_wanted:
                    msg = await peer.recv()  # EOFError if the server closed it
                    if msg.message_type is MessageType.REQUEST:
                        pings += 1
                        peer.send(frame("response", "system", {"status": "pong"}, app_id="idle", message_id=f"r{pings}", reply_to=msg.message_id))

            await answer(2)
            read = conn.frames_in
            await until(lambda: conn.frames_in > read, "the pong read")
            time.sleep(1.0)  # the server's loop (this test's) stalls: nothing is read or sent meanwhile
            await answer(pings + 3)  # pinged after the stall, and again: it was kept
            assert conn.close_reason is None
        finally:
            await peer.close()


async def test_the_soft_limit_cuts_a_connection_nothing_more_is_written_to() -> None:
    """§12.2: over ``outbound_soft_limit_bytes`` for ``outbound_soft_limit_s``
    the connection is cut, also when the burst that put it there was the last
    thing written to it (the server's sweep checks it)."""
    from .test_limits_outbound import _Subscriber

    async with IPCServer("127.0.0.1", 0, max_outbound_buffer_bytes=None, outbound_soft_limit_bytes=256 * 1024, outbound_soft_limit_s=0.2) as server:
        sub = await _Subscriber.open(server.port, "burst")
        try:
            pub = await RawPeer.open(server.port)
            await pub.handshake()
            blob = "x" * 10_000
            pub.send_raw(b"".join(encode_frame(json.dumps(frame("publish", "burst", {"i": i, "blob": blob}, message_id=f"q{i}")).encode()) for i in range(1500)))
            await until(lambda: server.stats.slow_consumers == 1, "the soft cut")
            [cut] = server.stats.snapshot()["slow_consumers_cut"]
            assert cut["limit"] == "soft"
            await pub.close()
        finally:
            await sub.peer.close()


class _TickClock:
    """``reading``'s clock, 1 ms further at every reading: a frame's cost is
    the number of clock readings, the same on any machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.mark.parametrize("hogs", [4, 12])
async def test_connections_waiting_for_turns_share_one_budget(monkeypatch: pytest.MonkeyPatch, hogs: int) -> None:
    """N connections with frames waiting get 5 ms between them, not 5 ms
    each: another's request waits about one budget, not N (reading.py)."""
    monkeypatch.setattr(reading, "monotonic", _TickClock())
    async with IPCServer("127.0.0.1", 0) as server:
        peers = [await RawPeer.open(server.port) for _ in range(hogs + 1)]
        try:
            for i, peer in enumerate(peers):
                await peer.handshake(f"app{i}")
            other, hogging = peers[0], peers[1:]
            conns = [_conn(server, f"app{i}") for i in range(1, hogs + 1)]
            for i, hog in enumerate(hogging, 1):
                hog.send_raw(_pings(f"app{i}", 3000))
            await until(lambda: server.reads.waiting == hogs, "every hog waiting for its turns")
            assert server.reads.turn_s == pytest.approx(reading.TURN_BUDGET_S / hogs)
            before = sum(c.traffic.received[MessageType.REQUEST] for c in conns)
            other.send(frame("request", "system", {"action": "ping"}, app_id="app0", message_id="mine"))
            assert (await other.recv_until(lambda m: m.reply_to == "mine")).payload == {"status": "pong"}
            meanwhile = sum(c.traffic.received[MessageType.REQUEST] for c in conns) - before
            # A turn of the full 5 ms is 16 frames on this clock; with the budget shared
            # a turn is 1-2 frames, so a round of the hogs' turns is ~hogs frames, not 16 x hogs.
            assert meanwhile < 8 * hogs, meanwhile
            for hog in hogging:  # every frame went on, in order (the server's pings aside: this clock makes them look silent)
                answers: list[str | None] = []
                while len(answers) < 3000:
                    if (msg := await hog.recv()).message_type is MessageType.RESPONSE:
                        answers.append(msg.reply_to)
                assert answers == [f"p{j}" for j in range(3000)]
            await until(lambda: server.reads.waiting == 0, "no connection waiting")
            assert server.reads.turn_s == reading.TURN_BUDGET_S
        finally:
            for peer in peers:
                await peer.close()
