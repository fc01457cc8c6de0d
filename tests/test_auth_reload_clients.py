"""What the client's higher layers do when a users-file reload (SIGHUP,
``IPCServer.reload_users()``) shrinks a user's rights or removes the user
(docs/security.md §3.4, docs/resilience.md §7, §10): a pool drops a
withdrawn registration and never replays it, a replay refused drops only
that one, an iterator on a withdrawn registration ends with ``Forbidden``,
and a pool stops refilling once its opens are refused ``unauthorized``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import ConnectionPool, LoadBalancedClient, SyncIPCClient
from ipc_protocol import Forbidden, Unauthorized
from ipc_server import IPCServer

from .test_auth_reload import BOB_ALL, WAIT_S, alice, setup  # noqa: F401 - setup is the fixture

POOL = {"user": "alice", "token": "alice-token", "request_timeout": WAIT_S, "initial_delay": 0.02, "max_delay": 0.05}


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.01)


def watched_pool(port: int) -> tuple[ConnectionPool, asyncio.Queue[Any], asyncio.Event]:
    """Alice's pool, a queue for what its subscriptions hear, and an event set when it opens a member."""
    pool = ConnectionPool("shop", "127.0.0.1", port, min_connections=1, max_connections=2, **POOL)
    got: asyncio.Queue[Any] = asyncio.Queue()
    created = asyncio.Event()
    pool.on("member_created", lambda _client: created.set())
    return pool, got, created


def lose_registrar(pool: ConnectionPool) -> None:
    pool._registrations.registrar.client._link.conn.abort()


async def test_a_pool_drops_a_withdrawn_registration_and_its_registrar_is_replaced(setup: Any) -> None:
    server, connect, rewrite = setup()
    bob = await connect("bob")
    pool, got, created = watched_pool(server.port)
    try:
        await pool.start()
        await pool.subscribe("orders.new", lambda m: got.put_nowait(m.payload))
        await pool.subscribe("orders.*.eu", lambda m: got.put_nowait(m.payload))
        await pool.serve("inventory.*", lambda m: 7)
        assert await bob.request("inventory.count") == 7
        assert (await rewrite(alice(subscribe='["orders.new"]', serve="[]") + BOB_ALL))["withdrawn"] == 2
        await until(lambda: "inventory.*" not in pool._registrations.services)
        # Dropped from the pool's tables: serving it again is checked anew, not AlreadyServing.
        with pytest.raises(Forbidden):
            await pool.serve("inventory.*", lambda m: 8)
        created.clear()
        lose_registrar(pool)
        await asyncio.wait_for(created.wait(), WAIT_S)
        # The replacement opened with what is still allowed, and kept it.
        await until(lambda: pool._registrations.registrar is not None and pool._registrations.registrar.usable)
        assert pool.stats()["total"] >= 1
        assert await bob.publish("orders.new", 1, ack=True) == 1
        assert await asyncio.wait_for(got.get(), WAIT_S) == 1
        assert await bob.publish("orders.x.eu", 2, ack=True) == 0
        assert await pool.publish("orders.new", 3, ack=True) >= 1  # the pool's calls work
    finally:
        await pool.close()


async def test_a_registration_refused_on_replay_is_dropped_and_the_others_restored(setup: Any) -> None:
    server, connect, rewrite = setup()
    bob = await connect("bob")
    pool, got, created = watched_pool(server.port)
    try:
        await pool.start()
        await pool.subscribe("orders.new", lambda m: got.put_nowait(m.payload))
        await pool.serve("inventory.*", lambda m: 7)
        created.clear()
        lose_registrar(pool)  # gone before the reload: nobody is told of the withdrawal
        await rewrite(alice(serve="[]") + BOB_ALL)
        await asyncio.wait_for(created.wait(), WAIT_S)
        await until(lambda: pool._registrations.registrar is not None and pool._registrations.registrar.usable)
        assert pool._registrations.services == {}
        assert await bob.publish("orders.new", 1, ack=True) == 1
        assert await asyncio.wait_for(got.get(), WAIT_S) == 1
        with pytest.raises(Forbidden):
            await pool.serve("inventory.*", lambda m: 8)
        assert pool.stats()["total"] >= 1
    finally:
        await pool.close()


