"""``python -m ipc_server stats|connections|channels|services`` against a
real server process, as text and as ``--json``; the ``connections`` system
action, and its refusal to a user without ``monitor`` (docs/operations.md §3)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any
import sys
from pathlib import Path

import pytest

from ipc_client import IPCClient
from ipc_protocol import Forbidden, IPCError
from ipc_server import IPCServer
from ipc_server.cli_view import table
from ipc_server.users import hash_token

from .conftest import ROOT, WAIT_S, RawPeer


async def view(*args: str) -> tuple[int, str, str]:
    """Run ``python -m ipc_server ARGS``; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ipc_server", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_views_print_tables_and_json_of_a_running_server(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    port = str(srv.port)
    async with IPCClient("shop", "127.0.0.1", srv.port) as worker, IPCClient("shop", "127.0.0.1", srv.port) as caller, \
            IPCClient("billing", "127.0.0.1", srv.port) as other:  # fmt: skip
        await worker.serve("orders.get", lambda m: m.payload)
        await caller.subscribe("orders.>", lambda m: None)
        await other.subscribe("invoices.new", lambda m: None)
        for i in range(3):
            await caller.request("orders.get", i)
        legacy = await RawPeer.open(srv.port)
        await legacy.handshake("shop", protocol=None)

        code, out, err = await view("connections", "--port", port)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:6] == ["ID", "APP", "PEER", "PROTO", "UPTIME", "MSGS"]
        rows = [line.split() for line in lines[1:-2]]
        assert sorted(r[1] for r in rows) == ["app", "billing", "shop", "shop", "shop"]  # "app": the view's own
        assert any(r[3] == "v1" for r in rows) and lines[-1] == "5 of 5 connections"


        code, out, _ = await view("connections", "--port", port, "--json")
        answer = json.loads(out)
        # The previous view's connection may still be closing: count the others.
        assert sorted(r["app_id"] for r in answer["connections"] if r["app_id"] != "app") == ["billing", "shop", "shop", "shop"]
        mine = {r["connection_id"]: r for r in answer["connections"]}
        worker_row = next(r for r in mine.values() if r["registrations"] == 1)
        assert worker_row["app_id"] == "shop" and worker_row["protocol"] == 2 and worker_row["messages_in"] >= 5
        assert worker_row["peer"].startswith("127.0.0.1:") and worker_row["uptime_s"] >= 0 and worker_row["outbound_bytes"] == 0
        caller_row = next(r for r in mine.values() if r["subscriptions"] == 1 and r["app_id"] == "shop")
        assert caller_row["messages_out"] >= 5 and caller_row["pending_requests"] == 0

        code, out, _ = await view("stats", "--port", port)
        assert code == 0 and out.startswith("FIGURE")
        figures = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines()[1:])
        assert figures["requests"].strip() == "3" and int(figures["connections"]) >= 5
        assert "MESSAGE TYPE" in out
        stats = json.loads((await view("stats", "--port", port, "--json"))[1])
        assert stats["requests"] == 3 and stats["messages_by_type"]["in"]["request"] >= 3

        code, out, _ = await view("channels", "--port", port, "--app", "shop")
        assert out.split() == ["CHANNEL", "SUBSCRIBERS", "orders.>", "1"]
        code, out, _ = await view("services", "--port", port, "--app", "shop", "--json")
        assert json.loads(out) == {"services": {"orders.get": 1}}
        await legacy.close()


async def test_a_server_that_is_not_there_is_an_exit_1_with_the_reason() -> None:
    code, out, err = await view("stats", "--port", "1", "--timeout", "2")
    assert code == 1 and out == "" and "127.0.0.1:1" in err


def test_table_pads_columns_and_right_aligns_numbers() -> None:
    assert table(("NAME", "N"), [("a", 1), ("long-name", 100)]).splitlines() == ["NAME         N", "a            1", "long-name  100"]


USERS = """
[users.ops]
token_hash = "{ops}"
apps = ["*"]
monitor = true

[users.app]
token_hash = "{app}"
apps = ["shop"]
publish = [">"]
subscribe = [">"]
request = [">"]
"""


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(USERS.format(ops=hash_token("ops-token", log_n=4), app=hash_token("app-token", log_n=4)))
    for name in ("ops", "app"):
        (tmp_path / f"{name}.token").write_text(f"{name}-token\n")
    return path


