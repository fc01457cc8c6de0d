"""A real server on its own loop in a thread, for the blocking facade's
tests (test_sync_client.py, test_sync_iterators.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ipc_client import SyncIPCClient
from ipc_protocol import Message
from ipc_server import IPCServer

WAIT_S = 5.0


class ThreadedServer:
    """An IPCServer on its own loop in a thread, for tests that block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2, no_responders_grace_s=0)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(WAIT_S)
        self.port = self.server.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(WAIT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


@pytest.fixture
def tserver() -> Iterator[ThreadedServer]:
    srv = ThreadedServer()

    async def never(msg: Message) -> None:
        await asyncio.Event().wait()

    srv.server.add_handler("echo", lambda msg: msg.payload)
    srv.server.add_handler("never", never)
    yield srv
    srv.stop()


@pytest.fixture
def sync_client(tserver: ThreadedServer) -> Iterator[SyncIPCClient]:
    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    c.connect()
    yield c
    c.close()
