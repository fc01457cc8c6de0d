"""Large frames without fresh memory or transport copies (docs/performance.md,
"Binary payloads"): the kept receive buffers (``ipc_protocol.frame_buffers``)
are reused only when nothing holds them; a large binary frame goes out a
window at a time (``ipc_server.outbound.FrameWindows``), and a peer cut as
a slow consumer in the middle of one still gets it whole before the error."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import FrameDecoder, MessageType, decode_message
from ipc_protocol.framing import ASSEMBLE_FROM_BYTES
from ipc_protocol.constants import HANDSHAKE_MAX_FRAME_SIZE
from ipc_protocol.frame_buffers import KEPT_FROM_BYTES, FrameBuffers
from ipc_server import IPCServer
from ipc_server.outbound import WINDOW_BYTES, Backlog, FrameWindows

from .conftest import WAIT_S, RawPeer, frame

MiB = 1024 * 1024

# -- kept receive buffers -----------------------------------------------------------------


def _take(buffers: FrameBuffers, n: int) -> bytearray:
    """A kept buffer of ``n`` bytes if one is free, else a new one."""
    buf = buffers.reuse(n)
    return bytearray(n) if buf is None else buf


def _kept(buffers: FrameBuffers, n: int) -> int:
    """Take a buffer of ``n`` bytes, offer it back, and keep only its id
    (a reference held here would hold the buffer)."""
    buf = _take(buffers, n)
    buffers.keep(buf)
    return id(buf)


def test_a_kept_buffer_is_reused_once_nothing_holds_it() -> None:
    buffers = FrameBuffers()
    first = _kept(buffers, MiB)
    assert id(_take(buffers, MiB)) == first  # free: reused
    view = memoryview(_take(buffers, MiB))[10:20]  # an attachment's view, handed on
    assert id(view.obj) == first
    assert id(_take(buffers, MiB)) != first  # held: never written to
    view.release()
    del view
    assert id(_take(buffers, MiB)) == first


def test_a_kept_buffer_fits_a_frame_up_to_half_its_size_without_moving() -> None:
    buffers = FrameBuffers()
    first = _kept(buffers, MiB)
    assert len(_take(buffers, MiB // 2 + 1)) == MiB // 2 + 1
    assert id(_take(buffers, MiB // 2 + 1)) == first
    assert id(_take(buffers, MiB)) == first  # and back, within its allocation
    assert len(_take(buffers, MiB)) == MiB
    assert id(_take(buffers, MiB // 2 - 1)) != first  # less than half: a new one
    assert id(_take(buffers, MiB + 1)) != first  # more than it holds: a new one


def test_what_is_kept_is_bounded_and_small_buffers_are_not_kept() -> None:
    buffers = FrameBuffers(max_bytes=3 * MiB)
    held = [_take(buffers, MiB) for _ in range(5)]
    for buf in held:
        buffers.keep(buf)
    assert buffers.kept_bytes <= 3 * MiB
    buffers.keep(bytearray(KEPT_FROM_BYTES - 1))
    assert buffers.kept_bytes <= 3 * MiB
    # All held: nothing to make room with, so another is not kept.
    before = buffers.kept_bytes
    buffers.keep(bytearray(2 * MiB))
    assert buffers.kept_bytes == before
    # Once free, the oldest go to make room.
    del held, buf
    extra = _kept(buffers, 2 * MiB)
    assert id(_take(buffers, 2 * MiB)) == extra and buffers.kept_bytes <= 3 * MiB


def test_frames_read_into_a_reused_buffer_are_each_their_own_bytes() -> None:
    """A body handed on still holds its buffer: the next frame gets another."""
    decoder = FrameDecoder(None)
    decoder.buffers = FrameBuffers()
    bodies = [b"\x00" + os.urandom(KEPT_FROM_BYTES + 100), b"{" + b"x" * (KEPT_FROM_BYTES + 99)]
    got = []
    for body in bodies * 3:
        data = len(body).to_bytes(4, "big") + body
        for i in range(0, len(data), 65536):
            got += decoder.feed(data[i : i + 65536])
    assert [bytes(b) for b in got] == bodies * 3


# -- a window at a time ----------------------------------------------------------------------


class _Transport:
    """Takes writes as asyncio's does: pauses once it holds more than ``high``."""

    def __init__(self, backlog: Backlog, socket_takes: int) -> None:
        self.backlog, self.socket_takes = backlog, socket_takes
        self.out = bytearray()
        self.held = 0
        self.high, self.low = MiB, 256 * 1024
        self.limits: list[tuple[int, int]] = []

    def write(self, data: Any) -> None:
        self.out += data
        taken = min(len(data), self.socket_takes) if not self.held else 0
        self.held += len(data) - taken
        if self.held > self.high:
            self.backlog.paused = True

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.low, self.high

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.high, self.low = high, low
        self.limits.append((high, low))
        if self.held > high:
            self.backlog.paused = True


