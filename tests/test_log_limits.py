"""The lines a peer's refused frames make are limited per connection and
reason, and a peer's values in a line are cut (docs/operations.md §4): one
connection wrote a line per refused frame, 30,000 a second, and a
1,000,000-character message id made a 6 MB line."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import types
from pathlib import Path

import pytest

from ipc_client import IPCClient
from ipc_protocol import IPCError, clipped
from ipc_server import IPCServer, log_limits
from ipc_server.logs import JsonFormatter
from ipc_server.users import hash_token

from .conftest import WAIT_S, RawPeer, frame, until

N = 200


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _errors(server: IPCServer) -> int:
    return sum(server.stats.snapshot()["errors"].values())


async def _refused_notifications(server: IPCServer, peer: RawPeer, n: int, message_id: str = "n") -> None:
    """``n`` notifications of an unknown system action: refused, unanswered; counted once read."""
    before = _errors(server)
    for i in range(n):
        peer.send(frame("notification", "system", {"action": "nope"}, app_id="shop", message_id=f"{message_id}{i}"))
    await until(lambda: _errors(server) - before == n)  # the counters stay exact


async def test_refused_notifications_log_a_few_lines_then_a_count_at_the_close(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake("shop")
        await _refused_notifications(server, peer, N)
        dropped = _lines(caplog, " from raw dropped: ")
        assert len(dropped) == log_limits.BURST, len(dropped)
        await peer.close()
        await until(lambda: bool(_lines(caplog, "suppressed")))
    summary = _lines(caplog, "suppressed")
    assert len(summary) == 1 and summary[0].startswith(f"{N - log_limits.BURST} more 'notification dropped: no_responders' lines from raw suppressed in the last "), summary


async def test_a_count_every_window_while_the_flood_goes_on(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_limits, "WINDOW_S", 0.2)
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake("shop")
        await _refused_notifications(server, peer, 50)
        await until(lambda: bool(_lines(caplog, "suppressed")))  # the connection is still open
        assert _lines(caplog, "suppressed")[0].startswith("45 more 'notification dropped: no_responders' lines from raw suppressed")
        await until(lambda: not server.connections or all(c.log_limits is None or not c.log_limits.keys for c in server.connections))
        await _refused_notifications(server, peer, 2)  # after a quiet window: written again
        assert len(_lines(caplog, " from raw dropped: ")) == log_limits.BURST + 2
        await peer.close()
    assert len(_lines(caplog, "suppressed")) == 1


async def test_forbidden_operations_are_limited_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'[users.bob]\ntoken_hash = "{hash_token("s3cret", log_n=4)}"\napps = ["shop"]\npublish = ["shop.*"]\n')
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, users_file=str(users)) as server:
        peer = await RawPeer.open(server.port)
        peer.send(frame("request", "system", {"action": "connect", "connection_id": "raw", "protocol": 2, "user": "bob", "token": "s3cret"}, app_id="shop", message_id="hello"))
        assert (await peer.recv()).payload["status"] == "connected"
        for i in range(N):
            peer.send(frame("publish", "admin.x", {"i": i}, app_id="shop", message_id=f"p{i}"))
        await until(lambda: server.stats.snapshot()["errors"].get("forbidden", 0) == N)
        assert len(_lines(caplog, "may not publish")) == log_limits.BURST
        await peer.close()
        await until(lambda: bool(_lines(caplog, "suppressed")))
    assert _lines(caplog, "suppressed")[0].startswith(f"{N - log_limits.BURST} more 'forbidden publish' lines from raw suppressed")


async def test_a_long_message_id_is_cut_in_its_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake("shop")
        await _refused_notifications(server, peer, 1, message_id="\u202e" * 100_000)
        await peer.close()
    (line,) = _lines(caplog, " from raw dropped: ")
    assert len(line) < 1000 and "\\u202e" * 20 in line and line.count("\\u202e") == 21 and "\\u202e\u2026(100001 chars) on 'system'" in line, line[:300]


def test_clipped_cuts_after_escaping_and_says_how_long_it_was() -> None:
    assert clipped("shop") == "shop"
    assert clipped("a\nb") == "a\\nb"
    assert clipped("x" * 128) == "x" * 128
    assert clipped("x" * 129) == "x" * 128 + "\u2026(129 chars)"
    assert clipped("\x01" * 40) == ("\\x01" * 32) + "\u2026(40 chars)"  # 160 characters once escaped
    assert clipped("ab" + "\u202e" * 40) == "ab" + "\\u202e" * 21 + "\u2026(42 chars)"  # never half an escape


def test_json_fields_of_a_peer_are_cut_too() -> None:
    record = logging.LogRecord("ipc_server.connection", logging.INFO, __file__, 1, "opened", None, None)
    record.__dict__.update(app="a" * 1000, connection_id="c", reason="r" * 5000)
    out = json.loads(JsonFormatter().format(record))
    assert out["app"] == "a" * 128 + "\u2026(1000 chars)" and out["connection_id"] == "c"
    assert out["reason"] == "r" * 512 + "\u2026(5000 chars)"


async def test_a_handler_that_raises_on_every_request_is_limited_too(caplog: pytest.LogCaptureFixture) -> None:
    """An in-process handler a client can make raise: one line a request before."""
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0) as server:

        @server.handler("boom")
        async def boom(msg):  # type: ignore[no-untyped-def]
            raise ValueError("no")

        async with IPCClient("shop", "127.0.0.1", server.port, reconnect=False) as client:
            for i in range(20):
                with pytest.raises(IPCError):
                    await client.request("boom", i, timeout=WAIT_S)
            assert server.stats.snapshot()["errors"]["handler_error"] == 20
            assert len(_lines(caplog, "handler for 'boom' raised")) == log_limits.BURST
        await until(lambda: bool(_lines(caplog, "suppressed")))
    assert _lines(caplog, "suppressed")[0].startswith("15 more 'handler raised' lines from ")


def _after_close(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines written after the (one) connection close line."""
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("ipc_server")]
    closes = [i for i, m in enumerate(messages) if " closed: app shop" in m]
    assert len(closes) == 1, messages
    return messages[closes[0] + 1 :]


