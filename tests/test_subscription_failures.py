"""A subscription handler raising a ``BaseException`` that is no
``Exception`` (``GeneratorExit``, a library's own) is logged and emitted as
``error``, and delivery goes on, as for served handlers (docs/protocol.md
§6.3): raised from a plain handler inside ``data_received`` it made asyncio
close the connection, and the next message was lost. Real loopback TCP."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from ipc_protocol import Message
from ipc_server import IPCServer

from .conftest import WAIT_S
from .test_handler_failures import awaits_a_task_someone_cancelled, no_unretrieved, raised


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


async def test_a_subscription_handlers_own_cancelled_error_is_reported_and_delivery_goes_on(
    server: IPCServer, make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A CancelledError the handler raised itself (nothing of the client's
    cancelled it) is a failure like any other: it was silent in an async
    handler, whether it never awaited or raised after an await."""
    subscriber, publisher = await make_client(), await make_client()
    got: list[tuple[str, Any]] = []
    errors: list[BaseException] = []
    subscriber.on("error", errors.append)

    def sync(msg: Message) -> None:
        got.append(("sync", msg.payload))
        if msg.payload == "cancel":
            raise asyncio.CancelledError("sync")

    async def waits(msg: Message) -> None:
        await asyncio.sleep(0)
        got.append(("waits", msg.payload))
        if msg.payload == "cancel":
            await awaits_a_task_someone_cancelled(msg)

    async def now(msg: Message) -> None:  # never awaits: run at once on 3.11
        got.append(("now", msg.payload))
        if msg.payload == "cancel":
            raise asyncio.CancelledError("now")

    for handler in (sync, waits, now):
        await subscriber.subscribe("t", handler)
    await publisher.publish("t", "cancel", ack=True)
    await publisher.publish("t", "next", ack=True)
    async with asyncio.timeout(WAIT_S):
        while len(got) < 6 or len(errors) < 3:
            await asyncio.sleep(0.005)
    assert sorted(got) == sorted((name, p) for name in ("sync", "waits", "now") for p in ("cancel", "next"))
    assert [type(e) for e in errors] == [asyncio.CancelledError] * 3  # was 1: the sync handler's only
    assert subscriber.connected
    assert len([r for r in caplog.records if "subscription handler for 't' failed" in r.getMessage()]) == 3
    no_unretrieved(caplog)


async def test_a_handler_cancelled_by_disconnect_is_not_reported(server: IPCServer, make_client: Callable[..., Any]) -> None:
    subscriber, publisher = await make_client(), await make_client()
    started = asyncio.Event()
    errors: list[BaseException] = []
    subscriber.on("error", errors.append)

    async def forever(msg: Message) -> None:
        started.set()
        await asyncio.sleep(3600)

    await subscriber.subscribe("t", forever)
    await publisher.publish("t", 1, ack=True)
    await asyncio.wait_for(started.wait(), WAIT_S)
    await subscriber.disconnect()  # cancels the handler's task: the client's cancel, not a failure
    assert errors == []


@dataclasses.dataclass
class Recorder:
    """A handler with no hash: a dataclass defines ``__eq__``, so ``__hash__`` is None."""

    got: list[Any] = dataclasses.field(default_factory=list)

    def __call__(self, msg: Message) -> Any:
        self.got.append(msg.payload)
        return msg.payload


async def test_an_unhashable_handler_is_delivered_to_and_served(server: IPCServer, make_client: Callable[..., Any]) -> None:
    """The first publish to one closed the connection (ConnectionLost:
    unhashable type), and so did the first request to one served."""
    subscriber, publisher = await make_client(), await make_client()
    handler, other = Recorder(), Recorder(["other"])
    await subscriber.subscribe("u.x", handler)
    await subscriber.subscribe("u.*", handler)  # two patterns: called once per message
    await subscriber.subscribe("u.*", other)
    await subscriber.serve("ask", Recorder())
    await publisher.publish("u.x", 1, ack=True)
    assert await publisher.request("ask", 2, timeout=WAIT_S) == 2
    assert handler.got == [1] and other.got == ["other", 1] and subscriber.connected
    await subscriber.unsubscribe("u.*", handler)
    await subscriber.unserve("ask")
    await publisher.publish("u.x", 3, ack=True)
    await subscriber.system("ping", timeout=WAIT_S)  # the publish above was read
    assert handler.got == [1, 3] and other.got == ["other", 1, 3]
