"""A TLS client the server refuses for its version or ciphers (docs/security.md
§2, §2.2): it is sent OpenSSL's alert (``protocol_version`` for TLS 1.1 at
most, ``handshake_failure`` for no shared cipher) before the socket is closed,
so it learns why and, the failure being final, does not retry; a peer that
does not speak TLS is still closed at once. Real sockets, trustme
certificates, asyncio and uvloop (the server's ``--loop``)."""

from __future__ import annotations

import asyncio
import logging
import socket
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


def no_shared_cipher_context(pki: PKI) -> ssl.SSLContext:
    """A TLS 1.2 client offering anonymous suites only: the server, which has a certificate, has none of them."""
    context = ssl.create_default_context(cafile=pki.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("aNULL:@SECLEVEL=0")
    return context


def no_certificate_context(pki: PKI, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that presents no certificate, to a server under mutual TLS."""
    context = ssl.create_default_context(cafile=pki.ca)
    context.maximum_version = version
    return context


async def refused_from(port: int, context: ssl.SSLContext) -> int:
    """Runs one refused handshake (over TLS 1.3 the refusal comes on the
    first read) and returns the client's port, for the server's log line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=FAST_S)
    sock.setblocking(False)
    local = int(sock.getsockname()[1])
    with pytest.raises(ssl.SSLError):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(sock=sock, ssl=context, server_hostname="localhost"), FAST_S)
        try:
            await asyncio.wait_for(reader.read(), FAST_S)
        finally:
            writer.close()
    sock.close()
    return local


REFUSALS = {
    "tls_1_1": (False, old_tls_context, "UNSUPPORTED_PROTOCOL"),
    "no_shared_cipher": (False, no_shared_cipher_context, "NO_SHARED_CIPHER"),
    "no_client_certificate_tls_1_2": (True, lambda pki: no_certificate_context(pki, ssl.TLSVersion.TLSv1_2), "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
    "no_client_certificate_tls_1_3": (True, lambda pki: no_certificate_context(pki, ssl.TLSVersion.TLSv1_3), "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
}


@pytest.mark.parametrize("kind", list(REFUSALS))
def test_a_refused_client_is_logged_once_with_its_peer_and_the_reason(pki: PKI, run: Callable[..., Any], caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """The refusal's line names the peer and OpenSSL's reason, and no second
    line guesses at why the client then closed: the server knows it refused."""
    mutual, make, reason = REFUSALS[kind]

    async def main() -> None:
        caplog.set_level(logging.INFO, logger="ipc_server.tls")
        async with tls_server(pki, mutual=mutual) as server:
            local = await refused_from(server.port, make(pki))
            # The handshake's end is counted in the callback that would log the second line.
            await until(lambda: server.stats.snapshot()["tls_handshakes_failed"] == 1)
        lines = [r.getMessage() for r in caplog.records if r.name == "ipc_server.tls"]
        assert lines == [line for line in lines if f"127.0.0.1:{local}" in line], lines
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"TLS handshake with 127.0.0.1:{local} refused: [SSL: {reason}]"), lines

    run(main())


def test_refusals_at_once_are_each_logged_with_their_own_peer(pki: PKI, run: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """Handshakes in flight together: each refusal is told to the socket it belongs to."""

    async def main() -> None:
        caplog.set_level(logging.INFO, logger="ipc_server.tls")
        kinds = ["tls_1_1", "no_shared_cipher", "no_client_certificate_tls_1_2", "no_client_certificate_tls_1_3"] * 3
        async with tls_server(pki, mutual=True) as server:
            server.refusal_lines.burst = len(kinds)  # one host's refusals past the burst are counted (test_host_lines.py), not each told
            good = asyncio.gather(*(still_serving(server, tls_ca=pki.ca, tls_cert=pki.client[0], tls_key=pki.client[1]) for _ in range(3)))
            locals_ = await asyncio.gather(*(refused_from(server.port, REFUSALS[kind][1](pki)) for kind in kinds))
            await good
            await until(lambda: server.stats.snapshot()["tls_handshakes_failed"] == len(kinds))
        lines = [r.getMessage() for r in caplog.records if r.name == "ipc_server.tls"]
        assert len(lines) == len(kinds), lines
        for kind, local in zip(kinds, locals_):
            mine = [line for line in lines if f"127.0.0.1:{local} " in line]
            assert len(mine) == 1 and f"refused: [SSL: {REFUSALS[kind][2]}]" in mine[0], (kind, local, lines)

    run(main())


def with_certificate(pki: PKI, pair: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    context.load_cert_chain(*pair)
    return context


HANDSHAKE_FAILURE = "the server refused the handshake (handshake_failure): no cipher suite or protocol setting in common with this client, or, over TLS 1.2, no client certificate where the server requires one (mutual TLS: set tls_cert and tls_key): "
CLIENT_WORDS = {
    # case: (mutual, the client's context, the words its not_connected starts with after "TLS ... H:P ...: ")
    "tls_1_1": (False, old_tls_context, "the server refused this client's TLS version (protocol_version): the versions the two allow do not overlap, and the server needs TLS 1.2 or later: "),
    "no_shared_cipher": (False, no_shared_cipher_context, HANDSHAKE_FAILURE),
    "no_client_certificate_tls_1_2": (True, lambda pki: no_certificate_context(pki, ssl.TLSVersion.TLSv1_2), HANDSHAKE_FAILURE),
    "no_client_certificate_tls_1_3": (
        True,
        lambda pki: no_certificate_context(pki, ssl.TLSVersion.TLSv1_3),
        "the server requires a client certificate and this client presented none (certificate_required; mutual TLS: set tls_cert and tls_key): ",
    ),
    "foreign_client_certificate": (True, lambda pki: with_certificate(pki, pki.foreign_client), "the server refused this client's certificate (unknown_ca): mutual TLS needs one that a CA the server trusts signed, not expired (tls_cert and tls_key): "),
    "expired_client_certificate": (True, lambda pki: with_certificate(pki, pki.expired_client), "the server refused this client's certificate (certificate_expired): "),
}


@pytest.mark.parametrize("case", list(CLIENT_WORDS))
def test_the_client_names_the_cause_the_server_s_alert_stands_for(pki: PKI, run: Callable[..., Any], case: str) -> None:
    """protocol_version is the TLS versions, handshake_failure the cipher or
    protocol settings (or, over TLS 1.2, a missing client certificate), the
    certificate alerts the client's certificate: never one for another."""
    mutual, make, words = CLIENT_WORDS[case]

    async def main() -> None:
        async with tls_server(pki, mutual=mutual) as server:
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls=make(pki), reconnect=False))
            assert refused(error)
            _, _, said = str(error).partition(f"127.0.0.1:{server.port} ")
            assert said.split(": ", 1)[1].startswith(words), str(error)

    run(main())
