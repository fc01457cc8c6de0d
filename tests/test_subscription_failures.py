"""A subscription handler raising a ``BaseException`` that is no
``Exception`` (``GeneratorExit``, a library's own) is logged and emitted as
``error``, and delivery goes on, as for served handlers (docs/protocol.md
§6.3): raised from a plain handler inside ``data_received`` it made asyncio
close the connection, and the next message was lost. Real loopback TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ipc_protocol import Message
from ipc_server import IPCServer

from .conftest import WAIT_S
from .test_handler_failures import no_unretrieved, raised


@pytest.mark.parametrize("payload", ["generator_exit", "library"])
async def test_a_subscription_handler_raising_a_base_exception_is_reported_and_delivery_goes_on(
    server: IPCServer, make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture, payload: str
) -> None:
    subscriber, publisher = await make_client(), await make_client()
    got: list[tuple[str, Any]] = []
    errors: list[BaseException] = []
    disconnects: list[Any] = []
    subscriber.on("error", errors.append)
    subscriber.on("disconnected", lambda *args: disconnects.append(args))

    def sync(msg: Message) -> None:
        got.append(("sync", msg.payload))
        if msg.payload == payload:
            raise raised(payload)

    async def waits(msg: Message) -> None:
        await asyncio.sleep(0)
        got.append(("waits", msg.payload))
        if msg.payload == payload:
            raise raised(payload)

    async def now(msg: Message) -> None:  # never awaits: run at once on 3.11
        got.append(("now", msg.payload))
        if msg.payload == payload:
            raise raised(payload)

    for handler in (sync, waits, now):
        await subscriber.subscribe("t", handler)
    await publisher.publish("t", payload, ack=True)
    await publisher.publish("t", "next", ack=True)
    async with asyncio.timeout(WAIT_S):
        while len(got) < 6 or len(errors) < 3:
            await asyncio.sleep(0.005)
    assert sorted(got) == sorted((name, p) for name in ("sync", "waits", "now") for p in (payload, "next"))
    assert [type(e) for e in errors] == [type(raised(payload))] * 3
    assert not disconnects and subscriber.connected
    no_unretrieved(caplog)
