"""A TOML file nested deeper than Python's parser recurses (valid TOML,
``x = [[[...]]]`` 600 deep) is a configuration error like any other: exit
2 and one ``invalid configuration`` line at start, the documented ERROR
line on SIGHUP with the old users kept, a ``ValueError`` from an embedded
``reload_users()`` (docs/security.md §3.4, README "Server settings"). It
was a ``RecursionError``: a 3,000-line traceback and exit 1, and on
SIGHUP the false "SIGHUP ignored: this server has neither a users file
nor TLS" (nothing at all with TLS)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer
from ipc_server.config import load_config
from ipc_server.users import UsersError, load_users

from .nats_support import NodeProcess, until
from .test_tls import PKI, pki  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 10.0
DEEP = "[" * 600 + "]" * 600
ANYONE = '[users.anonymous]\napps = ["shop"]\npublish = [">"]\nrequest = [">"]\n'
TOO_DEEP = "nested too deeply"


def test_load_users_refuses_a_deep_file_as_a_users_error(tmp_path: Path) -> None:
    for text in (f"x = {DEEP}\n", f"{ANYONE}publish_too = {DEEP}\n", "x = " + "{a=" * 600 + "1" + "}" * 600 + "\n"):
        path = tmp_path / "users.toml"
        path.write_text(text)
        with pytest.raises(UsersError, match=f"{path}: cannot be read: .*{TOO_DEEP}"):
            load_users(str(path))


def test_load_config_refuses_a_deep_file_as_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f"port = 0\nx = {DEEP}\n")
    with pytest.raises(ValueError, match=f"{path}: cannot read the configuration file: .*{TOO_DEEP}"):
        load_config(path=path, env={})


@pytest.mark.parametrize("flag", ["--users", "--config"])
def test_the_command_exits_2_in_one_line(tmp_path: Path, flag: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text((ANYONE if flag == "--users" else "port = 0\n") + f"x = {DEEP}\n")
    proc = subprocess.run([sys.executable, "-m", "ipc_server", "--port", "0", flag, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S * 3)
    assert proc.returncode == 2, proc.stderr[-500:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ipc_server: invalid configuration: {path}: ") and TOO_DEEP in lines[0], lines[:3]


async def test_an_embedded_reload_raises_value_error_and_keeps_the_users(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(ANYONE)
    async with IPCServer("127.0.0.1", 0, users_file=str(path), shutdown_grace_s=0.2) as server:
        path.write_text(f"{ANYONE}x = {DEEP}\n")
        with pytest.raises(ValueError, match=TOO_DEEP):
            await server.reload_users()
        async with IPCClient("shop", "127.0.0.1", server.port, reconnect=False, connect_timeout=WAIT_S) as client:
            assert await client.publish("x", 1, ack=True) == 0  # the old users still hold


async def _sighup_logs(server: NodeProcess, what: str) -> str:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    await until(lambda: what in server.stderr(), f"the log line {what!r}")
    return server.stderr()


async def test_sighup_with_a_deep_users_file_logs_the_error_and_keeps_the_users(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(ANYONE)
    argv = [sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "INFO", "--users", str(path)]
    server = await NodeProcess(argv).start()
    try:
        path.write_text(f"{ANYONE}x = {DEEP}\n")
        log = await _sighup_logs(server, "SIGHUP: users file not reloaded, the previous users stay:")
        assert TOO_DEEP in log and "SIGHUP ignored" not in log and "Traceback" not in log
        async with IPCClient("shop", "127.0.0.1", server.port, reconnect=False, connect_timeout=WAIT_S) as client:
            assert await client.publish("x", 1, ack=True) == 0
        assert server.proc is not None and server.proc.returncode is None
    finally:
        await server.stop()


async def test_sighup_with_tls_and_a_deep_users_file_reloads_tls_and_logs_the_users_error(tmp_path: Path, pki: PKI) -> None:  # noqa: F811
    """With TLS the users file's failure went unlogged: only the TLS reload was."""
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki.server[0], cert)
    shutil.copy(pki.server[1], key)
    path = tmp_path / "users.toml"
    path.write_text(ANYONE)
    argv = [sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "INFO", "--users", str(path), "--tls-cert", str(cert), "--tls-key", str(key)]
    server = await NodeProcess(argv).start()
    try:
        path.write_text(f"{ANYONE}x = {DEEP}\n")
        log = await _sighup_logs(server, "SIGHUP: users file not reloaded, the previous users stay:")
        await until(lambda: "TLS certificate reloaded from" in server.stderr(), "the TLS reload's line")
        assert TOO_DEEP in log
    finally:
        await server.stop()


def test_a_reload_that_fails_otherwise_logs_the_error_line_not_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """Any failure of a configured reload is its ERROR line; "not
    configured" is read from the configuration, never from a RuntimeError."""
    from ipc_server.reloads import reload_on_sighup

    class Config:
        users_file: str | None = "users.toml"
        tls_cert: str | None = None

    class Server:
        config = Config()

        def reload_users(self) -> None:
            raise RuntimeError("something of the server's own")

        def reload_tls(self) -> None:
            raise AssertionError("not configured: never called")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reload_on_sighup(loop, Server())  # type: ignore[arg-type]
        try:
            with caplog.at_level("INFO", logger="ipc_server"):
                signal.raise_signal(signal.SIGHUP)
                await until(lambda: "SIGHUP" in caplog.text, "the SIGHUP line")
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    asyncio.run(main())
    assert "SIGHUP: users file not reloaded, the previous users stay: something of the server's own" in caplog.text
    assert "SIGHUP ignored" not in caplog.text
