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

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

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


_names = itertools.count()


async def _stream(client: IPCClient) -> None:
    async with client.stream("echo", "x", timeout=WAIT_S) as items:
        async for _ in items:
            pass


# Every other send path a user loop may retry: each fails once too (Calls.unsent).
OPS: dict[str, Callable[[IPCClient], Awaitable[Any]]] = {
    "system": lambda c: c.system("stats", timeout=WAIT_S),
    "publish": lambda c: c.publish("news", "x"),
    "publish_ack": lambda c: c.publish("news", "x", ack=True, timeout=WAIT_S),
    "notify": lambda c: c.notify("news", "x"),
    "subscribe": lambda c: c.subscribe(f"topic{next(_names)}", lambda msg: None),
    "serve": lambda c: c.serve(f"svc{next(_names)}", lambda msg: None).wait(),
    "stream": _stream,
}


@pytest.mark.parametrize("op", list(OPS), ids=list(OPS))
async def test_every_send_path_fails_once_on_a_closing_connection(
    op: str, proxy: FaultProxy, via_proxy: Callable[..., Awaitable[IPCClient]], make_client: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    responder = await make_client()
    await responder.serve("echo", lambda msg: msg.payload)
    proxy.garble_after_answers(2)
    client = await via_proxy(reconnect=False, heartbeat_interval=None)
    assert await client.request("echo", 0, timeout=WAIT_S) == 0  # its answer comes with the garbage
    failures = []
    for _ in range(1000):
        try:
            await OPS[op](client)
            break
        except (ConnectionLost, NotConnected) as exc:
            failures.append((type(exc).__name__, client.state.value))
            if client.state.value != "connected":
                break
    assert failures == [("ConnectionLost", "disconnected")]  # was 1000 in a row, all "connected" (stream)
    if op not in ("subscribe", "serve"):  # those are kept for a later connect() instead
        with pytest.raises(NotConnected):
            await OPS[op](client)
