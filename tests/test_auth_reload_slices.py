"""A users-file reload re-checks the open connections in slices
(ipc_server/recheck.py, docs/security.md §3.4): the loop serves other
clients meanwhile (60,000 subscriptions held every client's traffic for
0.4-0.9 s in one go), what comes meanwhile is checked against the new users
at once, and a reload that comes during one takes over from it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, Forbidden, Unauthorized
from ipc_server import recheck

from .test_auth_reload import BOB_ALL, WAIT_S, alice, setup  # noqa: F401 - the fixture
from .test_auth_server import Errors

MANY = 10_000  # about 50-150 ms of checks: many slices of 5 ms
WALK = 500  # patterns walked one a loop turn (SLICE_S 0): more turns than the calls a test makes meanwhile


async def _subscribe(client: IPCClient, patterns: list[str]) -> None:
    gate = asyncio.Semaphore(500)

    async def one(pattern: str) -> None:
        async with gate:
            await client.subscribe(pattern, lambda m: None)

    await asyncio.gather(*(one(p) for p in patterns))


async def _yields_until(condition: Any) -> None:
    """Let the loop run (no timer) until ``condition()``, within WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0)


async def test_the_loop_serves_other_clients_while_a_reload_rechecks(setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    server, connect, rewrite = setup()
    a, b = await connect("alice"), await connect("bob")
    await _subscribe(a, [f"orders.*.x{i}.>" for i in range(MANY)])
    await b.serve("echo", lambda m: m.payload)
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        with caplog.at_level(logging.INFO, logger="ipc_server"):
            counts = await rewrite(alice(subscribe='["orders.>", "more.>"]') + BOB_ALL)  # revokes nothing
    finally:
        task.cancel()
    assert counts == {"disconnected": 0, "withdrawn": 0}
    assert turns >= 5, f"the loop ran {turns} times while {MANY} subscriptions were re-checked"
    line = next(r.getMessage() for r in caplog.records if "users reloaded from" in r.getMessage())
    assert f"({MANY + 1} subscriptions and registrations re-checked in " in line  # and bob's echo
    assert await b.request("echo", 5) == 5 and len(a.get_connection_info()["subscriptions"]) == MANY


async def test_withdrawals_across_slices_are_each_told_and_counted(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recheck, "SLICE_S", 0.0)  # a slice per pattern
    server, connect, rewrite = setup()
    a = await connect("alice")
    errors = Errors(a)
    await _subscribe(a, [f"orders.{i}" for i in range(10)] + [f"orders.{i}.eu" for i in range(10)])
    await a.serve("inventory.x", lambda m: 1)
    counts = await rewrite(alice(subscribe='["orders.*"]', serve="[]") + BOB_ALL)
    assert counts == {"disconnected": 0, "withdrawn": 11}
    told = [await errors.next() for _ in range(11)]
    assert all(isinstance(e, Forbidden) and e.details["revoked"] is True for e in told)
    assert {e.details["channel"] for e in told} == {f"orders.{i}.eu" for i in range(10)} | {"inventory.x"}
    assert sorted(a.get_connection_info()["subscriptions"]) == sorted(f"orders.{i}" for i in range(10))


async def test_what_comes_during_the_recheck_is_checked_against_the_new_users(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob, not re-checked yet (alice's patterns come first), is denied a
    publish the new file takes away, at once; a subscription made during
    the walk is checked as it is made."""
    monkeypatch.setattr(recheck, "SLICE_S", 0.0)
    server, connect, rewrite = setup()
    a, b = await connect("alice"), await connect("bob")
    await _subscribe(a, [f"orders.{i}.eu" for i in range(WALK)])
    bob_publishes_nothing = BOB_ALL.replace('publish = [">"]', "publish = []")
    reload = asyncio.create_task(rewrite(alice(subscribe='["orders.*"]') + bob_publishes_nothing))
    await _yields_until(lambda: server._auth._counts["withdrawn"] >= 1)
    with pytest.raises(Forbidden):
        await b.publish("orders.new", 1, ack=True)
    with pytest.raises(Forbidden):
        await a.subscribe("orders.new.eu", lambda m: None)  # the new rules, not the old
    await a.subscribe("orders.new", lambda m: None)
    assert not reload.done()
    assert await reload == {"disconnected": 0, "withdrawn": WALK}
    assert a.get_connection_info()["subscriptions"] == ["orders.new"]


async def test_a_user_removed_is_cut_at_its_next_operation_during_the_recheck(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recheck, "SLICE_S", 0.0)
    server, connect, rewrite = setup()
    a, b = await connect("alice"), await connect("bob")
    await _subscribe(a, [f"orders.{i}.eu" for i in range(WALK)])
    gone = asyncio.Event()
    b.on("disconnected", lambda *_: gone.set())
    reload = asyncio.create_task(rewrite(alice(subscribe='["orders.*"]')))  # bob removed
    await _yields_until(lambda: server._auth._counts["withdrawn"] >= 1)
    with pytest.raises((Unauthorized, ConnectionLost)):
        await b.publish("orders.new", 1, ack=True)
    await asyncio.wait_for(gone.wait(), WAIT_S)
    assert server._auth._counts["withdrawn"] < WALK  # before the walk reached bob
    assert await reload == {"disconnected": 1, "withdrawn": WALK}


async def test_a_reload_during_a_recheck_takes_over(setup: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The first walk stops; the second checks everything against its own
    users only: with rights that allow all, nothing more is withdrawn."""
    monkeypatch.setattr(recheck, "SLICE_S", 0.0)
    server, connect, rewrite = setup()
    a = await connect("alice")
    errors = Errors(a)
    await _subscribe(a, [f"orders.{i}.eu" for i in range(WALK)])
    with caplog.at_level(logging.INFO, logger="ipc_server"):
        first = asyncio.create_task(rewrite(alice(subscribe='["orders.*"]') + BOB_ALL))
        await _yields_until(lambda: server._auth._counts["withdrawn"] >= 3)
        second = await rewrite(alice(subscribe='["orders.>"]') + BOB_ALL)
        stopped = await first
    assert second == {"disconnected": 0, "withdrawn": 0}
    assert 3 <= stopped["withdrawn"] < WALK and stopped["disconnected"] == 0
    assert len(a.get_connection_info()["subscriptions"]) == WALK - stopped["withdrawn"]
    assert [await errors.next() for _ in range(stopped["withdrawn"])]
    assert not errors.items  # told of what was withdrawn, nothing else
    lines = [r.getMessage() for r in caplog.records if "users reloaded from" in r.getMessage()]
    assert len(lines) == 2 and sorted("a later reload took over the re-check" in line for line in lines) == [False, True]
