"""Keyed requests of two users of one app at a Node responder
(docs/protocol.md §6.6 items 1 and 10), with the real server and a users
file: the server keeps their keys apart and says so in its connect reply
(``"users": true``); the responder cannot tell them apart, so it runs each
as a plain request: it neither joins bob's to alice's run nor answers bob
with alice's kept answer. Without a users file the joins still happen
(test_js_idempotency_restart.py). Python's: tests/test_idempotency_users.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import WAIT_S
from ipc_server.users import hash_token

FAST = {"initialDelay": 20, "maxDelay": 100}


def users_toml(*names: str) -> str:
    return "".join(
        f'\n[users.{n}]\ntoken_hash = "{hash_token(n + "-token", log_n=4)}"\napps = ["shop"]\n'
        'publish = [">"]\nsubscribe = [">"]\nserve = [">"]\nrequest = [">"]\n'
        for n in names
    )


@pytest.fixture
def users_path(tmp_path: Path) -> str:
    path = tmp_path / "users.toml"
    path.write_text(users_toml("alice", "bob", "svc"))
    return str(path)


def as_user(node_agent, port: int, user: str, **options):
    return node_agent(port, app_id="shop", user=user, token=f"{user}-token", **FAST, **options)


async def test_node_responder_runs_another_users_identical_keyed_request_again(start_server, node_agent, users_path):
    server = await start_server("--users", users_path)
    svc = await as_user(node_agent, server.port, "svc")
    assert (await svc.wait_event("connected"))["detail"]["keysPerUser"] is True  # the reply's "users": true
    await svc.call("serve", channel="pay", kind="gated", numbered=True)
    alice = await as_user(node_agent, server.port, "alice")
    bob = await as_user(node_agent, server.port, "bob")
    await alice.call("startRequest", channel="pay", payload={"amount": 10}, timeoutMs=int(WAIT_S * 1000), idempotencyKey="order-1", tag="alice")
    await svc.wait_events("served", 1)
    await bob.call("startRequest", channel="pay", payload={"amount": 10}, timeoutMs=int(WAIT_S * 1000), idempotencyKey="order-1", tag="bob")
    async with asyncio.timeout(WAIT_S):  # the server forwarded bob's: before the fix it joined alice's run
        while svc.count("served") < 2 and (await svc.call("keyedRuns"))["joined"] < 1:
            await asyncio.sleep(0.02)
    await svc.call("openGate", channel="pay")
    (a,) = await alice.wait_events("requestDone", 1)
    (b,) = await bob.wait_events("requestDone", 1)
    assert (a["ok"], a["payload"]) == (True, {"run": 1, "payload": {"amount": 10}})
    assert (b["ok"], b["payload"]) == (True, {"run": 2, "payload": {"amount": 10}})  # his own run
    runs = await svc.call("keyedRuns")
    assert (runs["joined"], runs["replayed"], runs["running"], runs["kept"]) == (0, 0, 0, 0)


async def test_node_responder_does_not_replay_a_kept_answer_to_another_user_after_a_restart(start_server, node_agent, users_path):
    first = await start_server("--users", users_path)
    port = first.port
    svc = await as_user(node_agent, port, "svc")
    await svc.call("serve", channel="pay", kind="gated", numbered=True)
    alice = await as_user(node_agent, port, "alice")
    await alice.call(
        "startRequest", channel="pay", payload={"amount": 10}, timeoutMs=int(WAIT_S * 1000), idempotencyKey="order-1", onDisconnect="fail", tag="alice"
    )
    await svc.wait_events("served", 1)
    await first.kill()
    await svc.wait_event("disconnected")
    await svc.call("openGate", channel="pay")  # alice's answer finds no connection (before the fix: kept, under the app and key)
    await svc.wait_events("ended", 1)
    (a,) = await alice.wait_events("requestDone", 1)
    assert a["ok"] is False
    await start_server("--users", users_path, port=port)
    await svc.wait_events("connected", 2, timeout=WAIT_S * 2)  # the first connection's, then the restarted server's (serving again)
    bob = await as_user(node_agent, port, "bob")
    b = await bob.call("request", channel="pay", payload={"amount": 10}, timeoutMs=int(WAIT_S * 1000), idempotencyKey="order-1")
    assert b["payload"] == {"run": 2, "payload": {"amount": 10}}  # his own run, not alice's answer
    runs = await svc.call("keyedRuns")
    assert (runs["replayed"], runs["kept"]) == (0, 0)


async def test_node_says_keys_are_not_per_user_without_a_users_file(start_server, node_agent):
    server = await start_server()
    agent = await node_agent(server.port)
    assert (await agent.wait_event("connected"))["detail"]["keysPerUser"] is False
