"""The JSON Schemas serve registrations declare have budgets
(``max_schema_bytes_per_connection``, ``max_schema_bytes``; docs/protocol.md
§12, docs/security.md §5): the server holds them parsed, and 150
registrations of a 1.11 MiB schema took its RSS from 41 to 1,856 MiB
with nothing counted. Past a budget: ``limit_exceeded``, the connection
stays open; a withdrawn registration, or a closed connection, gives its
bytes back. Counted on the schemas' encoded size. Over real loopback TCP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ErrorCode
from ipc_server import IPCServer
from ipc_server.config import ServerConfig, load_config
from ipc_server.schemas import measure

from .conftest import RawPeer, frame


def schema(n: int) -> dict[str, Any]:
    """Schemas of a size that grows with ``n``."""
    return {"request": {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}, "response": {"type": "string"}}


SIZE = measure(schema(20))[1]


async def serve(peer: RawPeer, channel: str, declared: dict[str, Any] | None, *, subscribe: bool = True) -> Any:
    payload: dict[str, Any] = {"serve": True}
    if declared is not None:
        payload["schema"] = declared
    peer.send(frame("subscribe" if subscribe else "unsubscribe", channel, payload, message_id=f"{channel}-{subscribe}"))
    while True:
        answer = await peer.recv()
        if answer.reply_to is not None:
            return answer


async def test_a_registration_past_the_connection_budget_is_refused_and_the_bytes_come_back() -> None:
    async with IPCServer("127.0.0.1", 0, max_schema_bytes_per_connection=2 * SIZE) as server:
        peer = await RawPeer.open(server.port)
        try:
            await peer.handshake()
            assert (await serve(peer, "a", schema(20))).error is None
            assert (await serve(peer, "b", schema(20))).error is None  # exactly the budget
            over = await serve(peer, "c", schema(20))
            assert over.error is not None and over.error.code == ErrorCode.LIMIT_EXCEEDED
            assert f"maximum of {2 * SIZE}" in over.error.message
            assert (await serve(peer, "plain", None)).error is None  # declaring nothing costs nothing
            assert (await serve(peer, "a", schema(10))).error is None  # in place of its own: only the difference counts
            assert (await serve(peer, "a", schema(20))).error is None
            async with IPCClient("app", "127.0.0.1", server.port) as client:  # the schemas published are still there
                described = await client.system("describe")
                assert list(described["channels"]) == ["a", "b", "plain"] and described["channels"]["b"] == schema(20)
            assert (await serve(peer, "b", None, subscribe=False)).error is None  # withdrawn: its bytes come back
            assert (await serve(peer, "c", schema(20))).error is None  # on the same connection
            assert server._pubsub.schemas.total_bytes == 2 * SIZE  # a and c  # type: ignore[attr-defined]
        finally:
            await peer.close()
        await asyncio.wait_for(_until(lambda: server._pubsub.schemas.total_bytes == 0), 5)  # type: ignore[attr-defined]


async def _until(ready: Any) -> None:
    while not ready():
        await asyncio.sleep(0.01)


async def test_the_server_budget_counts_every_connection() -> None:
    async with IPCServer("127.0.0.1", 0, max_schema_bytes=3 * SIZE) as server:
        one, two = await RawPeer.open(server.port), await RawPeer.open(server.port)
        try:
            await one.handshake()
            await two.handshake()
            assert (await serve(one, "a", schema(20))).error is None
            assert (await serve(one, "b", schema(20))).error is None
            assert (await serve(two, "c", schema(20))).error is None
            over = await serve(two, "d", schema(20))
            assert over.error is not None and over.error.code == ErrorCode.LIMIT_EXCEEDED
            assert f"the server holds {3 * SIZE} bytes of declared schemas of its maximum of {3 * SIZE}" in over.error.message
        finally:
            await one.close()
        await asyncio.wait_for(_until(lambda: server._pubsub.schemas.total_bytes == SIZE), 5)  # type: ignore[attr-defined]
        assert (await serve(two, "d", schema(20))).error is None  # one's bytes came back with its close
        await two.close()


def test_the_settings() -> None:
    assert ServerConfig().max_schema_bytes_per_connection == 4 * 1024 * 1024 and ServerConfig().max_schema_bytes == 64 * 1024 * 1024
    env = {"IPC_SERVER_MAX_SCHEMA_BYTES_PER_CONNECTION": "none", "IPC_SERVER_MAX_SCHEMA_BYTES": "1000"}
    config = load_config(env=env)
    assert config.max_schema_bytes_per_connection is None and config.max_schema_bytes == 1000
    with pytest.raises(ValueError):
        load_config(env={"IPC_SERVER_MAX_SCHEMA_BYTES": "0"})
