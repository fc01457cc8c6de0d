"""A Node connection a SIGHUP reload cuts ``unauthorized`` (its user
removed; docs/security.md §3.4) is not opened again: the IPCClient does not
reconnect, a ConnectionPool does not refill, a LoadBalancedClient does not
reopen the server's member. The real ``python -m ipc_server --users``; its
figures say no connection was opened after the cut, and its
``unauthorized`` count that none was refused (each refusal a scrypt check).
A cut for a changed credential (the same token hashed again) gets one
ordinary reconnect, and a pool refills. The Python client's side
is tests/test_auth_revoked.py."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from ipc_server.users import hash_token
from test_js_pool import pool_agent, until  # noqa: F401 (a fixture)

ALICE = f"""
[users.alice]
token_hash = "{hash_token("alice-token", log_n=4)}"
apps = ["*"]  # the pool agent connects as app "app"
publish = [">"]
subscribe = [">"]
serve = [">"]
request = [">"]
"""
BOB = f"""
[users.bob]
token_hash = "{hash_token("bob-token", log_n=4)}"
apps = ["*"]  # the pool agent connects as app "app"
monitor = true
serve = [">"]
request = [">"]
"""
ALICE_OPTIONS = {"user": "alice", "token": "alice-token", "initialDelay": 20, "maxDelay": 50}


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(ALICE + BOB)
    return path


async def monitor(py_client: Any, port: int) -> Any:
    return await py_client(port, "shop", user="bob", token="bob-token", reconnect=False)


async def figures(bob: Any) -> tuple[int, int, int]:
    """(connections open, connections accepted in all, ``unauthorized`` errors
    sent: the cuts, then one per refused connect)."""
    stats = await bob.system("stats")
    return stats["connections"], stats["connections_total"], stats["errors"].get("unauthorized", 0)


async def remove_alice(server: Any, users_path: Path, bob: Any) -> tuple[int, int]:
    """Alice's connections cut; returns (how many, connections accepted before)."""
    open_before, total_before, _ = await figures(bob)
    users_path.write_text(BOB)
    server.signal(signal.SIGHUP)
    return open_before - 1, total_before  # all but bob's


async def rehash_alice(server: Any, users_path: Path, bob: Any) -> tuple[int, int]:
    """Alice's unchanged token hashed again (a higher scrypt cost): her
    connections are cut ``credential``; returns (how many, connections accepted before)."""
    open_before, total_before, _ = await figures(bob)
    old = users_path.read_text()
    users_path.write_text(old.replace(old.split('token_hash = "')[1].split('"')[0], hash_token("alice-token", log_n=5), 1))
    server.signal(signal.SIGHUP)
    return open_before - 1, total_before


async def opened_nothing(bob: Any, cuts: int, total_before: int) -> None:
    """No connection was opened since the cut, none refused: the cuts alone."""
    _, total, unauthorized = await figures(bob)
    assert (total - total_before, unauthorized) == (0, cuts)


async def test_node_client_cut_unauthorized_does_not_reconnect(start_server: Any, node_agent: Any, py_client: Any, users_path: Path) -> None:
    server = await start_server("--users", str(users_path))
    bob = await monitor(py_client, server.port)
    hold = asyncio.Event()

    async def slow(msg: Any) -> None:
        await hold.wait()

    await bob.serve("svc.slow", slow)
    alice = await node_agent(server.port, app_id="shop", reconnect=True, maxRetries=3, **ALICE_OPTIONS)
    try:
        await alice.call("subscribe", channel="orders.new")
        await alice.call("startRequest", channel="svc.slow", payload=1, timeoutMs=10_000, tag="in-flight")
        await until(lambda: _pending(alice))
        cuts, total_before = await remove_alice(server, users_path, bob)
        assert cuts == 1
        # Before: reconnecting 1, a refused connect, reconnect_failed, error connection_lost, then close.
        await alice.wait_event("close")
        seen = [e["event"] for e in alice.events if e["event"] in ("disconnected", "error", "reconnecting", "reconnect_failed", "close")]
        assert seen == ["disconnected", "error", "close"]
        cut = (await alice.wait_event("disconnected"))["detail"]["error"]
        assert cut["code"] == "unauthorized" and cut["message"] == "user 'alice' was removed"
        assert (await alice.wait_event("error"))["error"] == cut
        done = await alice.wait_event("requestDone")
        assert done["error"]["code"] == "connection_lost" and done["error"]["cause"] == "unauthorized"
        await opened_nothing(bob, cuts, total_before)
    finally:
        hold.set()


