"""The whole job queue in one command: server, manager, producer and workers.

What it shows: the same processes you would start by hand (see manager.py),
each with its output prefixed by its name: the server on a free port, the
manager, the Node producer (its jobs wait, since no worker is up yet), then
a Node and a Python worker. It stops everything once the producer has
printed the summary.

Run it from the repository root (needs ``node`` on the PATH, or NODE):

    .venv/bin/python examples/job-queue/run.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE = os.environ.get("NODE") or shutil.which("node") or shutil.which("nodejs") or "node"


class Process:
    """A child process whose stdout lines are printed with its name in front."""

    def __init__(self, name: str, *argv: str, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: asyncio.subprocess.Process | None = None
        self.pump: asyncio.Task[None] | None = None
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    async def start(self) -> Process:
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE, env=self.env)
        self.pump = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode():
            print(f"[{self.name:<8}] {line}", end="", flush=True)
            self.lines.append(line)
            self.changed.set()

    async def line(self, prefix: str, timeout: float = 15) -> str:
        """The first line (printed so far or later) starting with ``prefix``."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                self.changed.clear()
                await self.changed.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except (asyncio.TimeoutError, TimeoutError):
                self.proc.kill()
                await self.proc.wait()
        if self.pump is not None:
            await self.pump


async def main() -> None:
    host = os.environ.get("IPC_HOST", "127.0.0.1")
    started: list[Process] = []

    async def start(name: str, *argv: str, env: dict[str, str] | None = None) -> Process:
        proc = await Process(name, *argv, env=env).start()
        started.append(proc)
        return proc

    try:
        server = await start("server", sys.executable, "-m", "ipc_server", "--host", host, "--port", "0", "--log-level", "WARNING")
        port = (await server.line("ipc_server listening on ")).strip().rsplit(":", 1)[1]
        env = {**os.environ, "IPC_HOST": host, "IPC_PORT": port, "PYTHONUNBUFFERED": "1"}
        manager = await start("manager", sys.executable, str(HERE / "manager.py"), env=env)
        await manager.line("manager ready")
        producer = await start("producer", NODE, str(HERE / "producer.js"), env=env)
        await producer.line("submitted 6 jobs")
        workers = [
            await start("node-w", NODE, str(HERE / "worker.js"), "node-w", env=env),
            await start("py-w", sys.executable, str(HERE / "worker.py"), "py-w", env=env),
        ]
        for worker in workers:
            await worker.line("worker ")
        assert producer.proc is not None
        code = await asyncio.wait_for(producer.proc.wait(), 60)
        if code:
            raise SystemExit(f"the producer exited with {code}")
    finally:
        for proc in reversed(started):  # workers and manager first, the server last
            await proc.stop()


if __name__ == "__main__":
    asyncio.run(main())
