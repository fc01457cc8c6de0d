"""Binary payloads over TLS (docs/protocol.md §16.4, docs/security.md §2):
a large binary frame goes out a window at a time, the transport's limits
lowered meanwhile so that it says ``pause_writing`` once it holds what the
socket left and ``resume_writing`` once it holds nothing. A TLS transport
pauses when what it holds reaches its high-water mark, not when it passes
it: at zero it paused at once, holding nothing, and never resumed, so no
binary frame of 64 KiB or more went through TLS either way. Both loops
(asyncio's and uvloop's TLS transports are apart), every hop: the client
to the server, the server's in-process handler back, a responder client,
a subscriber."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol.write_queue import WINDOW_BYTES
from tests.test_tls import PKI, pki, run, tls_server  # noqa: F401  (pki and run are fixtures)

SIZES = [70_000, 3 * WINDOW_BYTES + 5]


@pytest.mark.parametrize("size", SIZES)
def test_binary_payloads_go_both_ways_through_tls(pki: PKI, run: Callable[..., Any], size: int) -> None:
    data = os.urandom(size)

    async def main() -> None:
        async with tls_server(pki) as server:
            options: dict[str, Any] = {"tls_ca": pki.ca, "request_timeout": 10.0}
            async with IPCClient("app", "127.0.0.1", server.port, **options) as caller, IPCClient("app", "127.0.0.1", server.port, **options) as other:
                assert await caller.request("echo", {"b": data, "n": 1}) == {"b": data, "n": 1}  # in-process handler
                await other.serve("py.echo", lambda msg: msg.payload)
                assert await caller.request("py.echo", data) == data  # through a responder, both ways
                got: asyncio.Queue[Any] = asyncio.Queue()
                await other.subscribe("files", lambda msg: got.put_nowait(msg.payload))
                assert await caller.publish("files", [data], ack=True) == 1
                assert await asyncio.wait_for(got.get(), 10.0) == [data]

    run(main())