async def test_connections_needs_the_monitor_permission_with_users(spawn, users_file: Path) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--users", str(users_file))
    port, folder = str(srv.port), users_file.parent
    async with IPCClient("shop", "127.0.0.1", srv.port, user="app", token="app-token") as app:
        with pytest.raises(Forbidden) as info:
            await app.system("connections")
        assert info.value.details == {"operation": "request", "channel": "system", "user": "app", "action": "connections"}
        assert await app.request("system", {"action": "ping"}) == {"status": "pong"}  # the connection stays open

        code, out, err = await view("connections", "--port", port, "--app", "shop", "--user", "app", "--token-file", str(folder / "app.token"))
        assert code == 1 and "forbidden" in err and "monitor" in err
        code, out, err = await view("connections", "--port", port, "--user", "ops", "--token-file", str(folder / "ops.token"), "--json")
        assert code == 0, err
        rows = json.loads(out)["connections"]
        assert sorted((r["app_id"], r["user"]) for r in rows) == [("app", "ops"), ("shop", "app")]


async def test_connections_pages_with_offset_and_limit_and_refuses_bad_ones() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        clients = [IPCClient(f"app{i}", "127.0.0.1", server.port) for i in range(3)]
        try:
            for c in clients:
                await c.connect()
            page = await clients[0].request("system", {"action": "connections", "offset": 1, "limit": 1}, timeout=WAIT_S)
            assert page["total"] == 3 and [r["app_id"] for r in page["connections"]] == ["app1"]
            with pytest.raises(IPCError) as info:
                await clients[0].request("system", {"action": "connections", "limit": -1}, timeout=WAIT_S)
            assert info.value.code == "bad_message" and "limit" in str(info.value)
        finally:
            for c in clients:
                await c.disconnect()



HOSTILE = ["evil\nFAKE-ID  innocent  127.0.0.1:1  v2", "esc\x1b[31mRED\x1b[0m", "bidi\u202eflipped"]


def test_table_escapes_characters_that_are_not_printable() -> None:
    lines = table(("APP", "N"), [(app, 1) for app in HOSTILE]).splitlines()
    assert len(lines) == 1 + len(HOSTILE) and all(line.isprintable() for line in lines)
    assert [line.split()[0] for line in lines[1:]] == ["evil\\nFAKE-ID", "esc\\x1b[31mRED\\x1b[0m", "bidi\\u202eflipped"]


async def test_client_chosen_names_reach_the_terminal_escaped(spawn) -> None:
    """An app id may hold any character: one row per connection, and no
    escape sequence for the operator's terminal."""
    srv = await spawn("-m", "ipc_server", "--port", "0")
    clients = [IPCClient(app, "127.0.0.1", srv.port) for app in HOSTILE]
    try:
        for c in clients:
            await c.connect()
        code, out, err = await view("connections", "--port", str(srv.port))
        assert code == 0, err
        lines = out.splitlines()
        assert all(line.isprintable() for line in lines)
        assert lines[-1] == "4 of 4 connections" and len(lines) == 1 + 4 + 2  # header, rows, blank line, footer
        assert sorted(line.split()[1] for line in lines[1:5]) == ["app", "bidi\\u202eflipped", "esc\\x1b[31mRED\\x1b[0m", "evil\\nFAKE-ID"]
    finally:
        for c in clients:
            await c.disconnect()


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http", "8_888", "+8888", " 8888"])  # decimal digits only, as ipc-bridge-types
async def test_a_port_out_of_range_is_a_usage_error(port: str) -> None:
    code, out, err = await view("stats", "--port", port)
    assert code == 2 and out == "" and "argument --port: expected a port number 1-65535" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "inf"), ("--timeout", "nan"), ("--timeout", "soon"), ("--timeout", "1_000"), ("--timeout", " 5"), ("--limit", "-1"), ("--limit", "1.5")],
)
async def test_a_bad_timeout_or_limit_is_a_usage_error(flag: str, value: str) -> None:
    """Refused before anything connects (docs/operations.md §3), not an exit 1
    with a reason that blames the server."""
    code, out, err = await view("connections", "--port", "1", flag, value)
    assert code == 2 and out == "" and f"argument {flag}: expected" in err and repr(value) in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--host", ""], "argument --host: expected a host name or address, got ''"),
        (["--app", ""], "argument --app: expected 1 to 256 characters, got 0"),
        (["--app", "a" * 257], "argument --app: expected 1 to 256 characters, got 257"),
        (["--user", ""], "argument --user: expected 1 to 256 characters, got 0"),
        (["--tls-server-hostname", ""], "argument --tls-server-hostname: expected a host name or address"),
        (["--token-file", "{dir}/missing.token"], "argument --token-file: no such file: "),
        (["--token-file", "{dir}"], "argument --token-file: not a file: "),
        (["--token-file", "{dir}/empty.token"], "argument --token-file: token_file "),
        (["--tls-ca", "{dir}/missing.pem"], "argument --tls-ca: no such file: "),
        (["--tls-cert", "{dir}/missing.pem"], "argument --tls-cert: no such file: "),
        (["--tls-key", "{dir}/empty.token"], "argument --tls-key: needs --tls-cert"),
        (["--tls-ca", "{dir}/empty.token"], "tls_ca "),  # not PEM: the client's check, still before connecting
    ],
)
async def test_a_bad_name_or_file_is_a_usage_error_naming_the_flag(tmp_path: Path, args: list[str], said: str) -> None:
    """Exit 2 before anything connects (port 1 would be an exit 1), as for
    a bad port or timeout (docs/operations.md §3)."""
    (tmp_path / "empty.token").write_text("")
    code, out, err = await view("stats", "--port", "1", *(arg.format(dir=tmp_path) for arg in args))
    assert code == 2 and out == "" and said in err and "Traceback" not in err, err


