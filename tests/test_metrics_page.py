"""What a /metrics page costs the server whatever clients name things
(docs/operations.md §1): label values are capped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ipc_client import IPCClient
from ipc_protocol import NoResponders
from ipc_server import IPCServer

from .conftest import WAIT_S
from .http_probe import get
from .prometheus_text import parse

MAX_LABEL_BYTES = 128  # documented (docs/operations.md §1), written here so the test reads as the rule
LONG_APP = "€" * 250 + "app"  # 253 characters, 753 bytes (the limit is 256 characters)


@pytest.fixture
async def server() -> AsyncIterator[IPCServer]:
    async with IPCServer("127.0.0.1", 0, metrics_port=0) as server:
        assert server.metrics is not None and server.metrics.port
        yield server


def long_channel(i: int) -> str:
    return ("€" * 250 + "." + "€" * 250 + f".{i:09d}")[:512]  # the longest a channel may be, 1.5 KB


async def test_long_app_and_channel_names_keep_every_line_short_and_their_series_apart(server: IPCServer) -> None:
    """Before, each of a series' 19 lines carried both names whole: 2.3 KB
    a line here, and 500 such series made a 23 MB page."""
    async with IPCClient(LONG_APP, "127.0.0.1", server.port) as client:
        for i in range(10):
            with pytest.raises(NoResponders):
                await client.request(long_channel(i), None, timeout=WAIT_S)
    reply = await get(server.metrics.port, "/metrics")  # type: ignore[union-attr, arg-type]
    assert reply.status == 200
    assert max(len(line) for line in reply.body.split(b"\n")) < 3 * MAX_LABEL_BYTES
    requests = parse(reply.text)["ipc_requests_total"].matching(outcome="no_responders")
    assert len(requests) == 10 and all(value == 1 for _, value in requests)  # ten channels, ten series
    for labels, _ in requests:
        assert len(labels["app"].encode()) <= MAX_LABEL_BYTES and len(labels["channel"].encode()) <= MAX_LABEL_BYTES
        assert labels["app"].startswith("€" * 39) and "\ufffd" not in labels["app"] + labels["channel"]
