"""Users and permissions across languages (docs/security.md §3): the real
``python -m ipc_server --users FILE`` in its own process, the real Node
client (node/agent.js) and the Python client. The handshake's refusals,
a ``forbidden`` answer for every denied operation in the Node client, a
SIGHUP that shrinks rights while both clients are connected, and the
token file."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from ipc_protocol import Forbidden, Unauthorized
from ipc_server.users import hash_token

ALICE = hash_token("alice-token", log_n=4)
BOB = hash_token("bob-token", log_n=4)


def users(alice_subscribe: str = '["orders.*", "orders.*.>"]', alice_serve: str = '["inventory.*"]', bob: bool = True) -> str:
    text = f"""
[users.alice]
token_hash = "{ALICE}"
apps = ["shop"]
publish = {{ allow = ["orders.>"], deny = ["orders.secret"] }}
subscribe = {alice_subscribe}
serve = {alice_serve}
request = {{ allow = [">"], deny = ["admin.>"] }}
"""
    if bob:
        text += f"""
[users.bob]
token_hash = "{BOB}"
apps = ["*"]
monitor = true
publish = [">"]
subscribe = [">"]
serve = [">"]
request = [">"]
"""
    return text


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(users())
    return path


async def test_node_handshake_refusals(start_server: Any, node_agent: Any, users_path: Path) -> None:
    server = await start_server("--users", str(users_path))
    good = await node_agent(server.port, app_id="shop", user="alice", token="alice-token")
    assert (await good.call("system", action="stats"))["scope"] == "app"
    for app_id, options, text in [
        ("shop", {"user": "alice", "token": "wrong"}, "invalid user or token"),
        ("shop", {"user": "mallory", "token": "alice-token"}, "invalid user or token"),
        ("shop", {"user": "alice"}, "invalid user or token"),  # a known name without its token: as an unknown one
        ("shop", {"user": "mallory"}, "invalid user or token"),
        ("billing", {"user": "alice", "token": "alice-token"}, "user 'alice' may not connect as app 'billing'"),
        ("shop", {}, "credentials required"),
    ]:
        agent = await node_agent(server.port, app_id=app_id, connect=False, **options)
        error = await agent.call_error("connect")
        assert error["code"] == "unauthorized" and text in error["message"], (options, error)


async def test_node_gets_forbidden_for_every_denied_operation(start_server: Any, node_agent: Any, users_path: Path) -> None:
    server = await start_server("--users", str(users_path))
    bob = await node_agent(server.port, app_id="shop", user="bob", token="bob-token")
    await bob.call("serve", channel="admin.reset", kind="echo")
    alice = await node_agent(server.port, app_id="shop", user="alice", token="alice-token")

    error = await alice.call_error("request", channel="admin.reset", payload={})
    assert error["code"] == "forbidden" and error["message"] == "user 'alice' may not request on 'admin.reset'"
    assert error["details"] == {"operation": "request", "channel": "admin.reset", "user": "alice"}
    error = await alice.call_error("publish", channel="payments.x", payload=1, ack=True)
    assert error["code"] == "forbidden" and error["details"]["operation"] == "publish"
    # No answer is expected for these two; the error event says they were refused.
    await alice.call("publish", channel="orders.secret", payload=1)
    event = await alice.wait_event("error")
    assert event["error"]["code"] == "forbidden" and event["error"]["details"]["channel"] == "orders.secret"
    await alice.call("notify", channel="admin.reset", payload={})
    event = await alice.wait_event("error")
    assert event["error"]["code"] == "forbidden" and event["error"]["details"] == {"operation": "request", "channel": "admin.reset", "user": "alice"}
    # Refused at subscribe (and serve) time: the call fails, nothing is kept.
    error = await alice.call_error("subscribe", channel="*.new")  # payments.new could match
    assert error["code"] == "forbidden" and error["message"] == "user 'alice' may not subscribe to '*.new'"
    error = await alice.call_error("serve", channel="orders.create", kind="echo")
    assert error["code"] == "forbidden" and error["message"] == "user 'alice' may not serve 'orders.create'"
    info = await alice.call("info")
    assert info["subscriptions"] == [] and info["responders"] == []
    # The connection stayed open; what is allowed works.
    await alice.call("subscribe", channel="orders.*.eu")
    await alice.call("serve", channel="inventory.count", kind="add")
    assert (await bob.call("request", channel="inventory.count", payload={"a": 1, "b": 2}))["payload"] == 3
    assert await bob.call("publish", channel="orders.x.eu", payload=7, ack=True) == {"delivered": 1}
    assert (await alice.wait_event("message"))["payload"] == 7
    assert alice.count("error") == 2


async def test_sighup_shrinks_rights_of_connected_node_and_python_clients(
    start_server: Any, node_agent: Any, py_client: Any, users_path: Path
) -> None:
    server = await start_server("--users", str(users_path))
    node = await node_agent(server.port, app_id="shop", user="alice", token="alice-token")
    await node.call("subscribe", channel="orders.new")
    await node.call("subscribe", channel="orders.*.eu")
    await node.call("serve", channel="inventory.count", kind="add")
    py = await py_client(server.port, "shop", user="alice", token="alice-token", reconnect=False)
    py_errors: asyncio.Queue[BaseException] = asyncio.Queue()
    py.on("error", py_errors.put_nowait)
    await py.subscribe("orders.*.eu", lambda m: None)
    await py.subscribe("orders.new", lambda m: None)
    bob = await py_client(server.port, "shop", user="bob", token="bob-token", reconnect=False)

    users_path.write_text(users(alice_subscribe='["orders.new"]', alice_serve="[]"))
    server.signal(signal.SIGHUP)

    withdrawn = {(e["error"]["details"]["operation"], e["error"]["details"]["channel"]) for e in await node.wait_events("error", 2)}
    assert withdrawn == {("subscribe", "orders.*.eu"), ("serve", "inventory.count")}
    error = await asyncio.wait_for(py_errors.get(), 10)
    assert isinstance(error, Forbidden) and error.details["revoked"] is True and error.details["channel"] == "orders.*.eu"
    info = await node.call("info")
    assert info["subscriptions"] == ["orders.new"] and info["responders"] == []
    assert py.get_connection_info()["subscriptions"] == ["orders.new"]
    assert await bob.publish("orders.x.eu", 1, ack=True) == 0
    assert await bob.publish("orders.new", 1, ack=True) == 2
    assert (await node.wait_event("message"))["channel"] == "orders.new"

    # A bad file on SIGHUP: logged, the old users stay.
    users_path.write_text(users().replace("apps", "aps", 1))
    server.signal(signal.SIGHUP)
    await wait_for_log(server, "users file not reloaded")
    assert await bob.publish("orders.new", 2, ack=True) == 2

    # A user removed: disconnected, told unauthorized.
    users_path.write_text(users(bob=False))
    gone = asyncio.Event()
    bob.on("disconnected", lambda *_: gone.set())
    bob_errors: asyncio.Queue[BaseException] = asyncio.Queue()
    bob.on("error", bob_errors.put_nowait)
    server.signal(signal.SIGHUP)
    await asyncio.wait_for(gone.wait(), 10)
    assert isinstance(await asyncio.wait_for(bob_errors.get(), 10), Unauthorized)
    assert await node.call("healthCheck") is True  # alice kept her connection throughout


async def wait_for_log(server: Any, text: str, timeout: float = 10) -> None:
    """The server's log names ``text`` within ``timeout`` (its stderr is a file: polled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in server.stderr():
        assert loop.time() < deadline, f"{text!r} not logged: {server.stderr()}"
        await asyncio.sleep(0.02)


