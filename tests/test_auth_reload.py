"""Reloading the users file (``IPCServer.reload_users()``, what SIGHUP does;
docs/security.md §3) with real clients connected: rights that shrink
withdraw the registrations they no longer allow, each told ``forbidden``
and dropped by the client too; a user removed or whose token changed is
disconnected ``unauthorized``; a bad file keeps the old users. SIGHUP
itself, on a real ``python -m ipc_server``, is in
interop-tests/test_js_users.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Forbidden, Message, NoResponders, Unauthorized
from ipc_server import IPCServer
from ipc_server.users import UsersError, hash_token

from .test_auth_server import Errors

WAIT_S = 5.0
ALICE = hash_token("alice-token", log_n=4)
BOB = hash_token("bob-token", log_n=4)
BOB_ALL = f"""
[users.bob]
token_hash = "{BOB}"
apps = ["shop"]
publish = [">"]
subscribe = [">"]
serve = [">"]
request = [">"]
"""


def alice(subscribe: str = '["orders.>"]', serve: str = '["inventory.*"]', token_hash: str = ALICE, apps: str = '["shop"]') -> str:
    return f"""
[users.alice]
token_hash = "{token_hash}"
apps = {apps}
publish = [">"]
subscribe = {subscribe}
serve = {serve}
request = [">"]
"""


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    path = tmp_path / "users.toml"
    path.write_text(alice() + BOB_ALL)
    server = IPCServer("127.0.0.1", 0, users_file=str(path), shutdown_grace_s=0.5, no_responders_grace_s=0)
    await server.start()
    clients: list[IPCClient] = []

    async def connect(user: str, **kwargs: Any) -> IPCClient:
        client = IPCClient("shop", "127.0.0.1", server.port, user=user, token=f"{user}-token", reconnect=False, request_timeout=WAIT_S, **kwargs)
        clients.append(client)
        await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    async def rewrite(text: str) -> dict[str, int]:
        path.write_text(text)
        return await server.reload_users()

    yield lambda: (server, connect, rewrite)
    for client in clients:
        await client.disconnect()
    await server.close()


async def test_shrunk_rights_withdraw_registrations_and_tell_the_client(setup: Any) -> None:
    server, connect, rewrite = setup()
    a, b = await connect("alice"), await connect("bob")
    errors = Errors(a)
    got: asyncio.Queue[Message] = asyncio.Queue()
    await a.subscribe("orders.new", got.put_nowait)
    await a.subscribe("orders.*.eu", got.put_nowait)
    await a.serve("inventory.*", lambda m: 7)
    assert await b.request("inventory.count") == 7
    assert await rewrite(alice(subscribe='["orders.new"]', serve="[]") + BOB_ALL) == {"disconnected": 0, "withdrawn": 2}
    told = [await errors.next(), await errors.next()]
    assert all(isinstance(e, Forbidden) and e.details["revoked"] is True for e in told)
    assert {(e.details["operation"], e.details["channel"]) for e in told} == {("subscribe", "orders.*.eu"), ("serve", "inventory.*")}
    # The client dropped them too: they are not restored on a reconnection.
    info = a.get_connection_info()
    assert info["subscriptions"] == ["orders.new"] and info["services"] == []
    # The server no longer delivers or forwards to them; what is still allowed works.
    assert await b.publish("orders.x.eu", 1, ack=True) == 0
    with pytest.raises(NoResponders):
        await b.request("inventory.count")
    assert await b.publish("orders.new", 2, ack=True) == 1
    assert (await asyncio.wait_for(got.get(), WAIT_S)).payload == 2
    assert a.connected and (await a.system("channels"))["channels"] == {"orders.new": 1}
    # And a new subscription is checked against the new rights.
    with pytest.raises(Forbidden):
        await a.subscribe("orders.*.eu", got.put_nowait)


async def test_a_removed_user_or_a_changed_token_is_disconnected_unauthorized(setup: Any) -> None:
    server, connect, rewrite = setup()
    a, b = await connect("alice"), await connect("bob")
    a_errors, a_gone = Errors(a), asyncio.Event()
    a.on("disconnected", lambda *_: a_gone.set())
    await rewrite(alice(token_hash=hash_token("new-token", log_n=4)) + BOB_ALL)
    await asyncio.wait_for(a_gone.wait(), WAIT_S)
    error = await a_errors.next()
    assert isinstance(error, Unauthorized) and "credential of user 'alice' changed" in str(error)
    assert error.details == {"reason": "credential", "user": "alice"}
    with pytest.raises(Unauthorized):
        await connect("alice")  # the old token no longer works
    # Bob's rights did not change: still connected, still working.
    assert b.connected and await b.publish("orders.new", 1, ack=True) == 0
    b_gone = asyncio.Event()
    b.on("disconnected", lambda *_: b_gone.set())
    b_errors = Errors(b)
    assert (await rewrite(alice()))["disconnected"] == 1  # bob removed
    await asyncio.wait_for(b_gone.wait(), WAIT_S)
    assert "user 'bob' was removed" in str(await b_errors.next())


async def test_a_user_that_may_no_longer_use_the_app_is_disconnected(setup: Any) -> None:
    server, connect, rewrite = setup()
    a = await connect("alice")
    gone = asyncio.Event()
    a.on("disconnected", lambda *_: gone.set())
    errors = Errors(a)
    await rewrite(alice(apps='["billing"]') + BOB_ALL)
    await asyncio.wait_for(gone.wait(), WAIT_S)
    error = await errors.next()
    assert "may no longer connect as app 'shop'" in str(error) and error.details == {"reason": "app", "user": "alice"}


async def test_a_bad_file_keeps_the_old_users(setup: Any) -> None:
    server, connect, rewrite = setup()
    a = await connect("alice")
    await a.subscribe("orders.new", lambda m: None)
    with pytest.raises(UsersError, match="user 'alice': unknown key 'subscrbe'"):
        await rewrite(alice().replace("subscribe", "subscrbe") + BOB_ALL)
    assert a.connected and a.get_connection_info()["subscriptions"] == ["orders.new"]
    await a.subscribe("orders.*", lambda m: None)  # the old rights still hold
    await connect("bob")  # and the old users


async def test_no_held_call_of_a_withdrawn_subscription_starts(setup: Any) -> None:
    """Publishes held for a handler slot when the server withdraws the
    subscription are not handled: the handler's call would start after
    the client had dropped it (all 5 ran)."""
    server, connect, rewrite = setup()
    a, b = await connect("alice", max_concurrent_handlers=1), await connect("bob")
    errors = Errors(a)
    calls: list[Any] = []
    release = asyncio.Event()

    async def busy(msg: Message) -> None:
        calls.append(msg.payload)
        await release.wait()

    await a.subscribe("orders.*.eu", busy)
    for i in range(5):
        await b.publish("orders.x.eu", i, ack=True)
    await a.system("ping")  # all read: one runs, four are held
    await rewrite(alice(subscribe='["orders.new"]') + BOB_ALL)
    assert isinstance(await errors.next(), Forbidden)
    release.set()
    done = asyncio.Event()

    async def marker(msg: Message) -> None:  # held behind the four: runs once they are dealt with
        done.set()

    await a.subscribe("orders.new", marker)
    await b.publish("orders.new", None, ack=True)
    await asyncio.wait_for(done.wait(), WAIT_S)
    assert calls == [0]
