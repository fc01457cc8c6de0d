"""``--token-file`` and ``--users`` given as a pipe (``/dev/stdin``,
``<(...)``): each file is read once at start (README "The server"), so the
server starts; a pipe cannot be read again, so SIGHUP keeps the users it
has (docs/security.md §3.4). And a setting refused only as the server is
built or started exits 2 in one line, as the command's own checks."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, IO

import pytest

from ipc_client import IPCClient
from ipc_server import command
from ipc_server.command import main
from ipc_server.users import hash_token

from .conftest import WAIT_S

ROOT = Path(__file__).resolve().parent.parent


async def _line(stream: IO[str], wanted: str) -> str:
    """The first line of ``stream`` that holds ``wanted`` (bounded: WAIT_S*4)."""

    def read() -> str:
        for line in stream:
            if wanted in line:
                return line
        return ""

    line = await asyncio.wait_for(asyncio.to_thread(read), WAIT_S * 4)
    assert wanted in line, f"no line with {wanted!r}"
    return line


@pytest.fixture
async def piped() -> AsyncIterator[Callable[..., Any]]:
    """``python -m ipc_server ARGS`` with ``text`` on its stdin; its port once it listens."""
    procs: list[subprocess.Popen[str]] = []

    async def start(text: str, *args: str) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen([sys.executable, "-m", "ipc_server", "--port", "0", *args], cwd=ROOT, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        procs.append(proc)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(text)
        proc.stdin.close()
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), WAIT_S * 4)
        if "listening on" not in line:
            proc.kill()
            raise AssertionError(f"did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        return proc, int(line.strip().rsplit(":", 1)[1])

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def _connects(port: int, **credentials: str) -> None:
    client = IPCClient("shop", "127.0.0.1", port, reconnect=False, connect_timeout=WAIT_S, **credentials)
    await client.connect()
    await client.disconnect()


async def test_a_token_file_on_a_pipe_is_read_once_and_the_server_starts(piped: Callable[..., Any]) -> None:
    """It was read by the command's check, then again by the server: empty, a traceback and exit 1."""
    proc, port = await piped("s3cret\n", "--token-file", "/dev/stdin")
    await _connects(port, token="s3cret")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(asyncio.to_thread(proc.wait), WAIT_S * 4) == 0


async def test_a_users_file_on_a_pipe_starts_and_sighup_keeps_its_users(piped: Callable[..., Any]) -> None:
    users = f'[users.alice]\ntoken_hash = "{hash_token("s3cret", log_n=4)}"\napps = ["shop"]\nrequest = [">"]\n'
    proc, port = await piped(users, "--users", "/dev/stdin")
    await _connects(port, user="alice", token="s3cret")
    proc.send_signal(signal.SIGHUP)  # the pipe is read out: nothing to reload
    line = await _line(proc.stderr, "SIGHUP")
    assert "users file not reloaded, the previous users stay: /dev/stdin: no users" in line
    await _connects(port, user="alice", token="s3cret")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(asyncio.to_thread(proc.wait), WAIT_S * 4) == 0


def test_a_setting_refused_as_the_server_starts_exits_2_in_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What only the server checks (a file changed since the command read it, say) was a traceback and exit 1."""

    def refusing(**kwargs: Any) -> Any:
        raise ValueError("tls_cert '/x.pem' must be a PEM certificate chain")

    monkeypatch.setattr(command, "configure_logging", lambda *args: None)
    monkeypatch.setattr(command, "IPCServer", refusing)
    assert main(["--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "ipc_server: invalid configuration: tls_cert '/x.pem' must be a PEM certificate chain\n"
