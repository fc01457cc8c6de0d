"""The pool's ``error`` event, as Node's (js-client/test/pool_listeners.test.js):
a member's own error that belongs to no call (a pooled subscription's
handler that raised) goes to the pool's ``error``, once; the error that
ended a member's connection is ``member_lost``'s only; an event callback
that raises goes to ``error`` too, never breaking the pool."""

from __future__ import annotations

import asyncio
from typing import Any

from ipc_client import ConnectionPool
from ipc_protocol import ConnectionLost, Message, RequestTimeout

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .test_pool import until


async def test_a_raising_handler_of_a_pooled_subscription_goes_to_the_pools_error_once(server, make_client) -> None:
    pool = ConnectionPool("app", "127.0.0.1", server.port, min_connections=1, max_connections=1)
    errors: list[BaseException] = []
    pool.on("error", errors.append)
    failure = ValueError("the handler failed")

    def failing(_msg: Message) -> None:
        raise failure

    got: asyncio.Queue[Any] = asyncio.Queue()
    try:
        await pool.start()
        await pool.subscribe("news", failing)
        await pool.subscribe("after", lambda msg: got.put_nowait(msg.payload))
        other = await make_client()
        assert await other.publish("news", 1, ack=True) == 1
        await until(lambda: len(errors) >= 1)
        assert await other.publish("after", 2, ack=True) == 1  # the same member, after the first
        assert await asyncio.wait_for(got.get(), WAIT_S) == 2
        assert errors == [failure]  # once: the member's client reported it to no one else
    finally:
        await pool.close()


async def test_a_member_lost_to_a_heartbeat_timeout_is_member_losts_only(server) -> None:
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    pool = ConnectionPool("app", "127.0.0.1", proxy.port, min_connections=1, max_connections=1, heartbeat_interval=0.05, heartbeat_timeout=0.15)
    errors: list[BaseException] = []
    lost: list[BaseException | None] = []
    pool.on("error", errors.append)
    pool.on("member_lost", lambda _client, reason: lost.append(reason))
    try:
        await pool.start()
        (member,) = pool._members
        seen = asyncio.Event()
        member.client.on("error", lambda _exc: seen.set())  # after the pool's own listener
        proxy.blackhole(True)  # a hung server: no pong
        async with asyncio.timeout(WAIT_S):
            await seen.wait()
        assert len(lost) == 1 and isinstance(lost[0], ConnectionLost) and isinstance(lost[0].__cause__, RequestTimeout)
        assert errors == []  # the timeout that ended it is the loss's cause, not a pool error
    finally:
        await pool.close()
        await proxy.close()


async def test_a_raising_event_callback_goes_to_the_pools_error(server) -> None:
    pool = ConnectionPool("app", "127.0.0.1", server.port, min_connections=1, max_connections=1)
    errors: list[BaseException] = []
    pool.on("error", errors.append)
    failure = RuntimeError("the callback failed")

    def created(_client: Any) -> None:
        raise failure

    pool.on("member_created", created)
    try:
        await pool.start()  # the pool goes on
        assert errors == [failure] and pool.stats()["total"] == 1
    finally:
        await pool.close()
