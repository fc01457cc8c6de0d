"""A Node process running ``node/agent.js``, the real js-client driven by
JSON commands on stdin (the ``node_agent`` fixture, conftest.py)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from interop_settings import LINE_LIMIT, NODE_DIR, ROOT, WAIT_S, changed_within


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
    async def start(cls, node: str, port: int, *, script: str = "agent.js", app_id: str = "app", connect: bool = True, **options: Any) -> NodeAgent:
        """``node/<script>`` (agent.js, or one with commands of its own) for ``port``."""
        config = json.dumps({"port": port, "appId": app_id, "options": options})
        log = tempfile.TemporaryFile()
        proc = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / script), config,
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
            await changed_within(self._changed, remaining)

    async def wait_events(self, name: str, count: int, *, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        return [await self.wait_event(name, timeout=timeout) for _ in range(count)]

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e["event"] == name)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), WAIT_S)
        self._reader.cancel()
