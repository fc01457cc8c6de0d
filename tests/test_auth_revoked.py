"""A connection a users-file reload cuts ``unauthorized`` because the user
was removed (or lost the app; docs/security.md §3.4) is not opened again:
the client does not reconnect, a pool does not refill, a load-balanced
client does not reopen the server's member. Each would cost the server a
refused connect and a scrypt check; the server's ``unauthorized`` count
shows how many. A cut for a changed credential (``details.reason``
``credential``) gets one ordinary reconnect: the token may only have been
hashed again. The Node client's side is interop-tests/test_js_users_revoked.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient
from ipc_client.state import ConnectionState
from ipc_protocol import ConnectionLost, NotConnected, Unauthorized
from ipc_server import IPCServer

from ipc_server.users import hash_token

from .test_auth_reload import BOB_ALL, WAIT_S, alice as alice_entry, setup  # noqa: F401 - setup is the fixture

FAST = {"user": "alice", "token": "alice-token", "request_timeout": WAIT_S, "initial_delay": 0.01, "max_delay": 0.02}


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.01)


def refused(server: IPCServer) -> int:
    """The ``unauthorized`` errors the server sent: the cuts, then one per refused connect."""
    return int(server.stats.snapshot()["errors"].get("unauthorized", 0))


async def test_a_client_cut_unauthorized_does_not_reconnect(setup: Any) -> None:
    server, connect, rewrite = setup()
    bob = await connect("bob")
    hold = asyncio.Event()

    async def slow(msg: Any) -> None:
        await hold.wait()

    await bob.serve("svc.slow", slow)
    alice = IPCClient("shop", "127.0.0.1", server.port, reconnect=True, max_retries=3, **FAST)
    events: list[tuple[str, Any]] = []
    for name in ("disconnected", "error", "reconnecting", "reconnect_failed"):
        alice.on(name, lambda arg=None, name=name: events.append((name, arg)))
    await alice.connect()
    try:
        in_flight = asyncio.ensure_future(alice.request("svc.slow", 1))
        await until(lambda: alice.get_connection_info()["pending_requests"] == 1)
        assert (await rewrite(BOB_ALL))["disconnected"] == 1  # alice removed
        # Before: reconnecting 1, a refused connect, reconnect_failed, error connection_lost.
        await until(lambda: alice.state is ConnectionState.DISCONNECTED)
        assert [name for name, _ in events] == ["disconnected", "error"]
        cut = events[0][1]
        assert isinstance(cut, Unauthorized) and "user 'alice' was removed" in str(cut)
        assert cut.details == {"reason": "removed", "user": "alice"}
        assert events[1][1] is cut
        with pytest.raises(ConnectionLost) as lost:
            await asyncio.wait_for(in_flight, WAIT_S)
        assert lost.value.__cause__ is cut
        with pytest.raises(NotConnected):
            await alice.request("svc.slow", 2)
        assert refused(server) == 1  # the cut alone: no connect was refused
    finally:
        hold.set()
        await alice.disconnect()


async def test_a_keyed_request_cut_unauthorized_fails_with_the_cut_as_its_cause(setup: Any) -> None:
    """A keyed request outlives a loss to be sent again; once the cut is
    final it fails ``not_connected`` as a queued call does, with the
    ``Unauthorized`` as its cause (before: "not connected (disconnected)", no cause)."""
    server, connect, rewrite = setup()
    bob = await connect("bob")
    hold = asyncio.Event()

    async def slow(msg: Any) -> None:
        await hold.wait()

    await bob.serve("svc.slow", slow)
    alice = IPCClient("shop", "127.0.0.1", server.port, reconnect=True, max_retries=3, **FAST)
    cuts: list[Any] = []
    alice.on("disconnected", cuts.append)
    await alice.connect()
    try:
        keyed = asyncio.ensure_future(alice.request("svc.slow", 1, idempotency_key="order-1"))
        await until(lambda: alice.get_connection_info()["pending_requests"] == 1)
        assert (await rewrite(BOB_ALL))["disconnected"] == 1  # alice removed
        with pytest.raises(NotConnected) as gone:
            await asyncio.wait_for(keyed, WAIT_S)
        assert isinstance(gone.value.__cause__, Unauthorized) and gone.value.__cause__ is cuts[0]
        assert str(gone.value) == "the server closed the connection unauthorized: user 'alice' was removed"
    finally:
        hold.set()
        await alice.disconnect()


async def test_a_pool_cut_unauthorized_opens_nothing(setup: Any) -> None:
    server, connect, rewrite = setup()
    pool = ConnectionPool("shop", "127.0.0.1", server.port, min_connections=2, max_connections=3, **FAST)
    lost: list[BaseException | None] = []
    pool.on("member_lost", lambda _client, reason: lost.append(reason))
    try:
        await pool.start()
        await pool.subscribe("orders.new", lambda m: None)  # a registrar to bring back, too
        assert (await rewrite(BOB_ALL))["disconnected"] == 2
        await until(lambda: len(lost) == 2 and pool.stats()["total"] == 0)
        await until(lambda: pool._refill_task is None or pool._refill_task.done())
        assert all(isinstance(reason, Unauthorized) for reason in lost)
        assert refused(server) == 2  # before: 3, the refill's open refused
    finally:
        await pool.close()


async def test_a_load_balanced_client_cut_unauthorized_reopens_nothing(setup: Any) -> None:
    server, connect, rewrite = setup()
    lb = LoadBalancedClient("shop", [("127.0.0.1", server.port)], health_check_interval=60, **FAST)
    down: list[BaseException | None] = []
    lb.on("server_down", lambda _snapshot, error: down.append(error))
    try:
        await lb.start()
        await lb.serve("inventory.*", lambda m: 7)
        assert (await rewrite(BOB_ALL))["disconnected"] == 1
        pool = next(iter(lb.pools().values()))
        await until(lambda: len(down) == 1 and pool.stats()["total"] == 0)
        await until(lambda: pool._refill_task is None or pool._refill_task.done())
        assert isinstance(down[0], Unauthorized)
        assert refused(server) == 1  # before: 2, the pool reopened its registrar
    finally:
        await lb.close()


async def test_a_rehashed_token_keeps_the_client_after_one_reconnect(setup: Any) -> None:
    """The same token hashed again (a higher scrypt cost): the server cannot
    tell it from a rotated one, so it cuts; the client reconnects once and
    carries on, its subscription restored."""
    server, connect, rewrite = setup()
    alice = IPCClient("shop", "127.0.0.1", server.port, reconnect=True, max_retries=3, **FAST)
    events: list[tuple[str, Any]] = []
    for name in ("disconnected", "error", "reconnecting", "reconnected", "reconnect_failed"):
        alice.on(name, lambda arg=None, name=name: events.append((name, arg)))
    got: asyncio.Queue[Any] = asyncio.Queue()
    await alice.connect()
    try:
        await alice.subscribe("orders.new", got.put_nowait)
        assert (await rewrite(alice_entry(token_hash=hash_token("alice-token", log_n=5)) + BOB_ALL))["disconnected"] == 1
        # Before: disconnected for good, no reconnecting.
        await until(lambda: any(name == "reconnected" for name, _ in events) and alice.state is ConnectionState.CONNECTED)
        assert [name for name, _ in events] == ["disconnected", "error", "reconnecting", "reconnected"]
        cut = events[1][1]
        assert isinstance(cut, Unauthorized) and cut.details == {"reason": "credential", "user": "alice"}
        assert events[0][1] is cut  # before: a ConnectionLost caused by it; Node's listener gets the UnauthorizedError too
        bob = await connect("bob")
        await bob.publish("orders.new", 1)
        assert (await asyncio.wait_for(got.get(), WAIT_S)).payload == 1
        assert refused(server) == 1  # the cut alone: the reconnect was accepted
    finally:
        await alice.disconnect()


async def test_a_rotated_token_stops_the_client_after_one_refused_reconnect(setup: Any) -> None:
    server, connect, rewrite = setup()
    alice = IPCClient("shop", "127.0.0.1", server.port, reconnect=True, max_retries=3, **FAST)
    events: list[str] = []
    for name in ("reconnecting", "reconnect_failed"):
        alice.on(name, lambda arg=None, name=name: events.append(name))
    await alice.connect()
    try:
        await rewrite(alice_entry(token_hash=hash_token("new-token", log_n=4)) + BOB_ALL)
        await until(lambda: "reconnect_failed" in events)
        assert events == ["reconnecting", "reconnect_failed"]  # one attempt, refused: final
        assert alice.state is ConnectionState.DISCONNECTED
        assert refused(server) == 2  # the cut, then the one refused reconnect
    finally:
        await alice.disconnect()


async def test_a_pool_refills_after_a_rehashed_token(setup: Any) -> None:
    server, connect, rewrite = setup()
    pool = ConnectionPool("shop", "127.0.0.1", server.port, min_connections=2, max_connections=3, **FAST)
    lost: list[BaseException | None] = []
    pool.on("member_lost", lambda _client, reason: lost.append(reason))
    got: asyncio.Queue[Any] = asyncio.Queue()
    try:
        await pool.start()
        await pool.subscribe("orders.new", got.put_nowait)  # a registrar to bring back, too
        assert (await rewrite(alice_entry(token_hash=hash_token("alice-token", log_n=5)) + BOB_ALL))["disconnected"] == 2
        # Before: no refill, the pool stayed empty.
        await until(lambda: len(lost) == 2 and pool.stats()["total"] >= 2)
        # The cut as itself, as a reconnecting client's "disconnected" and Node's pool's connection_lost give it.
        assert all(isinstance(reason, Unauthorized) and reason.details["reason"] == "credential" for reason in lost)
        bob = await connect("bob")
        async with asyncio.timeout(WAIT_S):
            while got.empty():  # until the new registrar's subscription is in
                await bob.publish("orders.new", 1)
                await asyncio.sleep(0.01)
        assert refused(server) == 2  # the two cuts alone: every reopen was accepted
    finally:
        await pool.close()
