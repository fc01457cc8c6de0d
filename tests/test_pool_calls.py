"""ConnectionPool's own calls and registrations against a real server on
loopback (docs/resilience.md §7), as the Node pool makes them
(js-client/test/pool_calls.test.js): errors with their codes, deadlines
that have passed, calls on shared members."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool
from ipc_protocol import AlreadyServing, Message, RequestTimeout


@pytest.fixture
async def make_pool(server) -> AsyncIterator[Callable[..., Any]]:
    pools: list[ConnectionPool] = []

    async def make(**kwargs: Any) -> ConnectionPool:
        pool = ConnectionPool("app", "127.0.0.1", server.port, **kwargs)
        pools.append(pool)
        await pool.start()
        return pool

    yield make
    for p in pools:
        await p.close()


async def test_serving_a_served_channel_again_raises_already_serving(make_pool, make_client) -> None:
    """As IPCClient.serve(): a plain ValueError without a code before."""
    pool = await make_pool()
    assert await pool.serve("twice", lambda msg: 1)
    with pytest.raises(AlreadyServing) as caught:
        await pool.serve("twice", lambda msg: 2)
    assert caught.value.code == "already_serving"
    other = await make_client()
    assert await other.request("twice") == 1  # the first one still answers
    await pool.unserve("twice")
    assert await pool.serve("twice", lambda msg: 3)
    assert await other.request("twice") == 3


@pytest.mark.parametrize("timeout", [0, -1, 0.0, -1e-9])
async def test_a_deadline_already_passed_fails_the_call_before_it_is_sent(server, make_pool, timeout: float) -> None:
    """As IPCClient, system(), the load balancer and the service client: a
    timeout of zero or less is a deadline already passed (ipc_client/timeouts.py).
    Before, timeout=0 was answered and timeout=-1 sent with a 1 ms budget."""
    ran: list[Any] = []

    def count(msg: Message) -> Any:
        ran.append(msg.payload)
        return msg.payload

    server.add_handler("count", count)
    pool = await make_pool()
    for call in (pool.request, pool.send_request, pool.notify, pool.publish):
        with pytest.raises(RequestTimeout):
            await call("count", "late", timeout=timeout)
    assert await pool.request("count", "now") == "now"  # after them on the wire, had they been sent
    assert ran == ["now"]
    assert pool.stats()["in_use"] == 0
