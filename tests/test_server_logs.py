"""Connections opening and closing logged at INFO with app, peer, id and
reason; ``--log-format json`` writes one object per line
(docs/operations.md §4)."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import sys

import asyncio
from pathlib import Path

import pytest

from ipc_client import IPCClient
from ipc_protocol import Unauthorized, encode_frame, printable
from ipc_server import IPCServer
from ipc_server.logs import JsonFormatter, TextFormatter, configure_logging, peer_text
from ipc_server.users import hash_token

from .conftest import ROOT, WAIT_S, RawPeer, frame

# What a peer that wants forged log lines and a cleared screen sends as its app id and connection id.
FORGED_APP = "shop\n2026-12-07 12:00:00,000 INFO ipc_server.connection: connection admin opened: app admin, peer 10.0.0.1:1, protocol 2"
FORGED_ID = "x\x1b[2J"
# The start of every event of the text format: a line that does not start so continues the one before.
EVENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


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
        assert root.handlers == [handler] and root.level == logging.WARNING and isinstance(handler.target.formatter, JsonFormatter)
        handler.stop()
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
    # One event, one line: the refusal is the socket's close line, with the user and what was wrong (it was a "refusing" line too).
    assert not [r for r in caplog.records if r.getMessage().startswith("refusing ")]
    (refused,) = [r for r in caplog.records if "unauthorized" in r.getMessage()]
    assert refused.getMessage().startswith("socket from 127.0.0.1:") and refused.getMessage().endswith("closed before its handshake completed: unauthorized: invalid user or token (user bob: wrong token)")
    assert refused.__dict__["user"] == "bob" and refused.__dict__["reason"] == "unauthorized: invalid user or token (user bob: wrong token)"


def test_printable_vectors_shared_with_the_node_client() -> None:
    vectors = json.loads((ROOT / "interop-tests" / "spec" / "printable.json").read_text())["vectors"]
    for vector in vectors:
        assert printable(vector["value"]) == vector["expected"], vector
    assert printable(None) == "None" and printable(ValueError("a\nb")) == "a\\nb"


async def _forger(port: int) -> None:
    """A raw client whose app id carries a forged log line and whose
    connection id clears the screen; it connects, then goes."""
    peer = await RawPeer.open(port)
    peer.send(frame("request", "system", {"action": "connect", "connection_id": FORGED_ID, "protocol": 2}, app_id=FORGED_APP, message_id="hello"))
    reply = await peer.recv()
    assert reply.payload["connection_id"] == FORGED_ID, reply  # admitted as it asked
    await peer.close()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_peers_ids_cannot_forge_a_log_line_or_reach_the_terminal(spawn, log_format: str) -> None:
    """Its app id and connection id went into the text lines raw: two
    forged INFO lines and a clear-screen escape on stderr. Escaped in the
    messages now (one event, one line); raw in the JSON fields."""
    srv = await spawn("-m", "ipc_server", "--port", "0", "--log-format", log_format, "--shutdown-grace", "0.5")
    await _forger(srv.port)
    async with asyncio.timeout(WAIT_S):  # the server logs the close after the peer has gone: ask it when that was
        async with IPCClient("probe", "127.0.0.1", srv.port) as client:
            while (await client.system("stats"))["connections"] > 1:
                await asyncio.sleep(0.01)
    lines = await _stopped_log(srv)
    assert not any("\x1b" in line for line in lines), lines
    if log_format == "json":  # one object per line, as before: the fields raw, the message as the text line's
        ours = [r for r in map(json.loads, lines) if r.get("connection_id") == FORGED_ID]
        assert [r["msg"].split(":")[0].rsplit(" ", 1)[-1] for r in ours] == ["opened", "closed"], lines
        assert all(r["app"] == FORGED_APP and f"connection {printable(FORGED_ID)} " in r["msg"] and f"app {printable(FORGED_APP)}, " in r["msg"] for r in ours)
        return
    assert all(EVENT.match(line) for line in lines), lines
    assert not any("admin" in line.replace(printable(FORGED_APP), "") for line in lines), lines
    ours = [line for line in lines if f"connection {printable(FORGED_ID)} " in line]
    assert len(ours) == 2 and all(f"app {printable(FORGED_APP)}, peer 127.0.0.1:" in line for line in ours), lines


def test_the_text_format_writes_one_line_per_event_whoever_logs() -> None:
    """A log call that did not escape a peer's text (an application's, a
    library's) gets one line too; a traceback follows indented, its
    exception's text included, so only an event's first line starts in
    column 0."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    log = logging.getLogger("test.text")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.warning("channel %s refused", "a\n2026-12-07 12:00:00,000 INFO forged\x1b[2J")
        try:
            raise ValueError("bad\n2026-12-07 12:00:00,000 INFO forged too")
        except ValueError:
            log.exception("handler failed")
        log.info("after", stack_info=True)
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    events = [line for line in lines if not line.startswith("  ")]
    assert len(events) == 3 and all(EVENT.match(line) for line in events), lines
    assert events[0].endswith("WARNING test.text: channel a\\n2026-12-07 12:00:00,000 INFO forged\\x1b[2J refused")
    assert lines[2] == "  Traceback (most recent call last):" and lines[lines.index("  ValueError: bad") + 1] == "  2026-12-07 12:00:00,000 INFO forged too"
    assert lines[-1].startswith("    ") and "\x1b" not in stream.getvalue()


async def test_an_embedded_servers_and_the_clients_messages_escape_a_peers_text(caplog: pytest.LogCaptureFixture) -> None:
    """Embedded, the application's formatter writes the lines: the
    messages themselves are escaped (the server's, the client's debug lines
    of what it receives); the records' fields keep the raw values."""
    caplog.set_level(logging.DEBUG, "ipc_server")
    caplog.set_level(logging.DEBUG, "ipc_client.tracing")
    channel = "feed.a\n2026-12-07 12:00:00,000 INFO forged\x1b[2J"
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2) as server:
        await _forger(server.port)
        async with IPCClient("shop", "127.0.0.1", server.port, reconnect=False) as sub, IPCClient("shop", "127.0.0.1", server.port, reconnect=False) as pub:
            got: asyncio.Queue[str] = asyncio.Queue()
            await sub.subscribe("feed.>", lambda msg: got.put_nowait(msg.channel_id))
            await pub.publish(channel, 1)
            assert await asyncio.wait_for(got.get(), WAIT_S) == channel
        async with asyncio.timeout(WAIT_S):
            while not any(r.__dict__.get("connection_id") == FORGED_ID and " closed: " in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
    assert all(r.getMessage().isprintable() for r in caplog.records), [r.getMessage() for r in caplog.records if not r.getMessage().isprintable()]
    ours = [r for r in caplog.records if r.__dict__.get("connection_id") == FORGED_ID]
    assert len(ours) == 2 and all(r.__dict__["app"] == FORGED_APP and printable(FORGED_APP) in r.getMessage() for r in ours)
    assert any(r.getMessage().startswith(f"deliver {printable(channel)} trace=") for r in caplog.records if r.name == "ipc_client.tracing")


def test_json_lines_escape_c1_line_separators_and_bidi_controls() -> None:
    """ensure_ascii=False wrote them raw in a peer's fields: a splitter on
    Unicode line boundaries cut a line in three, a terminal took U+009B as
    CSI. Escaped now, and decoded unchanged."""
    evil = "shop\u009b2J\u0085\u2028\u2029\u202e\u200f\u2066\u061cx"
    record = logging.LogRecord("ipc_server.connection", logging.INFO, __file__, 1, "opened", None, None)
    record.__dict__.update(app=evil)
    line = JsonFormatter().format(record)
    assert line.isascii() and len(line.splitlines()) == 1
    assert json.loads(line)["app"] == evil


async def test_a_failing_notification_handler_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """It was two: the handler's INFO "raised" line, then the WARNING."""
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0) as server:

        @server.handler("boom")
        async def boom(msg):  # type: ignore[no-untyped-def]
            raise ValueError("no")

        async with IPCClient("shop", "127.0.0.1", server.port, reconnect=False) as client:
            await client.notify("boom", 1)
            async with asyncio.timeout(WAIT_S):
                while not server.stats.snapshot()["errors"].get("handler_error"):
                    await asyncio.sleep(0.01)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "'boom'" in r.getMessage()]
    assert lines == [("WARNING", "notification handler for 'boom' failed: ValueError: no")], lines
