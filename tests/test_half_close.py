"""A peer that half-closes (``shutdown(SHUT_WR)``: its requests sent, it
reads on, as ``nc``, a legacy script or a hand-written client do) gets the
answers to what it asked, then the server's close (docs/protocol.md §6.2).
Over real loopback TCP against the real server, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message
from ipc_server import IPCServer
from ipc_server.connection import ServerConnection

from .conftest import WAIT_S, RawPeer, frame, until

N = 20


async def _never(msg: Message) -> None:
    await asyncio.Event().wait()


def _run(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_name == "uvloop":
        pytest.importorskip("uvloop").run(main())
    else:
        asyncio.run(main())


def _raw(server: IPCServer) -> ServerConnection:
    return next(c for c in server.connections if c.connection_id == "raw")


async def _half_close(peer: RawPeer) -> None:
    await peer.writer.drain()
    peer.writer.write_eof()  # shutdown(SHUT_WR): a FIN; the peer reads on


async def _eof_seen(server: IPCServer, conn: ServerConnection) -> None:
    """The server read the peer's EOF: it waits for the answers, or it closed."""
    await until(lambda: getattr(conn, "half_closed", None) is not None or conn not in server.connections)


def _answers(got: list[Message]) -> dict[str, Any]:
    return {m.reply_to: (m.error.code if m.error is not None else m.payload) for m in got if m.reply_to is not None}


async def _asked(where: str, limit: int | None) -> None:
    """N requests to a handler in the server (``local``) or a responder
    client (``remote``) that answer only once the peer's EOF was seen;
    ``limit``: most of them wait for a place (max_inflight_per_connection)."""
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0, max_inflight_per_connection=limit) as server:
        go = asyncio.Event()

        async def echo(msg: Message) -> Any:
            await go.wait()
            return msg.payload

        server.add_handler("local", echo)
        async with IPCClient("app", "127.0.0.1", server.port) as responder:
            await responder.serve("remote", echo)
            peer = await RawPeer.open(server.port)
            await peer.handshake()
            for i in range(N):
                peer.send(frame("request", where, i, message_id=f"r{i}", timeout_ms=30_000))
            conn = _raw(server)
            await until(lambda: conn.inflight.count == min(N, limit or N))
            await _half_close(peer)
            await _eof_seen(server, conn)
            assert conn in server.connections and server.stats.connections == 2  # open until it closes
            go.set()
            got = await peer.closed()  # read until the server's EOF
            assert _answers(got) == {f"r{i}": i for i in range(N)}
            await until(lambda: conn not in server.connections)
            assert conn.close_reason == "half-closed by the peer: closed once its requests were answered"
            await peer.close()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_half_closed_requester_reads_every_answer(loop_name: str, where: str) -> None:
    _run(loop_name, lambda: _asked(where, None))


@pytest.mark.parametrize("where", ["local", "remote"])
def test_requests_held_past_the_inflight_limit_are_answered_too(where: str) -> None:
    _run("asyncio", lambda: _asked(where, 3))


async def test_with_nothing_in_flight_it_closes_at_once() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        peer.send(frame("subscribe", "news"))
        assert (await peer.recv()).reply_to == "m"
        conn = _raw(server)
        started = time.monotonic()
        await _half_close(peer)
        assert await peer.closed() == []
        assert time.monotonic() - started < 1.0  # no wait: the EOF closes it
        await until(lambda: conn not in server.connections)
        assert conn.close_reason == "closed by the peer"
        await peer.close()


async def test_an_unanswered_request_ends_with_its_timeout_then_the_close() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as responder:
            await responder.serve("silent", _never)
            peer = await RawPeer.open(server.port)
            await peer.handshake()
            peer.send(frame("request", "silent", None, message_id="q", timeout_ms=300))
            conn = _raw(server)
            await until(lambda: conn.inflight.count == 1)
            await _half_close(peer)
            got = await peer.closed(timeout=WAIT_S)
            assert _answers(got) == {"q": "timeout"}
            await peer.close()


