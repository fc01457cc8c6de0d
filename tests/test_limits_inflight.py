"""A connection at ``max_inflight_per_connection`` (docs/protocol.md §12):
its new requests wait in the server, but what answers the server is still
read, so calls that can only finish through the connection's own frames
(its answers as a responder, a stream's credit, a cancel, a heartbeat)
never wedge it. Over real loopback TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S
from .test_streams import until


async def test_a_client_that_serves_what_it_calls_goes_past_its_limit() -> None:
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=4) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as one, IPCClient("app", "127.0.0.1", server.port) as two:
            await one.serve("one.echo", lambda msg: msg.payload)
            await two.serve("two.echo", lambda msg: msg.payload)
            own = [one.request("one.echo", i, timeout=WAIT_S) for i in range(40)]  # answered by itself
            crossed = [one.request("two.echo", i, timeout=WAIT_S) for i in range(40)] + [two.request("one.echo", i, timeout=WAIT_S) for i in range(40)]
            assert await asyncio.gather(*own, *crossed) == list(range(40)) * 3


async def test_open_streams_at_the_limit_keep_flowing_and_new_requests_wait_for_a_place() -> None:
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=3) as server:

        @server.handler("endless")
        async def endless(msg: Message) -> AsyncIterator[int]:
            n = 0
            while True:
                yield n
                n += 1

        server.handler("echo")(lambda msg: msg.payload)
        async with IPCClient("app", "127.0.0.1", server.port) as client:
            streams = [client.stream("endless", window=4) for _ in range(3)]  # the limit: each holds a place
            firsts = [await s.__anext__() for s in streams]  # type: ignore[attr-defined]
            conn = next(iter(server.connections))
            late = asyncio.ensure_future(client.request("echo", "late", timeout=WAIT_S))
            await until(lambda: len(conn.inflight.held) == 1, "the request held")
            # Credit is still read: each stream goes on well past its window of 4.
            for s in streams:
                for _ in range(20):
                    await s.__anext__()  # type: ignore[attr-defined]
            assert firsts == [0, 0, 0] and not late.done()
            await streams[0].aclose()  # type: ignore[attr-defined]  # its cancel is read: a place frees
            assert await late == "late"
            for s in streams[1:]:
                await s.aclose()  # type: ignore[attr-defined]
            await until(lambda: conn.inflight.count == 0 and not conn.inflight.holding, "every place back")


async def test_a_cancel_takes_a_held_request_out_before_it_runs() -> None:
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=1) as server:
        release, ran = asyncio.Event(), []

        @server.handler("slow")
        async def slow(msg: Message) -> Any:
            ran.append(msg.payload)
            await release.wait()
            return msg.payload

        async with IPCClient("app", "127.0.0.1", server.port) as client:
            first = asyncio.ensure_future(client.request("slow", "first", timeout=WAIT_S))
            await until(lambda: ran == ["first"], "the first running")
            conn = next(iter(server.connections))
            second = asyncio.ensure_future(client.request("slow", "second", timeout=WAIT_S))
            await until(lambda: len(conn.inflight.held) == 1, "the second held")
            second.cancel()  # the client sends cancel (§15.4)
            await until(lambda: not conn.inflight.held, "taken out")
            third = asyncio.ensure_future(client.request("slow", "third", timeout=WAIT_S))
            await until(lambda: len(conn.inflight.held) == 1, "the third held")
            release.set()
            assert await first == "first" and await third == "third"
            assert ran == ["first", "third"]


async def test_the_clients_heartbeat_is_answered_while_its_requests_wait() -> None:
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=2) as server:
        release = asyncio.Event()

        @server.handler("slow")
        async def slow(msg: Message) -> Any:
            await release.wait()
            return msg.payload

        events: list[str] = []
        async with IPCClient("app", "127.0.0.1", server.port, heartbeat_interval=0.05, heartbeat_timeout=0.2) as client:
            client.on("heartbeat_timeout", lambda *a: events.append("heartbeat_timeout"))
            client.on("disconnected", lambda *a: events.append("disconnected"))
            calls = [asyncio.ensure_future(client.request("slow", i, timeout=WAIT_S)) for i in range(4)]
            conn = next(iter(server.connections))
            await until(lambda: len(conn.inflight.held) == 2, "two held")
            seen = conn.frames_in
            # The client pings through five of its heartbeat timeouts and is answered each time.
            await until(lambda: conn.frames_in >= seen + 20, "the client's pings read")
            release.set()
            assert await asyncio.gather(*calls) == [0, 1, 2, 3]
            assert events == []


async def test_a_held_request_goes_with_what_is_left_of_its_deadline() -> None:
    """Held for a place, a request's time runs (§6.5): one whose deadline
    passed meanwhile never runs and is answered timeout; one with time left
    reaches its responder with that time, not the whole of it."""
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=1) as server:
        release, seen = asyncio.Event(), []

        async def slow(msg: Message) -> Any:
            seen.append((msg.payload, msg.timeout_ms))
            await release.wait()
            return msg.payload

        async with IPCClient("app", "127.0.0.1", server.port) as responder, IPCClient("app", "127.0.0.1", server.port) as client:
            await responder.serve("slow", slow)
            first = asyncio.ensure_future(client.request("slow", "first", timeout=WAIT_S))
            await until(lambda: [p for p, _ in seen] == ["first"], "the first running")
            conn = next(c for c in server.connections if c.connection_id == client.connection_id)
            doomed = asyncio.ensure_future(client.send_request("slow", "doomed", timeout=0.2))
            kept = asyncio.ensure_future(client.request("slow", "kept", timeout=WAIT_S))
            await until(lambda: len(conn.inflight.held) == 2, "both held")
            with pytest.raises(RequestTimeout):
                await doomed  # the client's own deadline; the server's answer comes later
            release.set()
            assert await first == "first" and await kept == "kept"
            assert [p for p, _ in seen] == ["first", "kept"]  # "doomed" never ran
            assert seen[1][1] < WAIT_S * 1000 - 150  # "kept" waited at least doomed's 200 ms, taken off
            assert server.stats.errors.get("timeout", 0) >= 1


async def test_a_held_stream_is_answered_timeout_at_its_deadline_while_it_still_waits() -> None:
    """A stream's ``timeout_ms`` is its whole deadline, counted from its
    arrival (§15.5): held for a place, it is answered ``timeout`` then, and
    taken out, rather than when a place frees (never, here)."""
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=2) as server:
        ran = []

        @server.handler("endless")
        async def endless(msg: Message) -> AsyncIterator[int]:
            while True:
                yield 0

        @server.handler("count")
        async def count(msg: Message) -> AsyncIterator[int]:
            ran.append(msg.payload)
            yield 0

        async with IPCClient("app", "127.0.0.1", server.port) as client:
            open_streams = [client.stream("endless", window=2) for _ in range(2)]  # the limit, waiting for credit
            for s in open_streams:
                await s.__anext__()  # type: ignore[attr-defined]
            conn = next(iter(server.connections))
            started = asyncio.get_running_loop().time()
            with pytest.raises(RequestTimeout, match="while it waited for a place"):
                async with asyncio.timeout(WAIT_S):
                    async for _ in client.stream("count", 1, timeout=0.3):
                        pass
            assert asyncio.get_running_loop().time() - started >= 0.3
            assert conn.inflight.held_count == 0 and not conn.inflight.held
            for s in open_streams:
                await s.aclose()  # type: ignore[attr-defined]
            await until(lambda: conn.inflight.count == 0, "every place back")
            assert ran == []  # it never ran


async def test_a_held_request_is_answered_timeout_at_its_deadline_while_it_still_waits() -> None:
    from .conftest import RawPeer, frame

    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=1) as server:
        release, ran = asyncio.Event(), []

        @server.handler("slow")
        async def slow(msg: Message) -> Any:
            ran.append(msg.payload)
            await release.wait()
            return msg.payload

        peer = await RawPeer.open(server.port)
        try:
            await peer.handshake()
            peer.send(frame("request", "slow", "first", message_id="r1", timeout_ms=WAIT_S * 1000))
            await until(lambda: ran == ["first"], "the first running")
            peer.send(frame("request", "slow", "held", message_id="r2", timeout_ms=200))  # waits for r1's place
            peer.send(frame("publish", "news", 1, message_id="p1"))  # behind it, in order
            answer = await peer.recv_until(lambda m: m.reply_to == "r2", timeout=3.0)
            assert answer.error is not None and answer.error.code == "timeout"
            assert "200 ms passed while it waited for a place" in answer.error.message
            conn = next(iter(server.connections))
            assert conn.inflight.held_count == 1 and conn.inflight.holding  # the publish still waits its turn
            release.set()
            assert (await peer.recv_until(lambda m: m.reply_to == "r1")).payload == "first"
            await until(lambda: conn.inflight.count == 0 and not conn.inflight.holding, "every place back")
            assert ran == ["first"]  # the held one never ran
        finally:
            await peer.close()


async def test_a_release_lets_go_only_what_a_free_place_allows_and_leaves_the_rest_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 200 requests held, a place that frees lets one request go, and
    the publish behind it, not the 199 others: they stay held, untouched
    (neither taken, aged nor decoded again), with their deadlines."""
    from ipc_server.flow_control import FlowControl

    from .conftest import RawPeer, frame

    aged: list[object] = []
    real_aged = FlowControl._aged

    def spy(self: FlowControl, entry: Any) -> Any:
        aged.append(entry)
        return real_aged(self, entry)

    monkeypatch.setattr(FlowControl, "_aged", spy)
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=1) as server:
        gates = [asyncio.Event() for _ in range(201)]
        ran: list[int] = []

        @server.handler("slow")
        async def slow(msg: Message) -> Any:
            ran.append(msg.payload)
            await gates[msg.payload].wait()
            return msg.payload

        peer = await RawPeer.open(server.port)
        async with IPCClient("app", "127.0.0.1", server.port) as listener:
            news: list[Any] = []
            await listener.subscribe("news", lambda msg: news.append(msg.payload))
            try:
                await peer.handshake()
                peer.send(frame("request", "slow", 0, message_id="r0", timeout_ms=60_000))
                await until(lambda: ran == [0], "the first running")
                conn = next(c for c in server.connections if c.connection_id == "raw")
                peer.send(frame("request", "slow", 1, message_id="r1", timeout_ms=60_000))
                peer.send(frame("publish", "news", "after r1", message_id="p1"))
                for i in range(2, 201):
                    peer.send(frame("request", "slow", i, message_id=f"r{i}", timeout_ms=60_000))
                await until(lambda: conn.inflight.held_count == 201, "every one held")
                for k in range(10):
                    gates[k].set()  # a place frees: only request k + 1 goes (and the publish behind r1)
                    await until(lambda: len(ran) == k + 2, "the next one running")
                    assert (await peer.recv_until(lambda m: m.reply_to == f"r{k}")).payload == k
                    assert conn.inflight.held_count == 199 - k and conn.inflight.count == 1
                await until(lambda: news == ["after r1"], "the publish behind r1")
                assert ran == list(range(11))  # in order
                assert len(aged) == 11  # the 10 requests and the publish that went, once each
                assert len(conn.inflight._deadlines) == 190  # the rest still watched
                for gate in gates:
                    gate.set()
                last = await peer.recv_until(lambda m: m.reply_to == "r200")
                assert last.payload == 200 and ran == list(range(201))
                await until(lambda: conn.inflight.count == 0 and not conn.inflight.holding and not conn.inflight.held, "every place back")
            finally:
                await peer.close()


