"""Sockets in their TLS handshake count against max_pending_handshakes like
sockets in our own handshake (docs/protocol.md §12.1): silent TCP sockets on
a TLS port cannot hold places forever, and the oldest is evicted for a new
one; failed TLS handshakes are counted in the stats. One deadline runs from
the TCP accept, the TLS handshake's time included, and a socket it fails
leaves the pending count at once, while its close_notify goes unanswered."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer, pending_cap
from tests.test_tls import PKI, expect_refusal, pki, run, tls_server  # noqa: F401  (pki and run are fixtures)

WAIT_S = 5.0


async def _until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.01)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(WAIT_S):
        return await reader.read(1) == b""


def test_silent_sockets_on_a_tls_port_count_against_the_pending_cap_and_the_oldest_goes(pki: PKI, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pending_cap, "SILENT_AFTER_S", 0.0)  # silent at once, not after 1 s: the order, without waiting

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


async def _slow_tls_then_silent(port: int, ca: str, finished_at: float) -> tuple[float, bytes, asyncio.StreamWriter]:
    """A client that sends its TLS Finished at ``finished_at`` (on the loop's
    clock) and never the bridge's connect: returns when the server's
    close_notify came (since the TCP connect) and what was read before it.
    It never answers the close_notify, as a hostile peer would not."""
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=ca).wrap_bio(incoming, outgoing, server_hostname="localhost")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connected = loop.time()
    finished = False
    while not finished:
        try:
            tls.do_handshake()
            finished = True
        except ssl.SSLWantReadError:
            pass
        flight = outgoing.read()
        if finished:  # the client's last flight, held back as a slow peer would
            sent = loop.create_future()
            loop.call_at(connected + finished_at, lambda: sent.done() or sent.set_result(None))
            await asyncio.wait_for(sent, WAIT_S)
        writer.write(flight)
        if not finished:
            incoming.write(await asyncio.wait_for(reader.read(65536), WAIT_S))
    read = b""
    async with asyncio.timeout(WAIT_S):
        while True:
            chunk = await reader.read(65536)
            assert chunk, "the TCP connection closed before TLS's close_notify"
            incoming.write(chunk)
            try:
                while data := tls.read(65536):  # b"": the close_notify (else SSLWantReadError)
                    read += data
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLZeroReturnError:
                pass
            return loop.time() - connected, read, writer


@pytest.mark.parametrize("auth", [False, True], ids=["handshake_timeout", "auth_timeout"])
def test_one_deadline_from_the_tcp_accept_and_a_timed_out_socket_frees_its_place_at_once(pki: PKI, run: Any, auth: bool) -> None:
    async def main() -> None:
        cert, key = pki.server
        deadline = 1.0
        timeouts = {"token": "s3cret", "auth_timeout_s": deadline} if auth else {"handshake_timeout_s": deadline}
        async with IPCServer("127.0.0.1", 0, tls_cert=cert, tls_key=key, shutdown_grace_s=0.2, **timeouts) as server:
            # The TLS handshake takes 0.7 of the deadline: the rest is all the connect has (§12.1).
            closed_at, read, writer = await _slow_tls_then_silent(server.port, pki.ca, 0.7 * deadline)
            try:
                assert b'"code":"timeout"' in read and f"within the {'auth' if auth else 'handshake'} timeout (1 s)".encode() in read
                assert deadline - 0.05 < closed_at < deadline + 0.35  # one deadline, not the TLS time plus another
                # Its place is free now, though its socket waits (2 s) for a close_notify that never comes.
                assert server.stats.handshakes_pending == 0
                assert len(server.connections) == 1
            finally:
                writer.close()

    run(main())
