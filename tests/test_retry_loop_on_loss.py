"""A call that finds its connection closing before the client has handled
the loss (the transport closes at once; asyncio calls ``connection_lost`` a
loop turn later) waits for that handling before it fails, so a caller
retrying at once sees the client ``disconnected`` / ``reconnecting``. It
used to raise ``ConnectionLost: the connection is closed`` without ever
yielding, so a retry loop spun for ever on a client still ``connected``:
the loss handler never ran. The proxy makes the window deterministic: a
frame that is not JSON arrives in the same read as an answer, so the
caller is woken before the client aborts the connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, NotConnected

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .proxied import proxy, via_proxy  # noqa: F401  (fixtures)


@pytest.mark.parametrize("reconnect", [False, True], ids=["reconnect_off", "reconnect_on"])
async def test_a_retry_loop_sees_a_loss_the_closing_connection_has_not_reported_yet(
    reconnect: bool, proxy: FaultProxy, via_proxy: Callable[..., Awaitable[IPCClient]], make_client: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    responder = await make_client()
    await responder.serve("echo", lambda msg: msg.payload)
    proxy.garble_after_answers(2)  # 1: the handshake's reply; 2: the first request's answer
    client = await via_proxy(reconnect=reconnect, heartbeat_interval=None)
    answers, failures = [], []
    for n in range(1000):  # without the wait: 999 failures in a row, never yielding, all "connected"
        try:
            answers.append(await client.request("echo", n, timeout=WAIT_S))
        except (ConnectionLost, NotConnected) as exc:
            failures.append((type(exc).__name__, client.state.value))
            if client.state.value != "connected":
                break
    assert answers == [0]
    assert failures == [("ConnectionLost", "reconnecting" if reconnect else "disconnected")]
    if reconnect:  # queued, then sent once reconnected
        assert await client.request("echo", "again", timeout=WAIT_S) == "again"
    else:
        with pytest.raises(NotConnected, match=r"not connected \(disconnected\)"):
            await client.request("echo", "again", timeout=WAIT_S)
