"""``IPCServer.reload_users()`` called as in 2.0.0 (a plain method, no
await) and awaited (docs/security.md §3.4): either way a bad file raises
at the call with the old users kept, the new users apply when it returns,
and the open connections are re-checked in slices whether or not anyone
awaits; awaiting the returned dict gives the final counts. When it was a
coroutine, a plain call reloaded nothing and raised nothing."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from ipc_protocol import Forbidden
from ipc_server import recheck

from .test_auth_reload import BOB_ALL, WAIT_S, alice, setup  # noqa: F401 - setup is the fixture
from .test_auth_server import Errors

WALK = 300  # patterns walked one a loop turn (SLICE_S 0)
BOB_PUBLISHES_NOTHING = BOB_ALL.replace('publish = [">"]', "publish = []")


async def _subscribe(client: Any, patterns: list[str]) -> None:
    for pattern in patterns:
        await client.subscribe(pattern, lambda m: None)


async def test_a_plain_call_raises_for_a_bad_file_and_keeps_the_users(setup: Any) -> None:
    server, connect, _ = setup()
    path = server.config.users_file
    b = await connect("bob")
    for text, error in (("[users.bob\n", ValueError), (alice(apps='"shop"') + BOB_ALL, ValueError)):
        with open(path, "w") as f:
            f.write(text)
        with pytest.raises(error):
            server.reload_users()  # no await, as in 2.0.0
    os.remove(path)
    with pytest.raises(OSError):
        server.reload_users()
    assert await b.publish("orders.new", 1, ack=True) == 0  # the old users hold


async def test_a_plain_call_applies_the_users_when_it_returns(setup: Any) -> None:
    server, connect, _ = setup()
    path = server.config.users_file
    a, b = await connect("alice"), await connect("bob")
    errors = Errors(a)
    await a.subscribe("orders.new.eu", lambda m: None)
    with open(path, "w") as f:
        f.write(alice(subscribe='["orders.*"]') + BOB_PUBLISHES_NOTHING)
    counts = server.reload_users()  # not awaited: applied all the same
    assert counts == {"disconnected": 0, "withdrawn": 1} and counts.done()  # a small re-check is over at the return, as in 2.0.0
    with pytest.raises(Forbidden):
        await b.publish("orders.new", 1, ack=True)
    told = await errors.next()
    assert isinstance(told, Forbidden) and told.details["revoked"] is True and told.details["channel"] == "orders.new.eu"
    assert a.get_connection_info()["subscriptions"] == []


async def test_a_plain_call_rechecks_in_slices_without_being_awaited(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recheck, "SLICE_S", 0.0)  # a slice per pattern
    server, connect, _ = setup()
    path = server.config.users_file
    a, b = await connect("alice"), await connect("bob")
    errors = Errors(a)
    await _subscribe(a, [f"orders.{i}.eu" for i in range(WALK)])
    with open(path, "w") as f:
        f.write(alice(subscribe='["orders.*"]') + BOB_PUBLISHES_NOTHING)
    counts = server.reload_users()
    assert not counts.done() and counts["withdrawn"] < WALK  # the walk goes on beside the traffic
    with pytest.raises(Forbidden):  # bob's next operation sees the new users, walk or not
        await b.publish("orders.new", 1, ack=True)
    async with asyncio.timeout(WAIT_S):
        while not counts.done():
            await asyncio.sleep(0)
    assert counts == {"disconnected": 0, "withdrawn": WALK}
    told = [await errors.next() for _ in range(WALK)]
    assert all(isinstance(e, Forbidden) for e in told)  # each told
    assert a.get_connection_info()["subscriptions"] == []


async def test_awaited_it_returns_the_final_counts_even_past_a_cancelled_wait(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recheck, "SLICE_S", 0.0)
    server, connect, rewrite = setup()
    a = await connect("alice")
    Errors(a)  # the withdrawals told, heard
    await _subscribe(a, [f"orders.{i}.eu" for i in range(WALK)])
    with open(server.config.users_file, "w") as f:
        f.write(alice(subscribe='["orders.*"]') + BOB_ALL)
    reload = server.reload_users()

    async def wait() -> dict[str, int]:
        return await reload

    waiter = asyncio.create_task(wait())
    await asyncio.sleep(0)
    waiter.cancel()  # a caller's timeout: the re-check goes on
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await reload == {"disconnected": 0, "withdrawn": WALK}
    assert await reload is reload  # awaited again: the same final dict
    assert await rewrite(alice(subscribe='["orders.*"]') + BOB_ALL) == {"disconnected": 0, "withdrawn": 0}


async def test_a_call_from_another_thread_is_made_in_the_servers_loop(setup: Any) -> None:
    """``asyncio.to_thread(server.reload_users)``, which 2.0.0 allowed: it
    raises in that thread and applies the users, made in the server's loop."""
    server, connect, _ = setup()
    path = server.config.users_file
    b = await connect("bob")
    with open(path, "w") as f:
        f.write("[users.bob\n")
    with pytest.raises(ValueError):
        await asyncio.wait_for(asyncio.to_thread(server.reload_users), WAIT_S)
    with open(path, "w") as f:
        f.write(alice() + BOB_PUBLISHES_NOTHING)
    counts = await asyncio.wait_for(asyncio.to_thread(server.reload_users), WAIT_S)
    assert counts == {"disconnected": 0, "withdrawn": 0} and await counts is counts
    with pytest.raises(Forbidden):
        await b.publish("orders.new", 1, ack=True)
