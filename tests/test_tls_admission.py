"""Sockets in their TLS handshake count against max_pending_handshakes like
sockets in our own handshake (docs/protocol.md §12.1): silent TCP sockets on
a TLS port cannot hold places forever, and the oldest is evicted for a new
one; failed TLS handshakes are counted in the stats."""

from __future__ import annotations

import asyncio
from typing import Any

from ipc_client import IPCClient
from ipc_server import IPCServer
from tests.test_tls import PKI, expect_refusal, pki, run, tls_server  # noqa: F401  (pki and run are fixtures)

WAIT_S = 5.0


async def _until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.01)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(WAIT_S):
        return await reader.read(1) == b""


def test_silent_sockets_on_a_tls_port_count_against_the_pending_cap_and_the_oldest_goes(pki: PKI, run: Any) -> None:
    async def main() -> None:
        cert, key = pki.server
        async with IPCServer("127.0.0.1", 0, tls_cert=cert, tls_key=key, max_pending_handshakes=3, shutdown_grace_s=0.2) as server:
            server.add_handler("echo", lambda msg: msg.payload)
            sockets = []
            for _ in range(3):  # TCP only, never a ClientHello
                sockets.append(await asyncio.open_connection("127.0.0.1", server.port))
                await _until(lambda n=len(sockets): server.stats.handshakes_pending == n)
            # A fourth evicts the oldest, which the server closes at once.
            sockets.append(await asyncio.open_connection("127.0.0.1", server.port))
            assert await _closed_by_server(sockets[0][0])
            assert server.stats.handshakes_evicted == 1
            await _until(lambda: server.stats.handshakes_pending == 3)
            # A client with the right CA gets in past them (evicting another).
            async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False) as good:
                assert await good.request("echo", {"n": 1}) == {"n": 1}
            assert server.stats.handshakes_evicted == 2
            for _, writer in sockets:
                writer.close()
            await _until(lambda: server.stats.handshakes_pending == 0)

    run(main())


def test_failed_tls_handshakes_are_counted(pki: PKI, run: Any) -> None:
    async def main() -> None:
        async with tls_server(pki) as server:
            await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, reconnect=False))
            await _until(lambda: server.stats.tls_handshakes_failed == 1)
            assert server.stats.snapshot()["tls_handshakes_failed"] == 1
            assert server.stats.handshakes_pending == 0

    run(main())
