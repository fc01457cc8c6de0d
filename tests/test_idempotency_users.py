"""Keyed requests of two users of one app at a responder (docs/protocol.md
§6.6 items 1 and 10): the server keeps their keys apart and says so in its
connect reply (``"users": true``); the responder cannot tell them apart,
so it runs each as a plain request: it neither joins bob's to alice's run
nor answers bob with alice's kept answer. Without a users file the joins
still happen (tests/test_idempotency_restart.py). Node's:
interop-tests/test_js_idempotency_users.py."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, Message
from ipc_server.users import hash_token

from .conftest import WAIT_S
from .test_idempotency import until

FAST: dict[str, Any] = {"initial_delay": 0.02, "max_delay": 0.1}


def users_toml(*names: str) -> str:
    return "".join(
        f'\n[users.{n}]\ntoken_hash = "{hash_token(n + "-token", log_n=4)}"\napps = ["shop"]\n'
        'publish = [">"]\nsubscribe = [">"]\nserve = [">"]\nrequest = [">"]\n'
        for n in names
    )


class Numbered:
    """A gated handler that answers with the number of its run."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()

    async def __call__(self, msg: Message) -> Any:
        self.runs += 1
        run = self.runs
        await self.gate.wait()
        return {"run": run, "amount": msg.payload["amount"]}


@pytest.fixture
def users_path(tmp_path: Path) -> str:
    path = tmp_path / "users.toml"
    path.write_text(users_toml("alice", "bob", "svc"))
    return str(path)


def client(port: int, user: str, **kwargs: Any) -> IPCClient:
    return IPCClient("shop", "127.0.0.1", port, user=user, token=f"{user}-token", **FAST, **kwargs)


async def test_the_connect_reply_says_whether_keys_are_per_user(spawn, users_path) -> None:
    plain = await spawn("-m", "ipc_server", "--port", "0")
    scoped = await spawn("-m", "ipc_server", "--port", "0", "--users", users_path)
    c1, c2 = IPCClient("shop", "127.0.0.1", plain.port), client(scoped.port, "alice")
    try:
        await c1.connect()
        await c2.connect()
        assert "users" not in c1.server_info and c1._link.conn.proto.keys_per_user is False
        assert c2.server_info["users"] is True and c2._link.conn.proto.keys_per_user is True
    finally:
        await c1.disconnect()
        await c2.disconnect()


async def test_another_users_identical_keyed_request_runs_again_at_the_responder(spawn, users_path) -> None:
    server = await spawn("-m", "ipc_server", "--port", "0", "--users", users_path)
    svc, alice, bob = (client(server.port, u) for u in ("svc", "alice", "bob"))
    handler = Numbered()
    try:
        for c in (svc, alice, bob):
            await c.connect()
        await svc.serve("pay", handler)
        a = asyncio.ensure_future(alice.request("pay", {"amount": 10}, idempotency_key="order-1", timeout=WAIT_S))
        await until(lambda: handler.runs == 1)
        b = asyncio.ensure_future(bob.request("pay", {"amount": 10}, idempotency_key="order-1", timeout=WAIT_S))
        keyed = svc._subs.keyed
        await until(lambda: handler.runs == 2 or keyed.joined == 1)  # before the fix: joined alice's run
        handler.gate.set()
        ra, rb = await asyncio.wait_for(asyncio.gather(a, b), WAIT_S)
        assert (ra, rb) == ({"run": 1, "amount": 10}, {"run": 2, "amount": 10})
        assert (keyed.joined, keyed.replayed, keyed.running, keyed.kept) == (0, 0, 0, 0)
    finally:
        for c in (svc, alice, bob):
            await c.disconnect()


async def test_a_kept_answer_is_not_replayed_to_another_user_after_a_restart(spawn, users_path) -> None:
    first = await spawn("-m", "ipc_server", "--port", "0", "--users", users_path)
    port = first.port
    svc, alice = client(port, "svc"), client(port, "alice")
    bob = client(port, "bob")
    handler = Numbered()
    try:
        for c in (svc, alice):
            await c.connect()
        await svc.serve("pay", handler)
        a = asyncio.ensure_future(alice.request("pay", {"amount": 10}, idempotency_key="order-1", timeout=WAIT_S, on_disconnect="fail"))
        await until(lambda: handler.runs == 1)
        first.signal(signal.SIGKILL)
        await first.wait()
        await until(lambda: not svc.connected)
        handler.gate.set()  # alice's answer finds no connection (before the fix: kept, under the app and key)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(a, WAIT_S)
        await spawn("-m", "ipc_server", "--port", str(port), "--users", users_path)
        await bob.connect()
        await until(lambda: svc.connected and svc.server_info.get("users") is True)
        rb = await asyncio.wait_for(bob.request("pay", {"amount": 10}, idempotency_key="order-1", timeout=WAIT_S), WAIT_S * 2)
        assert rb == {"run": 2, "amount": 10}  # his own run, not alice's answer
        assert (svc._subs.keyed.replayed, svc._subs.keyed.kept) == (0, 0)
    finally:
        for c in (svc, alice, bob):
            await c.disconnect()
