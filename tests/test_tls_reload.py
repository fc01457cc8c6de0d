"""Reloading the TLS files (docs/security.md §2.4): ``IPCServer.reload_tls()``
and SIGHUP read ``tls_cert``, ``tls_key`` and ``tls_ca`` again; new
connections handshake with what was read, open ones keep theirs, and files
that do not load leave the old ones in place. Real certificates from
trustme (tests/test_tls.py's PKI), on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer

from .nats_support import NodeProcess, until
from .test_tls import PKI, expect_refusal, pki, run  # noqa: F401 - fixtures

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]


def _files(pki: PKI, tmp_path: Path, pair: tuple[str, str], ca: str | None = None) -> tuple[str, str, str]:
    """The server's files, copied where a test can replace them."""
    cert, key, ca_copy = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    shutil.copy(pair[0], cert)
    shutil.copy(pair[1], key)
    shutil.copy(ca or pki.ca, ca_copy)
    return str(cert), str(key), str(ca_copy)


def _replace(cert: str, key: str, pair: tuple[str, str]) -> None:
    shutil.copy(pair[0], cert)
    shutil.copy(pair[1], key)


async def _served_issuer(pki: PKI, port: int) -> str:
    """The organisation that signed the certificate a new connection is shown."""
    context = ssl.create_default_context(cafile=pki.ca)
    context.load_verify_locations(cafile=pki.other_ca)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        issuer = dict(pair[0] for pair in writer.get_extra_info("peercert")["issuer"])
        return str(issuer["organizationName"])
    finally:
        writer.close()


def _echo_server(cert: str, key: str, ca: str | None = None) -> IPCServer:
    server = IPCServer("127.0.0.1", 0, tls_cert=cert, tls_key=key, tls_ca=ca, shutdown_grace_s=0.2)
    server.handler("echo")(lambda msg: msg.payload)
    return server


def test_new_connections_get_the_reloaded_certificate_and_open_ones_keep_theirs(run: Run[None], pki: PKI, tmp_path: Path) -> None:
    cert, key, _ = _files(pki, tmp_path, pki.server)

    async def main() -> None:
        server = _echo_server(cert, key)
        await server.start()
        try:
            assert await _served_issuer(pki, server.port) == "ipc-bridge tests"
            async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False) as before:
                _replace(cert, key, pki.foreign_server)
                server.reload_tls()
                assert await _served_issuer(pki, server.port) == "someone else"
                assert await before.request("echo", "still") == "still"  # its session is the old certificate's
                await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False))
                async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.other_ca, reconnect=False) as after:
                    assert await after.request("echo", "new") == "new"
        finally:
            await server.close()

    run(main())


def test_files_that_do_not_load_leave_the_old_certificate(run: Run[None], pki: PKI, tmp_path: Path) -> None:
    cert, key, _ = _files(pki, tmp_path, pki.server)

    async def main() -> None:
        server = _echo_server(cert, key)
        await server.start()
        try:
            shutil.copy(pki.foreign_server[1], key)  # a key that is not the certificate's
            with pytest.raises(ValueError, match="does not match the certificate"):
                server.reload_tls()
            Path(cert).write_text("not a certificate")
            with pytest.raises(ValueError, match="must be a PEM certificate chain"):
                server.reload_tls()
            Path(cert).unlink()
            with pytest.raises(ValueError, match="no such file"):
                server.reload_tls()
            assert await _served_issuer(pki, server.port) == "ipc-bridge tests"
            async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False) as client:
                assert await client.request("echo", 1) == 1
        finally:
            await server.close()
        plain = IPCServer("127.0.0.1", 0)
        await plain.start()
        try:
            with pytest.raises(RuntimeError, match="no TLS"):
                plain.reload_tls()
        finally:
            await plain.close()

    run(main())


def test_a_replaced_client_ca_refuses_the_old_clients_from_then_on(run: Run[None], pki: PKI, tmp_path: Path) -> None:
    cert, key, ca = _files(pki, tmp_path, pki.server)

    async def main() -> None:
        server = _echo_server(cert, key, ca)
        await server.start()
        alice, mallory = dict(tls_cert=pki.client[0], tls_key=pki.client[1]), dict(tls_cert=pki.foreign_client[0], tls_key=pki.foreign_client[1])
        try:
            async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False, **alice) as open_alice:
                await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False, **mallory))
                shutil.copy(pki.other_ca, ca)
                server.reload_tls()
                await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False, **alice))
                async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False, **mallory) as new:
                    assert await new.request("echo", "in") == "in"
                assert await open_alice.request("echo", "open") == "open"
        finally:
            await server.close()

    run(main())


async def test_sighup_reloads_the_tls_files_of_a_running_server(pki: PKI, tmp_path: Path) -> None:
    cert, key, _ = _files(pki, tmp_path, pki.server)
    argv = [sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "INFO", "--tls-cert", cert, "--tls-key", key]
    server = await NodeProcess(argv).start()
    try:
        assert server.proc is not None
        assert await _served_issuer(pki, server.port) == "ipc-bridge tests"
        _replace(cert, key, pki.foreign_server)
        server.proc.send_signal(signal.SIGHUP)
        await until(lambda: "TLS certificate reloaded from" in server.stderr(), "the reload's log line")
        assert await _served_issuer(pki, server.port) == "someone else"
        Path(cert).write_text("not a certificate")
        server.proc.send_signal(signal.SIGHUP)
        await until(lambda: "TLS files not reloaded, the previous certificate stays" in server.stderr(), "the failure's log line")
        assert server.proc.returncode is None
        assert await _served_issuer(pki, server.port) == "someone else"
    finally:
        await server.stop()


async def test_sighup_without_users_or_tls_is_logged_and_ignored() -> None:
    argv = [sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "INFO"]
    server = await NodeProcess(argv).start()
    try:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        await until(lambda: "SIGHUP ignored: this server has neither a users file" in server.stderr(), "the log line")
        async with IPCClient("app", "127.0.0.1", server.port, reconnect=False) as client:
            assert (await client.system("ping")) is not None
    finally:
        await server.stop()