def test_a_large_frame_goes_out_a_window_at_a_time_while_the_socket_takes_them() -> None:
    parts = (b"head", os.urandom(3 * WINDOW_BYTES + 5), b"", os.urandom(10))
    backlog = Backlog()
    backlog.hold(FrameWindows(parts))
    transport = _Transport(backlog, socket_takes=10 * MiB)
    assert backlog.resume(transport) is True
    assert bytes(transport.out) == b"".join(parts) and backlog.nbytes == 0
    assert transport.limits == [(1, 0), (MiB, 256 * 1024)]  # windowed, then its own again


def test_a_window_the_socket_leaves_part_of_pauses_the_frame_until_the_transport_is_empty() -> None:
    body = os.urandom(4 * WINDOW_BYTES)
    backlog = Backlog()
    windows = FrameWindows((b"head", body))
    backlog.hold(windows)
    backlog.hold(b"next frame")
    transport = _Transport(backlog, socket_takes=WINDOW_BYTES // 2)
    assert backlog.resume(transport) is False
    assert len(transport.out) == 4 + WINDOW_BYTES  # the head, then one window: the transport holds half of it
    assert windows.begun and backlog.nbytes == len(body) - WINDOW_BYTES + len(b"next frame")
    # Cut now: the frame that began ends first, then nothing else of the backlog.
    assert b"".join(bytes(v) for v in backlog.begun_rest()) == body[WINDOW_BYTES:]
    backlog.unwindow(transport)
    assert transport.limits[-1] == (MiB, 256 * 1024)


def test_a_frame_that_has_not_begun_is_dropped_whole_by_a_cut() -> None:
    backlog = Backlog()
    backlog.hold(FrameWindows((b"x" * (2 * WINDOW_BYTES),)))
    assert backlog.begun_rest() == []


# -- over real sockets --------------------------------------------------------------------------


async def test_a_binary_subscriber_cut_mid_frame_reads_that_frame_whole_then_the_error() -> None:
    """Cut as a slow consumer while a large frame is half written: the rest of
    it goes out first, so the peer's framing holds and the error frame is read."""
    async with IPCServer("127.0.0.1", 0, max_outbound_buffer_bytes=3 * MiB, outbound_soft_limit_bytes=None) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        slow = RawPeer(*await asyncio.open_connection(sock=sock))
        slow.send(frame("request", "system", {"action": "connect", "connection_id": "raw", "protocol": 2, "features": ["binary"]}, message_id="hello"))
        assert (await slow.recv()).payload["status"] == "connected"
        slow.send(frame("subscribe", "video", message_id="sub"))
        assert (await slow.recv_until(lambda m: m.reply_to == "sub")).payload == {"status": "subscribed"}
        slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
        chunks: list[bytes] = []
        async with IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S) as publisher:
            async with asyncio.timeout(WAIT_S * 4):
                while server.stats.slow_consumers == 0:
                    chunks.append(os.urandom(2 * MiB + 7 * len(chunks)))
                    await publisher.publish("video", {"seq": len(chunks) - 1, "chunk": chunks[-1]})
                    await publisher.request("system", {"action": "ping"})  # fanned out before the next
        slow.writer.transport.resume_reading()  # type: ignore[attr-defined]
        decoder, got = FrameDecoder(None), []
        async with asyncio.timeout(WAIT_S * 4):
            while data := await slow.reader.read(1 << 20):
                got += [decode_message(body) for body in decoder.feed(data)]
        assert got[-1].error is not None and got[-1].error.code == "slow_consumer"
        publishes = [m for m in got[:-1] if m.message_type is MessageType.PUBLISH]
        assert publishes, "the cut came before any frame went out"
        assert [m.payload for m in publishes] == [{"seq": i, "chunk": chunks[i]} for i in range(len(publishes))]
        await slow.close()


