"""TLS (docs/security.md §2) across a server restart and through the
pool and the load-balanced client, on asyncio and on uvloop: a client
reconnects over TLS, and gives up when the restarted server's certificate
is refused (the rest of TLS: tests/test_tls.py)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient
from ipc_protocol import NotConnected
from ipc_server import IPCServer
from ipc_server.tls import peer_subject

from .test_tls import FAST_S, PKI, pki, run, tls_server  # noqa: F401 - pki and run are fixtures


def test_reconnection_over_tls_after_a_server_restart(pki: PKI, run: Callable[..., Any]) -> None:
    async def main() -> None:
        server = tls_server(pki, mutual=True)
        await server.start()
        port = server.port
        cert, key = pki.client
        client = IPCClient("app", "127.0.0.1", port, tls_ca=pki.ca, tls_cert=cert, tls_key=key, initial_delay=0.05, max_delay=0.2)
        reconnected = asyncio.Event()
        client.on("reconnected", lambda *_: reconnected.set())
        await client.connect()
        try:
            assert await client.request("echo", "before") == "before"
            await server.close()
            server = tls_server(pki, mutual=True, port=port)
            await server.start()
            await asyncio.wait_for(reconnected.wait(), 10)
            assert await client.request("echo", "after") == "after"  # a new TLS handshake, a client certificate again
            (conn,) = server.connections
            assert peer_subject(conn.transport) is not None
        finally:
            await client.disconnect()
            await server.close()

    run(main())


def test_reconnection_gives_up_when_the_restarted_server_s_certificate_is_refused(pki: PKI, run: Callable[..., Any]) -> None:
    async def main() -> None:
        server = tls_server(pki)
        await server.start()
        port = server.port
        client = IPCClient("app", "127.0.0.1", port, tls_ca=pki.ca, initial_delay=0.05, max_delay=0.2)
        gave_up = asyncio.Event()
        attempts: list[Any] = []
        client.on("reconnect_failed", lambda n: (attempts.append(n), gave_up.set()))
        await client.connect()
        try:
            await server.close()
            server = tls_server(pki, cert=pki.foreign_server, port=port)  # signed by a CA the client does not trust
            await server.start()
            await asyncio.wait_for(gave_up.wait(), 10)  # final, as a refused token: no endless retries
            assert attempts == [1] and client.state.value == "disconnected"
            with pytest.raises(NotConnected):
                await client.request("echo", 1)
        finally:
            await client.disconnect()
            await server.close()

    run(main())


def test_the_pool_and_the_load_balanced_client_pass_tls_through(pki: PKI, run: Callable[..., Any]) -> None:
    async def main() -> None:
        cert, key = pki.client
        tls = {"tls_ca": pki.ca, "tls_cert": cert, "tls_key": key}
        async with tls_server(pki, mutual=True) as one, tls_server(pki, mutual=True) as two:
            async with ConnectionPool("app", "127.0.0.1", one.port, min_connections=2, max_connections=2, **tls) as pool:
                assert await asyncio.gather(*(pool.request("echo", i) for i in range(6))) == list(range(6))
            assert all(peer_subject(c.transport) for c in one.connections)
            async with LoadBalancedClient("app", [("127.0.0.1", one.port), ("127.0.0.1", two.port)], health_check_interval=None, **tls) as balanced:
                assert await asyncio.gather(*(balanced.request("echo", i) for i in range(6))) == list(range(6))
                assert one.connections and two.connections
        async with tls_server(pki, mutual=True) as server:  # and a refusal reaches the caller as not_connected naming TLS
            with pytest.raises(NotConnected, match="TLS"):
                async with ConnectionPool("app", "127.0.0.1", server.port, tls_ca=pki.ca, acquire_timeout=FAST_S) as pool:
                    await pool.request("echo", 1)

    run(main())


def test_the_load_balanced_client_s_start_names_tls_with_the_tls_error_as_its_cause(pki: PKI, run: Callable[..., Any]) -> None:
    """security.md §2.2 through start() (resilience.md §8): the first
    server's words, and the TLS error itself as the cause, not a wrapper."""

    async def main() -> None:
        async with tls_server(pki, cert=pki.foreign_server) as foreign, IPCServer("127.0.0.1", 0) as plaintext:
            servers = [("127.0.0.1", foreign.port), ("127.0.0.1", plaintext.port)]
            balanced = LoadBalancedClient("app", servers, health_check_interval=None, tls_ca=pki.ca, reconnect=False)
            try:
                with pytest.raises(NotConnected) as info:
                    await asyncio.wait_for(balanced.start(), FAST_S)
            finally:
                await balanced.close()
            error = info.value
            assert str(error).startswith(f"no server could be reached: TLS handshake with 127.0.0.1:{foreign.port} failed: the server's certificate was refused")
            assert isinstance(error.__cause__, ssl.SSLCertVerificationError)

    run(main())