async def test_the_wait_is_bounded_by_default_request_timeout_s() -> None:
    """A request whose own deadline is further than the bound: the
    connection closes at the bound, the request unanswered, as on a close."""
    async with IPCServer("127.0.0.1", 0, default_request_timeout_s=0.3) as server:
        server.add_handler("forever", _never)
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        peer.send(frame("request", "forever", None, message_id="q", timeout_ms=60_000))
        conn = _raw(server)
        await until(lambda: conn.inflight.count == 1)
        started = time.monotonic()
        await _half_close(peer)
        assert _answers(await peer.closed()) == {}
        assert time.monotonic() - started < WAIT_S
        await until(lambda: conn not in server.connections)
        assert conn.close_reason == "half-closed by the peer: closed 0.3 s after its EOF with 1 of its requests unanswered"
        await peer.close()


async def test_a_half_closed_peer_is_no_longer_a_subscriber_or_a_responder() -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        go = asyncio.Event()

        async def slow(msg: Message) -> str:
            await go.wait()
            return "done"

        server.add_handler("slow", slow)
        async with IPCClient("app", "127.0.0.1", server.port) as other:
            peer = await RawPeer.open(server.port)
            await peer.handshake()
            peer.send(frame("subscribe", "news", message_id="sub"))
            peer.send(frame("subscribe", "svc", {"serve": True}, message_id="serve"))
            assert {(await peer.recv()).reply_to, (await peer.recv()).reply_to} == {"sub", "serve"}
            served = asyncio.ensure_future(other.request("svc", 1, timeout=WAIT_S))  # forwarded to the peer, never answered by it
            await peer.recv_until(lambda m: m.channel_id == "svc")
            peer.send(frame("request", "slow", None, message_id="q", timeout_ms=30_000))
            conn = _raw(server)
            await until(lambda: conn.inflight.count == 1)
            await _half_close(peer)
            await _eof_seen(server, conn)
            with pytest.raises(Exception) as lost:
                await served
            assert getattr(lost.value, "code", None) == "responder_lost"
            assert not conn.subscriptions and not conn.responder_for and server.stats.subscriptions == 0
            await other.publish("news", "after the EOF")
            with pytest.raises(Exception) as unserved:
                await other.request("svc", 2, timeout=WAIT_S)
            assert getattr(unserved.value, "code", None) == "no_responders"
            go.set()
            got = await peer.closed()
            assert _answers(got) == {"q": "done"} and not [m for m in got if m.channel_id == "news"]
            await peer.close()


async def test_a_subscribe_held_behind_its_requests_does_not_make_it_a_responder_again() -> None:
    """Frames held for a place (max_inflight_per_connection) go on after the
    EOF: a ``serve`` among them is refused, not registered for a peer that
    can never answer (other requesters would wait out their timeout)."""
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0, max_inflight_per_connection=1) as server:
        first, second = asyncio.Event(), asyncio.Event()

        async def slow(msg: Message) -> str:
            await (first if msg.message_id == "q1" else second).wait()
            return "done"

        server.add_handler("slow", slow)
        async with IPCClient("app", "127.0.0.1", server.port) as other:
            peer = await RawPeer.open(server.port)
            await peer.handshake()
            peer.send(frame("request", "slow", None, message_id="q1", timeout_ms=30_000))
            peer.send(frame("request", "slow", None, message_id="q2", timeout_ms=30_000))  # held
            peer.send(frame("subscribe", "svc", {"serve": True}, message_id="serve"))  # held behind q2
            conn = _raw(server)
            await until(lambda: conn.inflight.held_count == 2)
            await _half_close(peer)
            await _eof_seen(server, conn)
            first.set()  # q1 ends: q2 and the serve go on
            await until(lambda: conn.inflight.held_count == 0)
            assert not conn.responder_for
            with pytest.raises(Exception) as unserved:
                await other.request("svc", 1, timeout=WAIT_S)
            assert getattr(unserved.value, "code", None) == "no_responders"
            second.set()
            got = await peer.closed()
            assert _answers(got) == {"q1": "done", "serve": "bad_message", "q2": "done"}
            await peer.close()


