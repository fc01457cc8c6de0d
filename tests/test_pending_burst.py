"""The pending-handshake cap (docs/protocol.md §12.1) against bursts of
honest clients: a restart's reconnections arrive together, each connect
right behind its TCP connect, and none may be evicted for the others;
silent sockets still never lock out a client that completes its handshake."""

from __future__ import annotations

import asyncio

from ipc_client import IPCClient
from ipc_server import IPCServer
from ipc_server.admission import EVICTABLE_AFTER_S

from .conftest import WAIT_S, RawPeer


async def _until(pred, timeout: float = WAIT_S) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


async def _connect_at_once(port: int) -> str:
    """A raw client that sends its connect as soon as it is connected."""
    peer = await RawPeer.open(port)
    try:
        reply = await peer.handshake()
        return "ok" if reply.error is None else reply.error.code
    except EOFError:
        return "closed"
    finally:
        await peer.close()


async def test_a_burst_over_the_pending_cap_is_admitted_whole() -> None:
    """200 clients at once over the default cap of 128: before, the 72
    accepted last evicted the first 72 although their connects had come."""
    async with IPCServer("127.0.0.1", 0) as server:
        assert server.config.max_pending_handshakes == 128
        outcomes = await asyncio.wait_for(asyncio.gather(*(_connect_at_once(server.port) for _ in range(200))), WAIT_S * 2)
        assert outcomes.count("ok") == 200, {o: outcomes.count(o) for o in set(outcomes)}
        assert server.stats.handshakes_evicted == 0


async def test_silent_sockets_over_the_cap_still_let_an_honest_client_in() -> None:
    """130 silent sockets hold the default cap of 128; a client with a
    connect gets in once the oldest have waited EVICTABLE_AFTER_S."""
    async with IPCServer("127.0.0.1", 0, handshake_timeout_s=60) as server:
        silent = [await RawPeer.open(server.port) for _ in range(130)]
        try:
            await _until(lambda: server.stats.handshakes_pending == 128)
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with IPCClient("app", "127.0.0.1", server.port, reconnect=False, connect_timeout=WAIT_S) as client:
                took = loop.time() - started
                assert await client.health_check() is True
            assert took < EVICTABLE_AFTER_S + 1.0, took  # the documented bound, with a margin for a loaded machine
            assert server.stats.handshakes_evicted >= 3  # the two over the cap and one for the client
            assert server.stats.handshakes_pending <= 128
        finally:
            for peer in silent:
                await peer.close()