async def test_handlers_cancelled_by_their_requesters_close_log_nothing_after_the_close_line(caplog: pytest.LogCaptureFixture) -> None:
    """Before, each notification handler the close cancelled logged WARNING
    "notification handler for 'wait' failed: HandlerCancelled" (and a
    request's INFO "handler ... raised") after the close line: the
    requester leaving is no failure."""
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0) as server:
        started = 0
        all_started = asyncio.Event()

        @server.handler("wait")
        async def wait(msg):  # type: ignore[no-untyped-def]
            nonlocal started
            started += 1
            if started == 4:
                all_started.set()
            await asyncio.Event().wait()

        async with IPCClient("shop", "127.0.0.1", server.port, reconnect=False) as client:
            for i in range(3):
                await client.notify("wait", i)
            pending = asyncio.ensure_future(client.request("wait", 3, timeout=WAIT_S))
            await asyncio.wait_for(all_started.wait(), WAIT_S)
        await asyncio.gather(pending, return_exceptions=True)
        await until(lambda: server.stats.snapshot()["errors"].get("handler_error", 0) == 4)  # every cancellation has run, counted
        assert _after_close(caplog) == [], _after_close(caplog)
    assert not _lines(caplog, "failed") and not _lines(caplog, "raised")


async def test_a_handler_failing_after_the_close_makes_no_line_and_no_new_limits(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, sync handlers that raised after their connection closed wrote
    5 lines after its close line and made it new limits, whose timer wrote
    a summary a window later and held the closed connection."""
    monkeypatch.setattr(log_limits, "WINDOW_S", 0.05)
    caplog.set_level(logging.INFO, "ipc_server")
    gate = threading.Event()
    async with IPCServer("127.0.0.1", 0) as server:
        started = 0

        @server.handler("slow")
        def slow(msg):  # type: ignore[no-untyped-def]  # in a thread: the close cannot stop it
            nonlocal started
            started += 1
            gate.wait(WAIT_S)
            raise ValueError("late")

        async with IPCClient("shop", "127.0.0.1", server.port, reconnect=False) as client:
            (conn,) = server.connections
            for i in range(12):
                await client.notify("slow", i)
            await until(lambda: started == 12)
        await until(lambda: bool(_lines(caplog, " closed: app shop")))
        gate.set()
        await until(lambda: server.stats.snapshot()["errors"].get("handler_error", 0) == 12)  # counted, each
        assert conn.log_limits is not None and conn.log_limits.closed and not conn.log_limits.keys
        assert _after_close(caplog) == [], _after_close(caplog)


async def test_a_quiet_window_after_the_burst_brings_it_back(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the burst came back only after a suppressed line had started
    a window: 5 refusals, any time of quiet, and the 6th was suppressed.
    The limiter's clock is injected: 11 s pass between the 5th and 6th."""
    now = [1000.0]
    monkeypatch.setattr(log_limits, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake("shop")
        await _refused_notifications(server, peer, log_limits.BURST)
        now[0] += log_limits.WINDOW_S + 1  # then quiet for longer than a window
        await _refused_notifications(server, peer, log_limits.BURST, message_id="late")
        assert len(_lines(caplog, " from raw dropped: ")) == 2 * log_limits.BURST
        await _refused_notifications(server, peer, 1, message_id="spent")  # within the window again
        assert len(_lines(caplog, " from raw dropped: ")) == 2 * log_limits.BURST
        await peer.close()
        await until(lambda: bool(_lines(caplog, "suppressed")))
    assert _lines(caplog, "suppressed")[0].startswith("1 more 'notification dropped: no_responders' lines from raw")


async def test_a_quiet_window_after_a_count_brings_the_burst_back_too(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quiet is counted from the latest refusal, not from the latest count
    line: 6 refusals (5 lines, 1 counted), then a window of quiet, and the
    7th is written, the count of the one before it first. Before, the count
    line's window held it back too (up to 20 s after the refusal before)."""
    now = [1000.0]
    monkeypatch.setattr(log_limits, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake("shop")
        await _refused_notifications(server, peer, log_limits.BURST + 1)
        conn = next(c for c in server.connections if c.app_id == "shop")
        key = conn.log_limits.keys["notification dropped: no_responders"]
        assert key.suppressed == 1 and key.timer is not None  # its count is due in a window
        now[0] += log_limits.WINDOW_S + 1
        await _refused_notifications(server, peer, 1, message_id="late")
        assert len(_lines(caplog, " from raw dropped: ")) == log_limits.BURST + 1
        assert _lines(caplog, "suppressed") == [_lines(caplog, "suppressed")[0]] and _lines(caplog, "suppressed")[0].startswith("1 more ")
        assert key.suppressed == 0 and key.timer is None
        await peer.close()


def test_a_json_line_fits_one_atomic_pipe_write() -> None:
    """The workers of --workers share one stderr: a line over PIPE_BUF
    (4096 bytes) could be cut by another worker's. Fields of 250 bidi
    controls, each escaped to 6 bytes, made a close line of 4,118 bytes."""
    hostile = "\u202e" * 250
    record = logging.LogRecord("ipc_server.connection", logging.INFO, __file__, 0, "connection %s closed: app %s: %s", (hostile, hostile, hostile), None)
    for name in ("app", "connection_id", "client", "user", "peer"):
        setattr(record, name, hostile)
    record.reason = hostile * 3
    line = JsonFormatter().format(record)
    assert len(line.encode()) + 1 <= 4096, len(line.encode())
    decoded = json.loads(line)
    assert decoded["app"].startswith("\u202e") and decoded["app"].endswith("(250 chars)")
    ordinary = logging.LogRecord("ipc_server", logging.INFO, __file__, 0, "short %s", ("x",), None)
    assert json.loads(JsonFormatter().format(ordinary))["msg"] == "short x"  # a short line as it was