async def test_node_keyed_request_cut_unauthorized_fails_with_the_cut_as_its_cause(start_server: Any, node_agent: Any, py_client: Any, users_path: Path) -> None:
    """A keyed request outlives a loss to be sent again; once the cut is final
    it fails ``not_connected`` as a queued call does, caused by the
    ``UnauthorizedError`` (before: "not connected (disconnected)", no cause),
    as Python's (tests/test_auth_revoked.py)."""
    server = await start_server("--users", str(users_path))
    bob = await monitor(py_client, server.port)
    hold = asyncio.Event()

    async def slow(msg: Any) -> None:
        await hold.wait()

    await bob.serve("svc.slow", slow)
    alice = await node_agent(server.port, app_id="shop", reconnect=True, maxRetries=3, **ALICE_OPTIONS)
    try:
        await alice.call("startRequest", channel="svc.slow", payload=1, timeoutMs=10_000, idempotencyKey="order-1", tag="keyed")
        await until(lambda: _pending(alice))
        await remove_alice(server, users_path, bob)
        done = await alice.wait_event("requestDone")
        assert done["error"]["code"] == "not_connected" and done["error"]["cause"] == "unauthorized", done
        assert done["error"]["message"] == "the server closed the connection unauthorized: user 'alice' was removed"
    finally:
        hold.set()


async def _pending(alice: Any) -> bool:
    return bool((await alice.call("info"))["pendingRequests"] == 1)


async def test_node_pool_cut_unauthorized_opens_nothing(start_server: Any, pool_agent: Any, py_client: Any, users_path: Path) -> None:  # noqa: F811
    server = await start_server("--users", str(users_path))
    bob = await monitor(py_client, server.port)
    pool = await pool_agent("pool", port=server.port, minConnections=2, maxConnections=3, **ALICE_OPTIONS)
    await pool.call("start")
    await pool.call("subscribe", channel="orders.new")  # a registrar to bring back, too
    cuts, total_before = await remove_alice(server, users_path, bob)
    assert cuts == 2
    lost = await pool.wait_events("connection_lost", 2)
    assert [e["error"]["code"] for e in lost] == ["unauthorized", "unauthorized"]
    await until(lambda: _settled(pool))
    await opened_nothing(bob, cuts, total_before)  # before: one more, the refill's open, refused


async def test_node_balanced_client_cut_unauthorized_reopens_nothing(start_server: Any, pool_agent: Any, py_client: Any, users_path: Path) -> None:  # noqa: F811
    server = await start_server("--users", str(users_path))
    bob = await monitor(py_client, server.port)
    lb = await pool_agent("balanced", servers=[f"127.0.0.1:{server.port}"], healthCheckInterval=60_000, **ALICE_OPTIONS)
    await lb.call("start")
    await lb.call("serve", channel="inventory.count")
    cuts, total_before = await remove_alice(server, users_path, bob)  # its pool's member and its registrations' client
    down = await lb.wait_event("server_down")
    assert down["error"]["code"] == "unauthorized"
    await until(lambda: _settled(lb))
    await opened_nothing(bob, cuts, total_before)  # before: the registrations' client reconnected, refused


async def _settled(agent: Any) -> bool:
    """No member left and no open under way (a refill's would be counted in ``opening``)."""
    stats = await agent.call("stats")
    total = stats["total"] if "total" in stats else sum(s["total"] for s in stats.values())
    return bool(total == 0 and await agent.call("opening") == 0)


async def test_node_client_cut_for_a_rehashed_token_reconnects(start_server: Any, node_agent: Any, py_client: Any, users_path: Path) -> None:
    server = await start_server("--users", str(users_path))
    bob = await monitor(py_client, server.port)
    alice = await node_agent(server.port, app_id="shop", reconnect=True, maxRetries=3, **ALICE_OPTIONS)
    await alice.call("subscribe", channel="orders.new")
    cuts, total_before = await rehash_alice(server, users_path, bob)
    assert cuts == 1
    # Before: disconnected, error, close: never reconnected.
    await alice.wait_event("reconnected")
    seen = [e["event"] for e in alice.events if e["event"] in ("disconnected", "error", "reconnecting", "reconnected", "reconnect_failed", "close")]
    assert seen == ["disconnected", "error", "reconnecting", "reconnected"]
    cut = (await alice.wait_event("disconnected"))["detail"]["error"]
    assert cut["code"] == "unauthorized" and cut["details"] == {"reason": "credential", "user": "alice"}
    _, total, unauthorized = await figures(bob)
    assert (total - total_before, unauthorized) == (1, cuts)  # one reconnect, accepted


async def test_node_pool_refills_after_a_rehashed_token(start_server: Any, pool_agent: Any, py_client: Any, users_path: Path) -> None:  # noqa: F811
    server = await start_server("--users", str(users_path))
    bob = await monitor(py_client, server.port)
    pool = await pool_agent("pool", port=server.port, minConnections=2, maxConnections=3, **ALICE_OPTIONS)
    await pool.call("start")
    await pool.call("subscribe", channel="orders.new")
    cuts, total_before = await rehash_alice(server, users_path, bob)
    assert cuts == 2
    lost = await pool.wait_events("connection_lost", 2)
    assert [e["error"]["details"]["reason"] for e in lost] == ["credential", "credential"]
    await until(lambda: _refilled(pool))  # before: nothing reopened, the pool stayed empty
    _, total, unauthorized = await figures(bob)
    assert total - total_before >= 2 and unauthorized == cuts  # reopened, none refused


async def _refilled(agent: Any) -> bool:
    stats = await agent.call("stats")
    return bool(stats["total"] >= 2 and await agent.call("opening") == 0)