def _held(conn: Any, shared: memoryview) -> int:
    """The bytes ``conn``'s frame being read holds: what came of its body
    (``buffered`` counts its prefix too), and the room its next read may land in."""
    return int(conn.protocol._decoder.buffered) - 4 + len(conn.protocol.read_buffer(shared))


async def test_a_length_prefix_makes_the_server_hold_what_was_sent_not_what_it_announced() -> None:
    """Before its handshake a socket's frame (at most
    ``HANDSHAKE_MAX_FRAME_SIZE``) is held as its bytes arrive; once open, a
    large frame is read in place into a buffer that grows with what arrives
    (at most twice that), and comes out whole."""
    async with IPCServer("127.0.0.1", 0) as server, IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S) as sub:
        got: asyncio.Queue[Any] = asyncio.Queue()
        await sub.subscribe("big", lambda msg: got.put_nowait(msg.payload))
        peers = [await RawPeer.open(server.port) for _ in range(3)]
        before = sum(conn.bytes_in for conn in server.connections)
        for peer in peers:
            peer.send_raw(HANDSHAKE_MAX_FRAME_SIZE.to_bytes(4, "big") + b'{"x')
        async with asyncio.timeout(WAIT_S):
            while sum(conn.bytes_in for conn in server.connections) < before + 3 * 7:
                await asyncio.sleep(0.01)
        shared = memoryview(bytearray(16))
        assert all(conn.protocol.read_buffer(shared) is shared for conn in server.connections)
        opened = await RawPeer.open(server.port)
        connected = (await opened.handshake()).payload
        assert connected["status"] == "connected"
        conn = next(c for c in server.connections if c.connection_id == connected["connection_id"])
        payload = "y" * (6 * MiB)
        body = json.dumps(frame("publish", "big", payload, message_id="big-1")).encode()
        data = len(body).to_bytes(4, "big") + body
        sent = 0
        for upto in (7, MiB, 3 * MiB):
            opened.send_raw(data[sent:upto])
            sent = upto
            async with asyncio.timeout(WAIT_S):
                while conn.protocol._decoder.buffered < upto:
                    await asyncio.sleep(0.01)
            assert conn.protocol.read_buffer(shared) is not shared  # read in place
            assert _held(conn, shared) <= max(ASSEMBLE_FROM_BYTES, 2 * upto)
        opened.send_raw(data[sent:])
        async with asyncio.timeout(WAIT_S):
            assert await got.get() == payload
        for peer in (*peers, opened):
            await peer.close()


async def test_a_connection_gone_frees_its_half_read_frame_and_held_requests_at_once() -> None:
    """What a closed connection was reading, and the requests it had
    waiting for a place, are freed when it closes, not whenever the
    garbage collector frees the connection (docs/security.md §4)."""
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=1) as server, IPCClient("app", "127.0.0.1", server.port) as worker:
        started = asyncio.Event()

        async def never(msg: Any) -> None:
            started.set()
            await asyncio.Event().wait()

        await worker.serve("slow", never)
        peer = await RawPeer.open(server.port)
        connected = (await peer.handshake()).payload
        conn = next(c for c in server.connections if c.connection_id == connected["connection_id"])
        for i in range(2):  # the second waits for the first's place
            peer.send(frame("request", "slow", "x" * 1000, message_id=f"q{i}", timeout_ms=60_000))
        await asyncio.wait_for(started.wait(), WAIT_S)
        peer.send_raw((16 * MiB).to_bytes(4, "big") + b"z" * (2 * MiB))
        shared = memoryview(bytearray(16))
        async with asyncio.timeout(WAIT_S):
            while conn.protocol._decoder.buffered < 2 * MiB or not conn.inflight.held:
                await asyncio.sleep(0.01)
        await peer.close()
        async with asyncio.timeout(WAIT_S):
            while conn in server.connections:
                await asyncio.sleep(0.01)
        assert conn.protocol._decoder.buffered == 0 and conn.protocol.read_buffer(shared) is shared
        assert not conn.inflight.held and conn.inflight.held_bytes == 0


