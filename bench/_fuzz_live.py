"""The live part of the fuzz run (bench/fuzz.py): a real server
(``python -m ipc_server`` on 127.0.0.1, port 0) fed hostile connections
(bench/_fuzz_hostile.py) while well-behaved clients (bench/_fuzz_good.py)
work beside them. The server must never crash (alive, and answering at the
end), never log an error or a traceback, answer every hostile batch or
close the connection, and the good clients must see zero errors."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from _fuzz_good import GoodClients
from _fuzz_hostile import HostileCounts, burst, hostile_connection, silent_sockets

__all__ = ["ServerProcess", "run_live"]

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MAX_CONNECTIONS = 64  # low, so the bursts meet the limit
BURST_SIZE = 80
HANDSHAKE_TIMEOUT_S = 2.0
BACKGROUND_EVERY_S = 3.0  # a burst and two silent sockets this often


class ServerProcess:
    """``python -m ipc_server`` in a subprocess; its log kept for the verdict."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="fuzz-server-")
        self.returncode: int | None = None

    async def start(self) -> int:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        argv = [
            sys.executable, "-m", "ipc_server", "--host", HOST, "--port", "0", "--log-level", "WARNING",
            "--max-connections", str(MAX_CONNECTIONS), "--handshake-timeout", str(HANDSHAKE_TIMEOUT_S),
        ]  # fmt: skip
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=self._log, env=env, cwd=str(REPO_ROOT)
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30.0)
        if not line.startswith(b"ipc_server listening on "):
            raise RuntimeError(f"the server did not start: {line!r}\n{self.log_text()[-2000:]}")
        self.port = int(line.rsplit(b":", 1)[1])
        return self.port

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> int | None:
        """SIGTERM, a bounded wait, then SIGKILL; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15.0)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        self.returncode = proc.returncode
        return self.returncode

    def log_text(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def log_summary(self) -> dict[str, Any]:
        """Log lines by level (``asctime LEVEL name: message``); anything else
        (a traceback's lines, asyncio's "Exception in callback") is ``other``."""
        levels: Counter[str] = Counter()
        bad: list[str] = []
        for line in self.log_text().splitlines():
            parts = line.split(" ", 3)
            level = parts[2] if len(parts) > 3 and parts[2].isupper() and parts[2].isalpha() else "other"
            levels[level] += 1
            if level not in ("DEBUG", "INFO", "WARNING") and len(bad) < 20:
                bad.append(line[:300])
        return {"lines_by_level": dict(levels), "errors_and_other": bad}

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        self._log.close()


async def run_live(
    frames: int, seconds: float, seed: int, codes: frozenset[str], *, workers: int = 8, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Hostile connections until ``frames`` hostile frames are sent or
    ``seconds`` pass, the good clients working throughout; the counts and
    the verdict (``breaches``: what broke the invariant)."""
    server = ServerProcess()
    counts = HostileCounts()
    stop = asyncio.Event()
    started = time.monotonic()
    try:
        port = await server.start()
        good = GoodClients(HOST, port, seed)
        await good.start()
        good_task = asyncio.create_task(good.run(stop))
        serial = iter(range(1, 1 << 62))

        async def worker(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while not stop.is_set():
                await hostile_connection(rng, port, counts, codes, stop, next(serial))

        async def background() -> None:
            rng = random.Random(seed * 1000 + 999)
            while not stop.is_set():
                await asyncio.gather(burst(rng, port, counts, codes, BURST_SIZE, next(serial)), silent_sockets(port, counts, codes, HANDSHAKE_TIMEOUT_S))
                try:
                    await asyncio.wait_for(stop.wait(), BACKGROUND_EVERY_S)
                except asyncio.TimeoutError:
                    pass

        tasks = [asyncio.create_task(worker(i)) for i in range(workers)] + [asyncio.create_task(background())]
        next_report = started + 10.0
        while counts.frames_sent < frames and time.monotonic() - started < seconds and server.alive():
            await asyncio.sleep(0.1)
            if time.monotonic() >= next_report:
                next_report += 10.0
                progress(f"server: {counts.frames_sent} hostile frames, {counts.connections} connections, good calls {good.requests} ({good.errors} errors), {time.monotonic() - started:.0f} s")
        stop.set()
        hostile_seconds = time.monotonic() - started
        done, pending = await asyncio.wait(tasks, timeout=60.0)
        for task in pending:
            task.cancel()
            counts.anomaly("stalled", "a hostile task still running 60 s after the stop")
        for task in done:
            if task.exception() is not None:
                counts.anomaly("harness", repr(task.exception()))
        await good_task
        alive_at_end = server.alive()
        good_report = await good.finish() if alive_at_end else {"errors": "the server died", "error_examples": []}
    finally:
        exit_status = await server.stop()
        log = server.log_summary()
        server.close()
    breaches = []
    if not alive_at_end:
        breaches.append(f"the server died (exit status {exit_status})")
    if good_report.get("errors"):
        breaches.append(f"the good clients saw {good_report['errors']} errors: {good_report.get('error_examples')}")
    if counts.anomalies:
        breaches.append(f"hostile side: {dict(counts.anomalies)}: {counts.examples}")
    if log["errors_and_other"]:
        breaches.append(f"the server logged errors: {log['errors_and_other'][:5]}")
    if exit_status not in (0, None):
        breaches.append(f"the server exited with status {exit_status} on SIGTERM")
    return {
        "frames": counts.frames_sent,
        "seconds": round(hostile_seconds, 1),
        "stopped_by": "frames" if counts.frames_sent >= frames else "time",
        "workers": workers,
        "hostile": counts.report(),
        "good": good_report,
        "server_log": log,
        "server_exit_status": exit_status,
        "breaches": breaches,
    }