def test_a_page_of_a_larger_channels_table_says_how_much_it_shows() -> None:
    from ipc_server.cli_view import render

    assert render("channels", {"channels": {"a": 1}}).splitlines()[-1] != "1 of 3 channels"
    assert render("channels", {"channels": {"a": 1}, "total": 3, "offset": 0, "limit": 1}).splitlines()[-1] == "1 of 3 channels (the next: --offset 1)"
    page = render("channels", {"channels": {"z.last": 1, "a.first": 2}, "total": 3, "offset": 1, "limit": 2}).splitlines()
    assert page[-1] == "2-3 of 3 channels" and [line.split()[0] for line in page[1:3]] == ["z.last", "a.first"]  # the server's order: pages follow on


def test_every_page_of_channels_is_reachable() -> None:
    """More than a page (1,024) of channels: --offset and --limit reach the rest, in the table's order."""
    import asyncio as aio

    from ipc_client import IPCClient
    from ipc_server import IPCServer
    from ipc_server.cli_view import main as view

    async def scenario() -> list[str]:
        async with IPCServer("127.0.0.1", 0) as server:
            async with IPCClient("shop", "127.0.0.1", server.port) as client:
                for i in range(1030):
                    await client.subscribe(f"ch.{i:04d}", lambda msg: None)
                outs = []
                for flags in ([], ["--offset", "1024"], ["--offset", "1029", "--limit", "1"]):
                    out = io.StringIO()
                    code = await aio.to_thread(view, ["channels", "--port", str(server.port), "--app", "shop", *flags], out, io.StringIO())
                    assert code == 0
                    outs.append(out.getvalue())
                return outs

    first, rest, last = aio.run(scenario())
    assert first.splitlines()[-1] == "1024 of 1030 channels (the next: --offset 1024)"
    assert rest.splitlines()[-1] == "1025-1030 of 1030 channels" and "ch.1029" in rest and "ch.1023" not in rest
    assert last.splitlines()[-1] == "1030-1030 of 1030 channels" and "ch.1029" in last


def test_every_page_of_services_is_reachable() -> None:
    """More than a page of responders: the services view takes --offset and --limit as channels does."""
    import asyncio as aio

    from ipc_client import IPCClient
    from ipc_server import IPCServer
    from ipc_server.cli_view import main as view

    async def scenario() -> list[str]:
        async with IPCServer("127.0.0.1", 0) as server:
            server.add_handler("calc.*", lambda msg: None)  # in-process: listed after the responders
            async with IPCClient("shop", "127.0.0.1", server.port) as client:
                for i in range(1029):
                    client.serve(f"svc.{i:04d}", lambda msg: None)
                await client.serve("svc.last", lambda msg: None)  # registered after the others: all acked
                outs = []
                for flags in ([], ["--offset", "1024"], ["--offset", "1030", "--limit", "1"]):
                    out = io.StringIO()
                    code = await aio.to_thread(view, ["services", "--port", str(server.port), "--app", "shop", *flags], out, io.StringIO())
                    assert code == 0
                    outs.append(out.getvalue())
                return outs

    first, rest, last = aio.run(scenario())
    assert first.splitlines()[-1] == "1024 of 1031 services (the next: --offset 1024)"
    assert rest.splitlines()[-1] == "1025-1031 of 1031 services" and "svc.last" in rest and "svc.1023" not in rest
    assert last.splitlines()[-1] == "1031-1031 of 1031 services" and "calc.*" in last and "in-process" in last