async def test_token_file_keeps_the_secret_out_of_the_command_line(start_server: Any, node_agent: Any, py_client: Any, tmp_path: Path) -> None:
    secret = "token-from-a-file-7f3a"
    path = tmp_path / "token"
    path.write_text(secret + "\n")
    server = await start_server("--token-file", str(path))
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes() if Path(f"/proc/{server.pid}").exists() else b""
    assert secret.encode() not in cmdline
    await node_agent(server.port, token=secret)
    await py_client(server.port, token=secret)
    with pytest.raises(Unauthorized):
        await py_client(server.port, token="wrong", reconnect=False)


async def test_node_client_identified_by_its_certificate(node_agent: Any, tmp_path: Path) -> None:
    """Mutual TLS: the certificate's subject names the user (tests/test_auth_tls.py for Python)."""
    from ipc_server import IPCServer
    from tests.test_auth_tls import PKI, USERS

    pki = PKI(tmp_path)
    users_path = tmp_path / "users.toml"
    users_path.write_text(USERS)
    async with IPCServer("127.0.0.1", 0, users_file=str(users_path), tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=pki.ca) as server:
        agents = {}
        for name in ("alice", "mallory"):
            cert, key = pki.clients[name]
            tls = {"caFile": pki.ca, "certFile": cert, "keyFile": key, "servername": "localhost"}
            agents[name] = await node_agent(server.port, app_id="shop", connect=False, tls=tls)
        await agents["alice"].call("connect")
        await agents["alice"].call("subscribe", channel="orders.>")
        error = await agents["alice"].call_error("publish", channel="orders.new", payload=1, ack=True)
        assert error["code"] == "forbidden" and error["message"] == "user 'alice' may not publish on 'orders.new'"
        error = await agents["mallory"].call_error("connect")
        assert error["code"] == "unauthorized" and "credentials required" in error["message"]


async def test_node_reports_the_servers_auth_timeout_not_its_own(start_server: Any, node_agent: Any, tmp_path: Path) -> None:
    """The connect came in time, its token's hash (cost 16) was still being
    checked at the auth timeout (0.05 s): the server's answer says so, and
    Node passes it on (it said "no handshake ... within 5000 ms" after
    some 100 ms), as the Python client does (tests/test_limits_admission.py)."""
    path = tmp_path / "users.toml"
    path.write_text(f'[users.slow]\ntoken_hash = "{hash_token("slow-token", log_n=16)}"\napps = ["shop"]\n')
    server = await start_server("--users", str(path), "--auth-timeout", "0.05")
    agent = await node_agent(server.port, app_id="shop", connect=False, user="slow", token="slow-token", reconnect=False, connectTimeout=5000)
    error = await agent.call_error("connect")
    text = "the credential check did not finish within the auth timeout (0.05 s)"
    assert error["code"] == "not_connected" and error["cause"] == "timeout", error
    assert error["message"] == f"cannot connect to 127.0.0.1:{server.port}: the server refused the connect (timeout): {text}"
