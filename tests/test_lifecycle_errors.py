"""What the client reports on ``error`` when its connection ends with no
caller to tell (docs/resilience.md §2), as Node's does
(interop-tests/test_js_lifecycle.py): giving up reconnecting, its last
attempt's failure as the cause, and a heartbeat timeout."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, NotConnected, RequestTimeout

from .conftest import WAIT_S
from .test_idempotency import until


def recording(client: IPCClient, *names: str) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    for name in names:
        client.on(name, lambda arg=None, name=name: events.append((name, arg)))
    return events


async def test_giving_up_reconnecting_is_reported_on_error_caused_by_the_last_attempt(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    client = IPCClient("app", "127.0.0.1", srv.port, initial_delay=0.01, max_delay=0.02, max_retries=3)
    events = recording(client, "reconnect_failed", "error")
    await client.connect()
    try:
        srv.signal(signal.SIGKILL)
        await srv.wait()
        await until(lambda: not client.connected)
        queued = asyncio.ensure_future(client.request("jobs.run", 1, timeout=WAIT_S))
        await until(lambda: len(events) == 2)
        assert events[0] == ("reconnect_failed", 3)
        name, error = events[1]
        assert name == "error" and isinstance(error, ConnectionLost)
        assert error.message == "gave up reconnecting after 3 attempts"
        assert isinstance(error.__cause__, NotConnected)  # the last attempt's, as connect() raises it
        assert isinstance(error.__cause__.__cause__, ConnectionRefusedError)
        with pytest.raises(NotConnected) as info:
            await asyncio.wait_for(queued, WAIT_S)
        assert info.value.message == "gave up reconnecting" and info.value.__cause__ is error
    finally:
        await client.disconnect()


@pytest.mark.parametrize("reconnect", [True, False])
async def test_a_heartbeat_timeout_is_reported_on_error(spawn, reconnect) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    client = IPCClient("app", "127.0.0.1", srv.port, heartbeat_interval=0.2, heartbeat_timeout=0.5, reconnect=reconnect, connect_timeout=0.5)
    events = recording(client, "heartbeat_timeout", "disconnected", "error")
    await client.connect()
    srv.signal(signal.SIGSTOP)  # the TCP connection stays open: a half-dead peer
    try:
        await until(lambda: len(events) >= 3)
    finally:
        srv.signal(signal.SIGCONT)
        await client.disconnect()
    assert [name for name, _ in events[:3]] == ["heartbeat_timeout", "disconnected", "error"]
    error = events[2][1]
    assert isinstance(error, RequestTimeout)
    assert error.message.startswith("heartbeat timeout: nothing received for ") and error.message.endswith(" s")
    lost = events[1][1]  # the loss, its cause the timeout itself (as Node's ConnectionLostError and its .cause)
    assert isinstance(lost, ConnectionLost) and lost.__cause__ is error
    assert "heartbeat timeout" in str(lost)  # the loss says why too
