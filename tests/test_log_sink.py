"""A log sink that stops reading does not stop the server
(docs/operations.md §4): its lines wait in a bounded queue written by a
thread; past the bound they are dropped and counted. Before, a stderr
pipe nobody read blocked the event loop in its write after ~100 lines."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading

from ipc_client import IPCClient
from ipc_server.log_sink import QueuedSink
from ipc_server.logs import TextFormatter

from .conftest import ROOT, WAIT_S


class _Stalled:
    """A stream whose writes wait until it is released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.entered.set()
        assert self.release.wait(WAIT_S)
        self.lines.append(text)

    def flush(self) -> None:
        pass


def test_a_full_queue_drops_lines_and_says_how_many() -> None:
    stream = _Stalled()
    target = logging.StreamHandler(stream)  # type: ignore[arg-type]
    target.setFormatter(TextFormatter())
    sink = QueuedSink(target, size=3)
    log = logging.getLogger("test.sink")
    log.addHandler(sink)
    log.propagate = False
    try:
        log.warning("first")
        assert stream.entered.wait(WAIT_S)  # the writer is stuck in it
        for i in range(9):
            log.warning("line %d", i)  # returns at once: 3 queued, 6 dropped
        assert sink.dropped == 6
        stream.release.set()
        sink.stop()  # writes what is queued
    finally:
        log.removeHandler(sink)
    text = "".join(stream.lines)
    assert [line.split(": ", 1)[1] for line in text.splitlines()] == ["first", "line 0", "line 1", "line 2", "6 log lines dropped: the log output did not keep up"]


async def test_a_stderr_nobody_reads_does_not_stop_the_server() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipc_server", "--port", "0", "--shutdown-grace", "0.5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # stderr: a pipe this test never reads (64 KiB, about 400 lines)
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), WAIT_S)
        port = int(first.rsplit(":", 1)[1])
        for _ in range(600):  # two lines each, opened and closed: 1,200 lines
            async with IPCClient("shop", "127.0.0.1", port, reconnect=False, connect_timeout=WAIT_S) as client:
                pass
        async with IPCClient("shop", "127.0.0.1", port, reconnect=False, connect_timeout=WAIT_S) as client:
            assert (await client.request("system", {"action": "ping"}, timeout=WAIT_S)) is not None
        proc.terminate()  # and it still ends, its stderr unread (the sink is given 2 s)
        assert await asyncio.to_thread(proc.wait, WAIT_S * 2) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT_S)