async def test_a_release_that_spends_its_budget_goes_on_in_a_later_turn_even_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that takes the last place, then 200 publishes held behind
    it (they take none): they go, in order, in several turns of the loop,
    not all in one callback whatever their number."""
    from ipc_server import flow_control
    from ipc_server.flow_control import FlowControl

    from .conftest import RawPeer, frame

    ticks = iter(range(10**9))
    monkeypatch.setattr(flow_control, "monotonic", lambda: next(ticks) * 0.001)  # 1 ms a reading: 5 frames a turn
    turns: list[int] = []
    real_release = FlowControl._release_held

    def spy(self: FlowControl) -> None:
        turns.append(self.inflight.held_count)
        real_release(self)

    monkeypatch.setattr(FlowControl, "_release_held", spy)
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=1) as server:
        gate = asyncio.Event()

        @server.handler("slow")
        async def slow(msg: Message) -> Any:
            if msg.payload == 0:
                await gate.wait()
            return msg.payload

        peer = await RawPeer.open(server.port)
        async with IPCClient("app", "127.0.0.1", server.port) as listener:
            news: list[Any] = []
            await listener.subscribe("news", lambda msg: news.append(msg.payload))
            try:
                await peer.handshake()
                peer.send(frame("request", "slow", 0, message_id="r0", timeout_ms=60_000))
                peer.send(frame("request", "slow", 1, message_id="r1", timeout_ms=60_000))
                for i in range(200):
                    peer.send(frame("publish", "news", i, message_id=f"p{i}"))
                conn = next(c for c in server.connections if c.connection_id == "raw")
                await until(lambda: conn.inflight.held_count == 201, "r1 and the publishes held")
                gate.set()
                await until(lambda: len(news) == 200, "every publish delivered")
                assert news == list(range(200))
                assert len(turns) > 10, turns  # 201 frames at 5 a turn: one callback took them all before
            finally:
                await peer.close()
