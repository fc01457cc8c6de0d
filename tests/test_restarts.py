"""A server restart with real processes (docs/protocol.md §13.2): a
requester replays its queued requests before the responder they target is
back. Without the no-responders grace every one of them failed
``no_responders`` (the chaos run's finding); with it, none does."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import NoResponders

from .conftest import WAIT_S

REQUESTS = 300


async def until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT_S * 2):
        while not await predicate():
            await asyncio.sleep(0.02)


async def restart_with_queued_requests(spawn: Any, *grace: str) -> list[Any]:
    """Serve ``work``, kill the server, queue REQUESTS calls, start it again
    on the same port; the responder comes back once the requester replayed.
    Returns what each call ended in."""
    first = await spawn("-m", "ipc_server", "--port", "0", *grace)
    port = first.port
    responder = IPCClient("app", "127.0.0.1", port, initial_delay=0.05, max_delay=0.2)
    requester = IPCClient("app", "127.0.0.1", port, initial_delay=0.02, max_delay=0.1, queue_max_size=REQUESTS)
    monitor = IPCClient("app", "127.0.0.1", port, initial_delay=0.02, max_delay=0.1)
    try:
        for c in (responder, requester, monitor):
            await c.connect()
        await responder.serve("work", lambda m: m.payload)
        assert await requester.request("work", -1, timeout=WAIT_S) == -1
        first.signal(signal.SIGKILL)
        await first.wait()
        await responder.disconnect()  # it comes back later, by hand

        async def offline() -> bool:
            return not requester.connected

        await until(offline)
        calls = [asyncio.ensure_future(requester.request("work", i, timeout=WAIT_S * 4)) for i in range(REQUESTS)]
        await spawn("-m", "ipc_server", "--port", str(port), *grace)

        async def replayed() -> bool:
            if not monitor.connected:
                return False
            grace_figures = (await monitor.request("system", {"action": "stats"}, timeout=WAIT_S))["grace"]
            return grace_figures["holding"] == REQUESTS or sum(c.done() for c in calls) == REQUESTS

        await until(replayed)  # every request reached the server (held, or already failed)
        await responder.connect()  # restores its registration
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT_S * 4)
    finally:
        for c in (responder, requester, monitor):
            await c.disconnect()


@pytest.mark.parametrize(("grace", "failed"), [((), 0), (("--no-responders-grace", "0"), REQUESTS)], ids=["grace", "no-grace"])
async def test_replayed_requests_wait_for_the_responder_instead_of_failing(spawn, grace, failed) -> None:
    results = await restart_with_queued_requests(spawn, *grace)
    no_responders = sum(isinstance(r, NoResponders) for r in results)
    assert no_responders == failed
    assert sum(r == i for i, r in enumerate(results)) == REQUESTS - failed
