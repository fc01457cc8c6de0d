"""Caps on subscriptions and responder registrations, per connection and in
total (docs/protocol.md §12): ``limit_exceeded``, the connection stays open,
the client keeps no local state for what was refused, the stats count what
is held."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ipc_client import IPCClient
from ipc_protocol import AlreadyServing, LimitExceeded
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():
            await asyncio.sleep(0.005)


def _noop(msg) -> None:
    return None


async def test_subscriptions_per_connection() -> None:
    async with IPCServer("127.0.0.1", 0, max_subscriptions_per_connection=3) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as c:
            for channel in ("a", "b.*", "c.>"):
                await c.subscribe(channel, _noop)
            with pytest.raises(LimitExceeded) as info:
                await c.subscribe("d", _noop)
            assert "maximum of 3 subscriptions" in info.value.message
            assert sorted(c.get_connection_info()["subscriptions"]) == ["a", "b.*", "c.>"]  # nothing kept for "d"
            assert await c.health_check() is True  # still open
            await c.subscribe("a", lambda m: None)  # a second handler of a held subscription
            await c.unsubscribe("a")
            await c.subscribe("d", _noop)
            assert server.stats.subscriptions == 3
            stats = await c.system("stats")
            assert stats["subscriptions"] == 3 and stats["errors"]["limit_exceeded"] == 1


async def test_concurrent_subscribes_to_one_channel_past_the_cap_are_all_refused() -> None:
    # The second call for a channel whose first is still in flight used to return at
    # once: kept, though the server refused the channel, so it silently got nothing.
    async with IPCServer("127.0.0.1", 0, max_subscriptions_per_connection=1) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as c:
            await c.subscribe("a", _noop)
            results = await asyncio.gather(c.subscribe("b", _noop), c.subscribe("b", lambda m: None), return_exceptions=True)
            assert [type(r) for r in results] == [LimitExceeded, LimitExceeded]
            assert c.get_connection_info()["subscriptions"] == ["a"]
            assert server.stats.subscriptions == 1


async def test_subscriptions_in_total_are_freed_when_a_connection_closes() -> None:
    async with IPCServer("127.0.0.1", 0, max_subscriptions=4) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as a, IPCClient("other", "127.0.0.1", server.port) as b:
            await a.subscribe("x", _noop)
            await a.subscribe("y", _noop)
            await b.subscribe("x", _noop)
            await b.subscribe("y", _noop)
            with pytest.raises(LimitExceeded) as info:
                await b.subscribe("z", _noop)
            assert "server holds its maximum of 4" in info.value.message
            await a.disconnect()
            await _until(lambda: server.stats.subscriptions == 2)  # once the server has seen the close
            await b.subscribe("z", _noop)
            assert server.stats.subscriptions == 3


async def test_registrations_per_connection_and_the_client_rolls_back() -> None:
    async with IPCServer("127.0.0.1", 0, max_registrations_per_connection=2) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as c:
            errors: list[Exception] = []
            c.on("error", errors.append)
            await c.serve("one", _noop)
            await c.serve("two.*", _noop)
            with pytest.raises(LimitExceeded):
                await c.serve("three", _noop)
            assert sorted(c.get_connection_info()["services"]) == ["one", "two.*"]
            # Refused, so not served: a second try is refused again, not AlreadyServing.
            with pytest.raises(LimitExceeded):
                await c.serve("three", _noop)
            await c.unserve("one")
            await c.serve("three", _noop)
            with pytest.raises(AlreadyServing):
                c.serve("three", _noop)
            assert server.stats.registrations == 2
            assert [e.code for e in errors] == ["limit_exceeded", "limit_exceeded"]


async def test_registrations_in_total() -> None:
    async with IPCServer("127.0.0.1", 0, max_registrations=1) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as a, IPCClient("app", "127.0.0.1", server.port) as b:
            await a.serve("calc", lambda m: "a")
            with pytest.raises(LimitExceeded):
                await b.serve("calc", lambda m: "b")
            assert await b.request("calc") == "a"
            await a.disconnect()
            await _until(lambda: server.stats.registrations == 0)  # once the server has seen the close
            await b.serve("calc", lambda m: "b")
            assert await b.request("calc") == "b"


async def test_a_raw_peer_past_the_cap_gets_limit_exceeded_and_stays_connected() -> None:
    async with IPCServer("127.0.0.1", 0, max_subscriptions_per_connection=1) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        peer.send(frame("subscribe", "a", None, message_id="s1"))
        assert (await peer.recv()).payload == {"status": "subscribed"}
        peer.send(frame("subscribe", "a", None, message_id="s1-again"))  # held already: no new place taken
        assert (await peer.recv()).payload == {"status": "subscribed"}
        peer.send(frame("subscribe", "b", None, message_id="s2"))
        refused = await peer.recv()
        assert (refused.reply_to, refused.error.code) == ("s2", "limit_exceeded")
        peer.send(frame("request", "system", {"action": "ping"}, message_id="p"))
        assert (await peer.recv()).payload == {"status": "pong"}
        await peer.close()
