"""What a responder can make the server hold (docs/protocol.md §6.5, §12):
the server's default deadline for requests that carry none, the cap on
requests one responder holds unanswered, and the in-flight limit of a
requester, all for requests forwarded to responder clients."""

from __future__ import annotations

import asyncio

import pytest

from ipc_client import IPCClient
from ipc_protocol import LimitExceeded
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame


async def _hanging_responder(port: int, channel: str, release: asyncio.Event, served: list) -> IPCClient:
    responder = IPCClient("app", "127.0.0.1", port)
    await responder.connect()

    async def hang(msg):  # type: ignore[no-untyped-def]
        served.append(msg.payload)
        await release.wait()
        return msg.payload

    await responder.serve(channel, hang)
    return responder


@pytest.mark.parametrize("protocol", [2, None], ids=["v2", "v1"])
async def test_a_request_without_a_deadline_gets_the_servers_default(protocol) -> None:
    async with IPCServer("127.0.0.1", 0, default_request_timeout_s=0.3) as server:
        release, served = asyncio.Event(), []
        responder = await _hanging_responder(server.port, "hang", release, served)
        peer = await RawPeer.open(server.port)
        await peer.handshake(protocol=protocol)
        started = asyncio.get_running_loop().time()
        peer.send(frame("request", "hang", 1, message_id="q1"))  # no timeout_ms
        reply = await peer.recv()
        elapsed = asyncio.get_running_loop().time() - started
        assert reply.reply_to == "q1" and 0.25 <= elapsed < WAIT_S
        if protocol is None:  # §10: a version-1 client reads the error in the payload or the envelope
            assert "timeout" in str(reply.error or reply.payload)
        else:
            assert reply.error.code == "timeout" and "default deadline of 0.3 s" in reply.error.message
        assert served == [1] and server.stats.errors["timeout"] == 1
        release.set()
        await responder.disconnect()
        await peer.close()


@pytest.mark.parametrize("protocol", [2, None], ids=["v2", "v1"])
async def test_an_in_process_handler_gets_the_servers_default_deadline_too(protocol) -> None:
    async with IPCServer("127.0.0.1", 0, default_request_timeout_s=0.3) as server:
        release, cancelled = asyncio.Event(), asyncio.Event()

        @server.handler("hang")
        async def hang(msg):  # type: ignore[no-untyped-def]
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        peer = await RawPeer.open(server.port)
        await peer.handshake(protocol=protocol)
        peer.send(frame("request", "hang", 1, message_id="q1"))  # no timeout_ms
        reply = await peer.recv()
        assert reply.reply_to == "q1"
        if protocol is None:
            assert "timeout" in str(reply.error or reply.payload)
        else:
            assert reply.error.code == "timeout" and "default deadline of 0.3 s" in reply.error.message
        async with asyncio.timeout(WAIT_S):
            await cancelled.wait()  # the handler does not run on, holding its in-flight place
        assert server.stats.errors["timeout"] == 1
        await peer.close()


async def test_a_request_with_its_own_deadline_keeps_it() -> None:
    async with IPCServer("127.0.0.1", 0, default_request_timeout_s=0.05) as server:
        release, served = asyncio.Event(), []
        responder = await _hanging_responder(server.port, "slow", release, served)
        async with IPCClient("app", "127.0.0.1", server.port) as requester:
            call = asyncio.ensure_future(requester.request("slow", "mine", timeout=WAIT_S))
            async with asyncio.timeout(WAIT_S):
                while not served:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # past the default deadline, within the request's own
            assert not call.done()
            release.set()
            assert await call == "mine"
        await responder.disconnect()


async def test_a_responder_holds_at_most_its_cap_then_requests_are_refused() -> None:
    async with IPCServer("127.0.0.1", 0, max_held_requests_per_connection=2) as server:
        release, served = asyncio.Event(), []
        responder = await _hanging_responder(server.port, "work", release, served)
        async with IPCClient("app", "127.0.0.1", server.port) as requester:
            held = [asyncio.ensure_future(requester.request("work", i, timeout=WAIT_S)) for i in range(2)]
            async with asyncio.timeout(WAIT_S):
                while len(served) < 2:
                    await asyncio.sleep(0.01)
            with pytest.raises(LimitExceeded) as info:
                await requester.request("work", 2, timeout=WAIT_S)
            assert "maximum of 2 unanswered requests" in info.value.message
            release.set()
            assert await asyncio.gather(*held) == [0, 1]
            assert await requester.request("work", 3, timeout=WAIT_S) == 3  # a place is free again
        await responder.disconnect()


async def test_at_the_cap_requests_go_to_another_responder_first() -> None:
    async with IPCServer("127.0.0.1", 0, max_held_requests_per_connection=1) as server:
        release, served_a, served_b = asyncio.Event(), [], []
        a = await _hanging_responder(server.port, "work", release, served_a)
        b = await _hanging_responder(server.port, "work", release, served_b)
        async with IPCClient("app", "127.0.0.1", server.port) as requester:
            held = [asyncio.ensure_future(requester.request("work", i, timeout=WAIT_S)) for i in range(2)]
            async with asyncio.timeout(WAIT_S):
                while len(served_a) + len(served_b) < 2:
                    await asyncio.sleep(0.01)
            assert len(served_a) == len(served_b) == 1  # the least busy responder first (§6.1)
            with pytest.raises(LimitExceeded):
                await requester.request("work", 2, timeout=WAIT_S)
            release.set()
            assert sorted(await asyncio.gather(*held)) == [0, 1]
        for r in (a, b):
            await r.disconnect()


async def test_the_inflight_limit_holds_a_requesters_new_requests_and_every_one_is_answered() -> None:
    """max_inflight_per_connection: past it the requester's new requests
    wait in order, none refused or lost; the limit holds exactly."""
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=4) as server:
        release, served = asyncio.Event(), []
        responder = await _hanging_responder(server.port, "work", release, served)
        async with IPCClient("app", "127.0.0.1", server.port) as requester:
            calls = [asyncio.ensure_future(requester.request("work", i, timeout=WAIT_S)) for i in range(20)]
            async with asyncio.timeout(WAIT_S):
                # 4 forwarded; the other 16 held by the server, its socket still read (inflight.py).
                while not (any(len(c.inflight.held) == 16 for c in server.connections) and len(served) >= 4):
                    await asyncio.sleep(0.01)
            assert len(served) == 4 and not any(c.reading_paused for c in server.connections)
            release.set()
            assert await asyncio.gather(*calls) == list(range(20))
        await responder.disconnect()
