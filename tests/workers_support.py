"""``python -m ipc_server --workers 2`` in a process of its own, for the
tests of the supervisor (docs/cluster.md §7), and clients on each worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from ipc_client import IPCClient

from .nats_support import ROOT

WAIT_S = 15.0


class Supervisor:
    """The supervisor: its port, its workers' lines and its log."""

    def __init__(self, *args: str) -> None:
        self.argv = [sys.executable, "-m", "ipc_server", "--workers", "2", "--host", "127.0.0.1", "--port", "0",
                     "--log-level", "INFO", "--shutdown-grace", "0.5", *args]  # fmt: skip
        self.log = tempfile.TemporaryFile()
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.pids: dict[str, int] = {}  # worker index -> pid
        self.names: dict[str, str] = {}  # worker index -> node name
        self.metrics: dict[str, str] = {}  # worker index -> its /metrics URL, with --metrics-port
        self.clients: list[IPCClient] = []

    async def start(self) -> Supervisor:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE, stderr=self.log, cwd=ROOT, env=env)
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode()
        assert first.startswith("ipc_server listening on 127.0.0.1:"), self.stderr()
        self.port = int(first.rsplit(":", 1)[1])
        for _ in range(2):  # "ipc_server worker 1 pid N node NAME on ADDR"
            words = (await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode().split()
            self.pids[words[2]], self.names[words[2]] = int(words[4]), words[6]
        for _ in range(2 if "--metrics-port" in self.argv else 0):  # "ipc_server worker 1 metrics on URL"
            words = (await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode().split()
            assert words[:2] == ["ipc_server", "worker"] and words[3:5] == ["metrics", "on"], words
            self.metrics[words[2]] = words[5]
        return self

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    async def client_on_each_worker(self) -> dict[str, IPCClient]:
        """A connected client on each worker, by worker index (the kernel
        spreads them; 40 tries: 2^-39 that one worker gets none)."""
        by_node: dict[str, IPCClient] = {}
        for _ in range(40):
            client = IPCClient("app", "127.0.0.1", self.port, initial_delay=0.05, max_delay=0.5)
            self.clients.append(client)
            await asyncio.wait_for(client.connect(), WAIT_S)
            by_node.setdefault((await client.system("stats"))["cluster"]["node"], client)
            if len(by_node) == 2:
                break
        assert sorted(by_node) == sorted(self.names.values())
        return {index: by_node[name] for index, name in self.names.items()}

    async def stop(self) -> int:
        """Disconnect the clients, then Ctrl-C: every worker stops, then nats-server; the exit code."""
        for client in self.clients:
            await asyncio.wait_for(client.disconnect(), WAIT_S)
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        return await asyncio.wait_for(self.proc.wait(), WAIT_S)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


__all__ = ["Supervisor", "gone", "WAIT_S"]
