"""Fixtures: a real server on a free port, clients, a raw TCP peer, and a
server in its own process for signal and restart tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import FrameDecoder, Message, decode_message, encode_frame
from ipc_server import IPCServer

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 5.0  # upper bound for anything that should happen "soon"


@pytest.fixture
async def server() -> AsyncIterator[IPCServer]:
    # no_responders at once, as outside a restart (the grace: tests/test_grace.py)
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.5, no_responders_grace_s=0) as srv:
        yield srv


@pytest.fixture
async def make_client(server: IPCServer) -> AsyncIterator[Callable[..., Any]]:
    clients: list[IPCClient] = []

    async def make(app_id: str = "app", *, connect: bool = True, **kwargs: Any) -> IPCClient:
        kwargs.setdefault("port", server.port)
        client = IPCClient(app_id, "127.0.0.1", **kwargs)
        clients.append(client)
        if connect:
            await client.connect()
        return client

    yield make
    for c in clients:
        await c.disconnect()


class RawPeer:
    """A bare TCP peer speaking frames by hand, for input a real client never sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(None)
        self.frames: list[Message] = []

    @classmethod
    async def open(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, obj: dict[str, Any]) -> None:
        self.writer.write(encode_frame(json.dumps(obj).encode()))

    async def handshake(self, app_id: str = "app", *, protocol: int | None = 2) -> Message:
        payload: dict[str, Any] = {"action": "connect", "connection_id": "raw"}
        if protocol is not None:
            payload["protocol"] = protocol
        self.send(frame("request", "system", payload, app_id=app_id, message_id="hello"))
        return await self.recv()

    async def recv(self, timeout: float = WAIT_S) -> Message:
        """Next frame, or raise EOFError when the server closed the connection."""
        async with asyncio.timeout(timeout):
            while not self.frames:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("connection closed")
                self.frames += [decode_message(b) for b in self.decoder.feed(data)]
        return self.frames.pop(0)

    async def recv_until(self, pred: Callable[[Message], bool], timeout: float = WAIT_S) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if pred(msg):
                    return msg

    async def closed(self, timeout: float = WAIT_S) -> list[Message]:
        """Read until EOF; return what arrived before it."""
        got: list[Message] = []
        try:
            while True:
                got.append(await self.recv(timeout))
        except EOFError:
            return got

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def until(pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait for ``pred`` to hold, looking every 5 ms; TimeoutError past ``timeout``."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


def counting_until_closed(closed: asyncio.Event) -> Callable[[Message], AsyncIterator[int]]:
    """A stream handler that yields 0, 1, 2, ... as long as it is read and
    sets ``closed`` once its generator is closed (a cancel, its consumer gone)."""

    async def endless(msg: Message) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    return endless


def frame(mtype: str, channel: str, payload: Any = None, *, app_id: str = "app", message_id: str = "m", **extra: Any) -> dict[str, Any]:
    return {"message_id": message_id, "app_id": app_id, "channel_id": channel, "message_type": mtype, "payload": payload, "timestamp": 0, **extra}


@pytest.fixture
async def raw(server: IPCServer) -> AsyncIterator[Callable[[], Any]]:
    peers: list[RawPeer] = []

    async def make() -> RawPeer:
        peer = await RawPeer.open(server.port)
        peers.append(peer)
        return peer

    yield make
    for p in peers:
        await p.close()


class ServerProcess:
    """``python -m ipc_server`` (or a script) in its own process."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.first_line = ""

    async def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 20)  # type: ignore[union-attr]
        if "listening on" not in line:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            raise RuntimeError(f"server did not start: {line!r} {err}")
        self.first_line = line.strip()
        self.port = int(self.first_line.rsplit(":", 1)[1])
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            if stream:
                stream.close()


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Any]]:
    procs: list[ServerProcess] = []

    async def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        p = ServerProcess(list(args), env)
        procs.append(p)
        return await p.start()

    yield start
    for p in procs:
        p.stop()
