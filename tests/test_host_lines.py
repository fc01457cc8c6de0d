"""Lines about sockets refused at or before their handshake are limited per
peer host (docs/operations.md §4): each such connection wrote its own line,
so a peer reconnecting in a loop with a wrong token, or speaking plaintext
to a TLS port, wrote thousands a second. Now: ``BURST`` lines per host and
reason, then one count per window; a bounded table, forgotten when quiet.
Over real loopback TCP, from 127.0.0.1 and other 127.x.y.z addresses."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from ipc_protocol import encode_frame
from ipc_server import IPCServer, log_limits

from .conftest import WAIT_S, until
from .test_tls import PKI

N = 30
WRONG = encode_frame(json.dumps({
    "message_id": "hello", "app_id": "app", "channel_id": "system", "message_type": "request", "timestamp": 0,
    "payload": {"action": "connect", "connection_id": "x", "protocol": 2, "token": "wrong"},
}).encode())  # fmt: skip


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def _refused(port: int, host: str = "127.0.0.1", data: bytes = WRONG) -> None:
    """One connection from ``host`` sending ``data``, read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    try:
        writer.write(data)
        async with asyncio.timeout(WAIT_S):
            while await reader.read(65536):
                pass
    except OSError:  # reset by the server's close: refused all the same
        pass
    finally:
        writer.close()


async def test_a_peer_reconnecting_with_a_wrong_token_writes_a_few_lines_then_a_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, token="secret") as server:
        server.refusal_lines.window_s = 0.3
        for _ in range(N):
            await _refused(server.port)
        await until(lambda: server.stats.snapshot()["connections_total"] >= N and not server.connections)
        assert len(_lines(caplog, "closed before its handshake completed: unauthorized")) == log_limits.BURST
        await until(lambda: bool(_lines(caplog, "suppressed")))  # the window's count, while the server runs
        (count,) = _lines(caplog, "suppressed")
        assert count.startswith(f"{N - log_limits.BURST} more 'unauthorized' lines from host 127.0.0.1 suppressed in the last "), count
        await until(lambda: not server.refusal_lines.hosts)  # a quiet window: forgotten
        await _refused(server.port)  # and written again
        assert len(_lines(caplog, "closed before its handshake completed: unauthorized")) == log_limits.BURST + 1


async def test_plaintext_on_a_tls_port_is_limited_the_same_way(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = PKI(tmp_path)
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, tls_cert=pki.server[0], tls_key=pki.server[1]) as server:
        for _ in range(N):
            await _refused(server.port)
        await until(lambda: server.stats.snapshot()["tls_handshakes_failed"] == N)
    assert len(_lines(caplog, "TLS handshake with 127.0.0.1:")) == log_limits.BURST
    (count,) = _lines(caplog, "suppressed")  # written at the server's close
    assert count.startswith(f"{N - log_limits.BURST} more 'TLS handshake failed' lines from host 127.0.0.1 suppressed"), count


async def test_many_hosts_share_one_key_past_the_table_bound(caplog: pytest.LogCaptureFixture) -> None:
    """Each host has its own burst, up to the bound; the hosts past it share
    one key; the table never holds more, and empties once they are quiet."""
    caplog.set_level(logging.INFO, "ipc_server")
    hosts = [f"127.0.{i // 200}.{i % 200 + 2}" for i in range(24)]
    async with IPCServer("127.0.0.1", 0, token="secret") as server:
        lines = server.refusal_lines
        lines.max_hosts, lines.window_s = 8, 0.5
        largest = 0
        for _ in range(2):
            for host in hosts:
                await _refused(server.port, host)
                largest = max(largest, len(lines.hosts))
        assert largest == 9  # 8 hosts, and the key the others share
        closed = _lines(caplog, "closed before its handshake completed: unauthorized")
        assert len(closed) == 8 * 2 + log_limits.BURST  # the tracked hosts' 2 each, then the shared key's burst
        await until(lambda: bool(_lines(caplog, "suppressed")))
        (count,) = _lines(caplog, "suppressed")
        assert count.startswith(f"{16 * 2 - log_limits.BURST} more 'unauthorized' lines from hosts past the 8 tracked suppressed"), count
        await until(lambda: not lines.hosts)
