"""Connections opening and closing logged at INFO with app, peer, id and
reason; ``--log-format json`` writes one object per line
(docs/operations.md §4)."""

from __future__ import annotations

import io
import json
import logging
import signal
import sys

import asyncio
from pathlib import Path

import pytest

from ipc_client import IPCClient
from ipc_protocol import Unauthorized, encode_frame
from ipc_server import IPCServer
from ipc_server.logs import JsonFormatter, configure_logging, peer_text
from ipc_server.users import hash_token

from .conftest import RawPeer


async def _stopped_log(srv) -> list[str]:  # type: ignore[no-untyped-def]
    srv.signal(signal.SIGTERM)
    assert await srv.wait() == 0
    return srv.proc.stderr.read().splitlines()  # type: ignore[no-any-return]


async def test_json_lines_carry_the_connection_fields(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--log-format", "json", "--shutdown-grace", "0.5")
    async with IPCClient("shop", "127.0.0.1", srv.port) as client:
        client_id = client.get_connection_info()["connection_id"]
    bad = await RawPeer.open(srv.port)
    await bad.handshake("billing")
    bad.send_raw(encode_frame(b"not json"))
    await bad.closed()
    stays = IPCClient("stock", "127.0.0.1", srv.port, reconnect=False)
    await stays.connect()
    lines = await _stopped_log(srv)
    await stays.disconnect()
    records = [json.loads(line) for line in lines]  # every line is one object
    assert all({"ts", "level", "logger", "msg"} <= r.keys() and r["ts"].endswith("Z") for r in records)
    by_event = {(r.get("app"), r["msg"].split(":")[0].rsplit(" ", 1)[-1]): r for r in records if r["logger"] == "ipc_server.connection"}
    opened = by_event[("shop", "opened")]
    assert opened["level"] == "INFO" and opened["peer"].startswith("127.0.0.1:") and opened["connection_id"] == client_id
    assert opened["protocol"] == 2 and opened["client"].startswith("ipc-bridge-python")
    closed = by_event[("shop", "closed")]
    assert closed["level"] == "INFO" and closed["reason"] == "closed by the peer" and closed["connection_id"] == client_id
    violated = by_event[("billing", "closed")]
    assert violated["reason"].startswith("bad_frame: ") and violated["peer"].startswith("127.0.0.1:") and violated["connection_id"].startswith("raw")
    assert by_event[("stock", "closed")]["reason"] == "the server is shutting down"


async def test_the_text_format_says_the_same_in_words(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    async with IPCClient("shop", "127.0.0.1", srv.port) as client:
        client_id = client.get_connection_info()["connection_id"]
    text = "\n".join(await _stopped_log(srv))
    assert f"INFO ipc_server.connection: connection {client_id} opened: app shop, peer 127.0.0.1:" in text
    assert f"INFO ipc_server.connection: connection {client_id} closed: app shop, peer 127.0.0.1:" in text
    assert text.count("closed by the peer") == 1


def test_the_json_formatter_writes_exceptions_and_only_the_fields_given() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("plain %s", "line")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"app": "shop", "reason": "a \"quoted\"\nreason"})
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first.keys() == {"ts", "level", "logger", "msg"} and first["msg"] == "plain line" and first["level"] == "WARNING"
    assert second["app"] == "shop" and second["reason"] == 'a "quoted"\nreason' and "ValueError: boom" in second["exc"]


def test_configure_logging_replaces_the_root_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        handler = configure_logging("warning", "json", stream=sys.stderr)
        assert root.handlers == [handler] and root.level == logging.WARNING and isinstance(handler.formatter, JsonFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_peer_text() -> None:
    assert peer_text(("127.0.0.1", 5)) == "127.0.0.1:5"
    assert peer_text(("::1", 5, 0, 0)) == "[::1]:5"
    assert peer_text(None) == "-"


async def test_a_users_connection_is_logged_with_its_user_opening_and_closing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The "closed" line lacked the ``user`` its "opened" line had; a user
    found by auth (anonymous here, a certificate's) is named on both; a
    refused peer is ``host:port``, as on every other line (it was a tuple)."""
    users = tmp_path / "users.toml"
    users.write_text(f'[users.bob]\ntoken_hash = "{hash_token("s3cret", log_n=4)}"\napps = ["shop"]\n[users.anonymous]\napps = ["public"]\n')
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, users_file=str(users), shutdown_grace_s=0.2) as server:
        async with IPCClient("shop", "127.0.0.1", server.port, user="bob", token="s3cret", reconnect=False):
            pass
        async with IPCClient("public", "127.0.0.1", server.port, reconnect=False):
            pass
        with pytest.raises(Unauthorized):
            await IPCClient("shop", "127.0.0.1", server.port, user="bob", token="wrong", reconnect=False).connect()
        async with asyncio.timeout(5):
            while len([r for r in caplog.records if " closed: " in r.getMessage()]) < 2:
                await asyncio.sleep(0.01)
    lines = {(r.__dict__.get("app"), r.getMessage().split(":")[0].rsplit(" ", 1)[-1]): r for r in caplog.records if r.name == "ipc_server.connection"}
    for app, user in (("shop", "bob"), ("public", "anonymous")):
        for event in ("opened", "closed"):
            assert lines[(app, event)].__dict__["user"] == user, (app, event)
            assert json.loads(JsonFormatter().format(lines[(app, event)]))["user"] == user
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refusing ")]
    assert refusals and all(m.startswith("refusing 127.0.0.1:") and "(user bob): invalid user or token" in m for m in refusals), refusals