def large_client(server: IPCServer) -> IPCClient:
    """A client of ``server`` that sends and takes frames of up to 64 MiB."""
    return IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S, max_frame_size=64 * MiB)


async def closing_behind_a_large_frame() -> None:
    """The Python client writes a large frame a window at a time too, and
    what waits of it when it disconnects goes out before the close: the
    server, reading again, gets it whole and fans it out."""
    async with IPCServer("127.0.0.1", 0, max_frame_size=64 * MiB) as server:
        async with large_client(server) as sub:
            got: list[Any] = []
            done = asyncio.Event()

            def on_message(msg: Any) -> None:
                got.append(msg.payload)
                done.set()

            await sub.subscribe("video", on_message)
            before = server.connections
            pub = large_client(server)
            await pub.connect()
            [conn] = server.connections - before
            assert conn.transport is not None
            conn.transport.pause_reading()  # the socket's buffers fill: the rest of the frame waits in the client
            chunk = os.urandom(24 * MiB)
            # The publish waits for the connection to take the frame; the
            # disconnect does not wait for it.
            publishing = asyncio.create_task(pub.publish("video", {"chunk": chunk}))
            leaving = asyncio.create_task(pub.disconnect())
            await asyncio.sleep(0)  # the close is under way
            conn.transport.resume_reading()
            await leaving
            async with asyncio.timeout(WAIT_S):
                await asyncio.gather(publishing, return_exceptions=True)  # ends either way, never hangs
            async with asyncio.timeout(WAIT_S * 4):
                await done.wait()
    assert got == [{"chunk": chunk}]


async def frames_behind_a_large_one() -> None:
    """Publishes made while a large frame waits to go out (the server not
    reading) are written behind it, whole, in order."""
    async with IPCServer("127.0.0.1", 0, max_frame_size=64 * MiB) as server:
        async with large_client(server) as sub:
            got: list[Any] = []
            done = asyncio.Event()

            def on_message(msg: Any) -> None:
                got.append(msg.payload)
                if msg.payload.get("last"):
                    done.set()

            await sub.subscribe("video", on_message)
            before = server.connections
            async with large_client(server) as pub:
                [conn] = server.connections - before
                assert conn.transport is not None
                conn.transport.pause_reading()
                chunks = [os.urandom(12 * MiB + i) for i in range(2)]
                expected: list[Any] = []
                sends = []
                for i, chunk in enumerate(chunks):  # each written at once, then waiting for the socket
                    expected += [{"seq": i, "chunk": chunk}, *({"seq": i, "small": j} for j in range(3))]
                    sends += [asyncio.create_task(pub.publish("video", payload)) for payload in expected[-4:]]
                expected.append({"last": True})
                sends.append(asyncio.create_task(pub.publish("video", expected[-1])))
                await asyncio.sleep(0)
                conn.transport.resume_reading()
                async with asyncio.timeout(WAIT_S * 4):
                    await asyncio.gather(*sends)
                    await done.wait()
    assert got == expected


async def test_a_client_closing_behind_a_large_frame_still_sends_all_of_it() -> None:
    await closing_behind_a_large_frame()


async def test_a_clients_frames_written_behind_a_large_one_keep_their_order() -> None:
    await frames_behind_a_large_one()


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
@pytest.mark.parametrize("scenario", [closing_behind_a_large_frame, frames_behind_a_large_one], ids=["closing", "order"])
def test_the_same_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    """uvloop's transports keep what they are given instead of copying it;
    the windows and what waits behind them behave the same."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), WAIT_S * 8))
