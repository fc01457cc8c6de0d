"""A requester that goes while the server does not read its socket (too
much of what it sent waits: docs/protocol.md §12) is noticed as any lost
peer (§6.2): its requests are dropped, its responder is sent cancel, its
place is freed. Over real loopback TCP, on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame
from .test_streams import until

_FRAME_BYTES = 60_000


def _run(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_name == "uvloop":
        pytest.importorskip("uvloop").run(main())
    else:
        asyncio.run(main())


async def _ghost(how: str) -> None:
    """A requester past its limit whose held frames passed max_frame_size
    (its socket not read), with megabytes more it wrote and the server never
    read, goes: ``close`` (its FIN queued behind those bytes: only a write
    to it draws the reset) or ``reset`` (an RST at once)."""
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=2, max_frame_size=64 * 1024, heartbeat_interval_s=0.1) as server:
        never = asyncio.Event()
        started: list[str] = []
        cancelled: list[str] = []

        async def stuck(msg: Message) -> Any:
            started.append(msg.payload[:1])
            try:
                await never.wait()
            except asyncio.CancelledError:
                cancelled.append(msg.payload[:1])
                raise

        async with IPCClient("app", "127.0.0.1", server.port, heartbeat_interval=0.1) as responder:
            await responder.serve("sink", stuck)
            peer = await RawPeer.open(server.port)
            await peer.handshake()
            body = "p" * _FRAME_BYTES
            for i in range(400):  # 24 MB: 2 in flight, 64 KiB held, the rest in the sockets' buffers
                peer.send(frame("request", "sink", body, message_id=f"r{i}", timeout_ms=3_600_000))
            ghost = next(c for c in server.connections if c.connection_id == "raw")
            sink = next(c for c in server.connections if c is not ghost)
            await until(lambda: ghost.reading_paused and ghost.inflight.count == 2, "the requester's reading paused")
            assert len(sink.serving) == 2 and peer.writer.transport.get_write_buffer_size() > 0  # bytes it could not send
            await until(lambda: len(started) == 2, "both handlers running")  # a cancel before a handler starts leaves nothing to cancel
            if how == "reset":
                peer.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.writer.transport.abort()
            await until(lambda: ghost not in server.connections, "the requester dropped", timeout=WAIT_S)
            await until(lambda: not sink.serving and len(cancelled) == 2, "its responder sent cancel", timeout=WAIT_S)
            assert ghost.close_reason is not None and "not read" in ghost.close_reason
            assert await responder.request("system", {"action": "ping"}, timeout=WAIT_S) is not None  # the responder is fine


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_requester_that_goes_while_not_read_is_dropped(loop_name: str, how: str) -> None:
    _run(loop_name, lambda: _ghost(how))


