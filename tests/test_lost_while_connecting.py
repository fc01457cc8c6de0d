"""A connection lost while a (re)connection reads its last answers, the
handshake's reply or a restored subscription's ack arriving with the
server's close: the attempt fails and the client tries again, and never
reports ``connected`` with no connection (docs/resilience.md §3). The
close comes from a proxy in front of the real server, in the same step as
the answer. The handshake's case is held by the handshake's own checks
(a connection closed while it is read fails it); the restored ack's was
the one that left the client connected with no connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .proxied import proxy, via_proxy  # noqa: F401  (fixtures)


async def _events(client: IPCClient, name: str, count: int) -> None:
    seen = asyncio.Event()
    got = 0

    def on(*_: Any) -> None:
        nonlocal got
        got += 1
        if got == count:
            seen.set()

    client.on(name, on)
    await asyncio.wait_for(seen.wait(), WAIT_S)


@pytest.mark.parametrize("answers", [1, 2], ids=["handshake_reply", "restored_subscribe_ack"])
async def test_a_connection_lost_with_its_last_answer_is_tried_again(
    answers: int, proxy: FaultProxy, via_proxy: Callable[..., Awaitable[IPCClient]], make_client: Callable[..., Awaitable[IPCClient]]  # noqa: F811
) -> None:
    sub = await via_proxy(heartbeat_interval=None)
    pub = await make_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await sub.subscribe("after.loss", lambda msg: got.put_nowait(msg.payload))
    reconnected = asyncio.ensure_future(_events(sub, "reconnected", 1))
    proxy.close_after_answers(answers)  # the reconnection: closed with its handshake reply or with the restored subscribe's ack
    proxy.cut()
    await reconnected
    assert proxy.accepted == 3  # the first connection, the attempt lost with its answer, the one that held
    assert sub.state.value == "connected" and sub._link.conn is not None and sub._link.conn.is_open
    assert await pub.publish("after.loss", 1, ack=True) == 1
    assert await asyncio.wait_for(got.get(), WAIT_S) == 1