async def test_a_half_closed_peer_is_not_cut_for_silence_while_it_waits() -> None:
    """It cannot answer a ping: a handler that takes many heartbeat
    timeouts still gets its answer to it, and it is pinged once, at its
    EOF (a closed socket would answer that with a reset)."""
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=0.05) as server:
        go = asyncio.Event()

        async def slow(msg: Message) -> str:
            await go.wait()
            return "late"

        server.add_handler("slow", slow)
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        peer.send(frame("request", "slow", None, message_id="q", timeout_ms=30_000))
        conn = _raw(server)
        await until(lambda: conn.inflight.count == 1)
        await _half_close(peer)
        await _eof_seen(server, conn)
        since = asyncio.get_running_loop().time()
        await until(lambda: asyncio.get_running_loop().time() - since > 0.5)  # five heartbeat timeouts
        assert conn in server.connections
        go.set()
        got = await peer.closed()
        assert _answers(got) == {"q": "late"} and len([m for m in got if m.channel_id == "system"]) == 1
        await peer.close()


async def test_a_half_closed_peer_that_stops_reading_is_cut() -> None:
    """Megabytes of answers wait for it, and it reads none: cut after the
    heartbeat timeout (§9), though it has answers pending."""
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=0.1) as server:
        go = asyncio.Event()
        big = "x" * (4 * 1024 * 1024)

        async def large(msg: Message) -> str:
            await go.wait()
            return big

        server.add_handler("large", large)
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        for i in range(4):
            peer.send(frame("request", "large", None, message_id=f"q{i}", timeout_ms=30_000))
        conn = _raw(server)
        await until(lambda: conn.inflight.count == 4)
        await _half_close(peer)
        await _eof_seen(server, conn)
        go.set()  # 16 MB for a peer that reads nothing more
        await until(lambda: conn not in server.connections)
        assert conn.close_reason is not None and "read nothing of what waits for it" in conn.close_reason
        await peer.close()


async def _fin_while_not_read() -> None:
    """Its FIN reaches the server while the server does not read its
    socket (what it sent waits: max_inflight_per_connection, §12): no sign
    it went. What it sent is still read, run and answered."""
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=2, max_frame_size=64 * 1024, heartbeat_interval_s=0.1) as server:
        go = asyncio.Event()

        async def echo(msg: Message) -> Any:
            await go.wait()
            return msg.payload[:3]

        server.add_handler("local", echo)
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        for i in range(10):  # 100 KB: 2 in flight, the rest held, past 64 KiB: the socket is not read
            peer.send(frame("request", "local", f"{i:03d}" + "p" * 10_000, message_id=f"r{i}", timeout_ms=30_000))
        conn = _raw(server)
        await until(lambda: conn.reading_paused and conn.inflight.count == 2)
        await _half_close(peer)
        loop = asyncio.get_running_loop()
        since = loop.time()
        await until(lambda: loop.time() - since > 0.3)  # several heartbeat sweeps, each asking whether its peer went
        go.set()
        got = await peer.closed()
        assert _answers(got) == {f"r{i}": f"{i:03d}" for i in range(10)}
        await peer.close()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_fin_that_comes_while_the_socket_is_not_read_is_a_half_close(loop_name: str) -> None:
    _run(loop_name, _fin_while_not_read)


async def test_a_requester_that_closes_its_socket_still_cancels_its_calls() -> None:
    """A close sends a FIN as a half-close does: the ping sent at the EOF
    draws the closed socket's reset, and its calls go as before (§6.2)."""
    async with IPCServer("127.0.0.1", 0) as server:
        cancelled = asyncio.Event()

        async def stuck(msg: Message) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        server.add_handler("stuck", stuck)
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        peer.send(frame("request", "stuck", None, message_id="q", timeout_ms=30_000))
        conn = _raw(server)
        await until(lambda: conn.inflight.count == 1)
        await peer.close()  # a full close: FIN, then a reset for what comes
        await asyncio.wait_for(cancelled.wait(), WAIT_S)
        await until(lambda: conn not in server.connections)
        assert conn.close_reason is not None and conn.close_reason.startswith("connection lost")
