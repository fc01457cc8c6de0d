"""A TLS client the server refuses for its version or ciphers (docs/security.md
§2, §2.2): it is sent OpenSSL's alert (``protocol_version`` for TLS 1.1 at
most, ``handshake_failure`` for no shared cipher) before the socket is closed,
so it learns why and, the failure being final, does not retry; a peer that
does not speak TLS is still closed at once. Real sockets, trustme
certificates, asyncio and uvloop (the server's ``--loop``)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_client.tls import refused
from ipc_protocol import NotConnected

from .conftest import until
from .test_tls import FAST_S, PKI, expect_refusal, pki, run, still_serving, tls_server  # noqa: F401 - pki and run are fixtures


def old_tls_context(pki: PKI) -> ssl.SSLContext:
    """A client that offers TLS 1.0 and 1.1 only (seclevel 0: OpenSSL 3 would otherwise refuse to offer them)."""
    context = ssl.create_default_context(cafile=pki.ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


async def alert_of(port: int, context: ssl.SSLContext) -> ssl.SSLError:
    """The handshake's failure as the client sees it, within FAST_S."""
    with pytest.raises(ssl.SSLError) as info:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost"), FAST_S)
        writer.close()
    return info.value


def test_a_tls_1_1_client_is_sent_a_protocol_version_alert(pki: PKI, run: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        caplog.set_level(logging.INFO, logger="ipc_server.tls")
        async with tls_server(pki) as server:
            error = await alert_of(server.port, old_tls_context(pki))
            assert error.reason == "TLSV1_ALERT_PROTOCOL_VERSION", error
            await until(lambda: server.stats.snapshot()["tls_handshakes_failed"] == 1)
            await still_serving(server, tls_ca=pki.ca)
        assert any("UNSUPPORTED_PROTOCOL" in r.getMessage() for r in caplog.records)

    run(main())


def test_a_client_with_no_shared_cipher_is_sent_a_handshake_failure_alert(pki: PKI, run: Callable[..., Any]) -> None:
    async def main() -> None:
        context = ssl.create_default_context(cafile=pki.ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("aNULL:@SECLEVEL=0")  # anonymous suites only: the server, which has a certificate, offers none
        async with tls_server(pki, mutual=True) as server:
            error = await alert_of(server.port, context)
            assert error.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", error

    run(main())


@pytest.mark.parametrize("waiting", [False, True], ids=["once", "wait_on_first_connect"])
def test_a_tls_1_1_client_fails_fast_and_final(pki: PKI, run: Callable[..., Any], waiting: bool) -> None:
    async def main() -> None:
        async with tls_server(pki) as server:
            error = await expect_refusal(
                lambda: IPCClient("app", "127.0.0.1", server.port, tls=old_tls_context(pki), wait_on_first_connect=waiting, max_retries=5, initial_delay=0.05, reconnect=False)
            )
            assert isinstance(error.__cause__, ssl.SSLError) and "PROTOCOL_VERSION" in str(error.__cause__)
            assert "does it speak TLS" not in str(error)
            assert refused(error)  # so wait_on_first_connect stopped at the first attempt
            failed = lambda: server.stats.snapshot()["tls_handshakes_failed"]  # noqa: E731
            await until(lambda: failed() >= 1)  # the server counts it a turn after its alert went out
            assert failed() == 1

    run(main())


def test_a_plaintext_client_on_a_tls_port_is_still_closed_at_once(pki: PKI, run: Callable[..., Any]) -> None:
    """No alert for a peer that does not speak TLS: it could not read one, and
    holding its socket until the deadline would only cost a pending place."""

    async def main() -> None:
        async with tls_server(pki) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await asyncio.wait_for(reader.read(), FAST_S) == b""
            finally:
                writer.close()
            with pytest.raises(NotConnected):
                await asyncio.wait_for(IPCClient("app", "127.0.0.1", server.port, reconnect=False).connect(), FAST_S)

    run(main())
