"""Lame duck (docs/protocol.md §13.1): a server asked to leave tells its
clients, stops accepting and keeps serving them for a while; load-balanced
clients move their calls to the other servers, so a rolling restart of two
servers under steady load fails no request (real processes)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from typing import Any

import pytest

from ipc_client import IPCClient, LoadBalancedClient
from ipc_client.balancer import Balancer, Server
from ipc_protocol import Message, NotConnected
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame

FAST = {"initial_delay": 0.05, "max_delay": 0.2}


async def until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT_S * 2):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_the_notice_goes_to_clients_that_asked_for_it_and_they_are_still_served() -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        server.add_handler("echo", lambda m: m.payload)
        client = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
        await client.connect()
        notices: asyncio.Queue[Any] = asyncio.Queue()
        client.on("lame_duck", notices.put_nowait)
        older = await RawPeer.open(server.port)  # a version-2 peer that did not ask for the feature
        await older.handshake()
        asking = await RawPeer.open(server.port)
        asking.send(frame("request", "system", {"action": "connect", "connection_id": "p", "protocol": 2, "features": ["lame_duck"]}, message_id="hello"))
        assert (await asking.recv()).payload["features"] == ["lame_duck"]

        leaving = asyncio.ensure_future(server.lame_duck(60))
        assert await asyncio.wait_for(notices.get(), WAIT_S) == {"deadline_ms": 60000}
        notice = await asking.recv()
        assert (notice.message_type.value, notice.channel_id, notice.payload) == ("publish", "system", {"event": "lame_duck", "deadline_ms": 60000})
        assert await client.request("echo", "still served", timeout=WAIT_S) == "still served"
        with pytest.raises(NotConnected):  # it accepts no one new
            await IPCClient("app", "127.0.0.1", server.port, reconnect=False, connect_timeout=1).connect()
        older.send(frame("request", "system", {"action": "ping"}, message_id="ping"))
        assert (await older.recv()).reply_to == "ping"  # the pong came first: no notice for a peer that did not ask
        # Once every client has gone the wait ends, long before its 60 s.
        for peer in (older, asking):
            await peer.close()
        await client.disconnect()
        await asyncio.wait_for(leaving, WAIT_S)


async def test_sigterm_tells_the_clients_then_closes_after_the_duration(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--lame-duck-duration", "0.5")
    client = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
    await client.connect()
    notices: asyncio.Queue[Any] = asyncio.Queue()
    gone = asyncio.Event()
    client.on("lame_duck", notices.put_nowait)
    client.on("disconnected", lambda reason: gone.set())
    srv.signal(signal.SIGTERM)
    assert await asyncio.wait_for(notices.get(), WAIT_S) == {"deadline_ms": 500}
    await asyncio.wait_for(gone.wait(), WAIT_S)  # closed by the server once the duration passed
    assert await srv.wait() == 0
    await client.disconnect()


async def test_a_balanced_client_sends_new_calls_elsewhere_once_told() -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as a, IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as b:
        a.add_handler("who", lambda m: "a")
        b.add_handler("who", lambda m: "b")
        lb = LoadBalancedClient("app", [("127.0.0.1", a.port), ("127.0.0.1", b.port)], health_check_interval=0.05, **FAST)
        await lb.start()
        try:
            assert Counter([await lb.request("who") for _ in range(4)]) == {"a": 2, "b": 2}
            leaving: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            lb.on("server_leaving", lambda snapshot, deadline_ms: leaving.done() or leaving.set_result((snapshot["port"], deadline_ms)))
            told = asyncio.ensure_future(a.lame_duck(60))
            assert await asyncio.wait_for(leaving, WAIT_S) == (a.port, 60000)
            # Health checks still reach a (it serves until it closes): it stays out all the same.
            await lb.check_health()
            assert [await lb.request("who") for _ in range(6)] == ["b"] * 6
            assert not told.done()
        finally:
            await lb.close()
        await asyncio.wait_for(told, WAIT_S)  # the balanced client's connections were its last


async def test_a_balanced_client_uses_a_leaving_server_when_no_other_is_left() -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as a:
        a.add_handler("who", lambda m: "a")
        lb = LoadBalancedClient("app", [("127.0.0.1", a.port)], health_check_interval=None, **FAST)
        await lb.start()
        try:
            leaving = asyncio.Event()
            lb.on("server_leaving", lambda snapshot, deadline_ms: leaving.set())
            told = asyncio.ensure_future(a.lame_duck(60))
            await asyncio.wait_for(leaving.wait(), WAIT_S)
            assert await lb.request("who") == "a"  # still serving, and nothing else is left
        finally:
            await lb.close()
        await asyncio.wait_for(told, WAIT_S)


ROLLING_ARGS = ("--lame-duck-duration", "1", "--shutdown-grace", "5")


async def test_a_rolling_restart_under_steady_load_fails_no_request(spawn) -> None:
    procs = [await spawn("-m", "ipc_server", "--port", "0", *ROLLING_ARGS) for _ in range(2)]
    ports = [p.port for p in procs]
    servers = [("127.0.0.1", port) for port in ports]
    responder = LoadBalancedClient("app", servers, health_check_interval=0.2, **FAST)
    requester = LoadBalancedClient("app", servers, health_check_interval=0.2, request_timeout=10, **FAST)
    ran = 0

    async def work(msg: Message) -> Any:
        nonlocal ran
        ran += 1
        await asyncio.sleep(0.002)
        return msg.payload

    up: dict[int, asyncio.Event] = {port: asyncio.Event() for port in ports}
    requester.on("server_up", lambda snapshot: up[snapshot["port"]].set())
    leaving: Counter[int] = Counter()
    requester.on("server_leaving", lambda snapshot, deadline_ms: leaving.update([snapshot["port"]]))
    await responder.start()
    await requester.start()
    await responder.serve("work", work)
    outcomes: list[Any] = []
    running = True

    async def load() -> None:
        i = 0
        while running:
            i += 1
            try:
                outcomes.append(await requester.request("work", i) == i)
            except Exception as exc:  # recorded, then asserted absent
                outcomes.append(exc)

    workers = [asyncio.ensure_future(load()) for _ in range(8)]
    try:
        for index, port in enumerate(ports):
            await until(lambda: len(outcomes) > 200 * (index + 1))
            up[port].clear()
            procs[index].signal(signal.SIGTERM)
            assert await procs[index].wait() == 0
            procs[index] = await spawn("-m", "ipc_server", "--port", str(port), *ROLLING_ARGS)
            await asyncio.wait_for(up[port].wait(), WAIT_S * 2)  # the requester is back on it
            before = len(outcomes)
            await until(lambda: len(outcomes) > before + 200)
    finally:
        running = False
        await asyncio.gather(*workers)
        await requester.close()
        await responder.close()
    errors = [o for o in outcomes if o is not True]
    assert errors == []
    # None failed over either: every call was answered by the first server it
    # went to, and ran once (a failover after connection_lost may run one twice).
    assert sum(s["errors"] for s in requester.server_stats()) == 0
    assert ran == len(outcomes)
    assert leaving == {ports[0]: 1, ports[1]: 1}  # each told the clients before it closed
    assert len(outcomes) > 800


@pytest.mark.parametrize("strategy", ["round_robin", "least_connections", "weighted", "random"])
def test_the_balancer_sends_nothing_to_a_leaving_server_while_another_is_healthy(strategy: str) -> None:
    a, b = Server("h", 1), Server("h", 2)
    balancer = Balancer([a, b], strategy)
    a.leaving = True
    assert [balancer.pick() for _ in range(4)] == [b] * 4
    assert balancer.pick(exclude=[b]) is a  # nothing else left: it still serves
    b.healthy = False
    assert balancer.pick() is a


async def test_the_server_closes_even_when_the_lame_duck_fails() -> None:
    """Whatever the lame duck raises, close() still runs: a server whose
    listener is already closed must not be left hung, half-shut."""
    server = IPCServer("127.0.0.1", 0)
    await server.start()
    client = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
    await client.connect()
    gone = asyncio.Event()
    client.on("disconnected", lambda reason: gone.set())
    with pytest.raises(OverflowError):  # a duration ServerConfig refuses, given to the method itself
        await server.lame_duck(float("inf"))
    await asyncio.wait_for(gone.wait(), WAIT_S)
    assert server._shutdown.closed.is_set()
    await client.disconnect()