async def test_a_load_balanced_client_drops_a_registration_every_server_withdrew(setup: Any) -> None:
    server, connect, rewrite = setup()
    bob = await connect("bob")
    lb = LoadBalancedClient("shop", [("127.0.0.1", server.port)], health_check_interval=60, **POOL)
    try:
        await lb.start()
        await lb.serve("inventory.*", lambda m: 7)
        await lb.subscribe("orders.new", lambda m: None)
        assert await bob.request("inventory.count") == 7
        await rewrite(alice(serve="[]") + BOB_ALL)
        pool = next(iter(lb._pools.values()))
        await until(lambda: "inventory.*" not in pool._registrations.services)
        with pytest.raises(Forbidden):  # checked anew, not AlreadyServing
            await lb.serve("inventory.*", lambda m: 8)
        lose_registrar(pool)
        await until(lambda: pool._registrations.registrar is not None and pool._registrations.registrar.usable)
        assert await bob.publish("orders.new", 1, ack=True) == 1
    finally:
        await lb.close()


async def test_iterators_on_a_withdrawn_registration_end_with_forbidden(setup: Any) -> None:
    server, connect, rewrite = setup()
    a, bob = await connect("alice"), await connect("bob")
    async with a.subscription("orders.new") as messages, a.requests("inventory.*") as requests:
        assert await bob.publish("orders.new", 1, ack=True) == 1
        await rewrite(alice(subscribe="[]", serve="[]") + BOB_ALL)
        first = await asyncio.wait_for(messages.__anext__(), WAIT_S)
        assert first.payload == 1  # what was buffered comes first
        with pytest.raises(Forbidden) as raised:
            await asyncio.wait_for(messages.__anext__(), WAIT_S)
        assert raised.value.details["channel"] == "orders.new"
        with pytest.raises(Forbidden) as raised:
            await asyncio.wait_for(requests.__anext__(), WAIT_S)
        assert raised.value.details["operation"] == "serve"
        with pytest.raises(StopAsyncIteration):
            await messages.__anext__()
    assert a.connected


def test_a_blocking_subscription_on_a_withdrawn_registration_ends_with_forbidden(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(alice() + BOB_ALL)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = IPCServer("127.0.0.1", 0, users_file=str(path), shutdown_grace_s=0.2, no_responders_grace_s=0)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(WAIT_S)
    try:
        with SyncIPCClient("shop", "127.0.0.1", server.port, user="alice", token="alice-token", request_timeout=WAIT_S) as client:
            with client.subscription("orders.new") as messages:
                path.write_text(alice(subscribe="[]") + BOB_ALL)
                asyncio.run_coroutine_threadsafe(asyncio.to_thread(server.reload_users), loop).result(WAIT_S)  # as in 2.0.0: made in the loop
                ended: list[BaseException] = []
                reader = threading.Thread(target=lambda: _read_all(messages, ended), daemon=True)
                reader.start()
                reader.join(WAIT_S)
                assert not reader.is_alive(), "the blocking iterator still waits"
                assert len(ended) == 1 and isinstance(ended[0], Forbidden)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(WAIT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()


def _read_all(messages: Any, ended: list[BaseException]) -> None:
    try:
        for _ in messages:
            pass
    except Forbidden as exc:
        ended.append(exc)


async def test_a_pool_stops_refilling_when_its_user_is_removed(setup: Any) -> None:
    server, connect, rewrite = setup()
    bob = await connect("bob")
    await bob.serve("svc.echo", lambda m: m.payload)
    pool = ConnectionPool("shop", "127.0.0.1", server.port, min_connections=2, max_connections=3, **POOL)
    lost = asyncio.Event()
    pool.on("member_lost", lambda *_: lost.set())
    try:
        await pool.start()
        await pool.subscribe("orders.new", lambda m: None)
        await rewrite(BOB_ALL)  # alice removed: her connections closed unauthorized
        await asyncio.wait_for(lost.wait(), WAIT_S)
        await until(lambda: pool.stats()["total"] == 0 and (pool._refill_task is None or pool._refill_task.done()))
        # Calls still try once each, and fail at once.
        started = time.monotonic()
        with pytest.raises(Unauthorized):
            await pool.request("svc.echo", 1)
        assert time.monotonic() - started < WAIT_S / 2
        # Alice is back: the next call opens a member, and the refill brings the pool back.
        await rewrite(alice() + BOB_ALL)
        assert await pool.request("svc.echo", 2) == 2
        await until(lambda: pool.stats()["total"] == 2)
    finally:
        await pool.close()
