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
import types

import pytest

from ipc_client import IPCClient
from ipc_server import log_sink
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


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass


def test_records_after_stop_are_written_directly() -> None:
    """Before, a record logged after ``stop()`` (``finish_logging()`` at the
    command's exit, then the interpreter's shutdown) was queued for a
    thread that had ended, and never written."""
    stream = _Lines()
    target = logging.StreamHandler(stream)  # type: ignore[arg-type]
    target.setFormatter(TextFormatter())
    sink = QueuedSink(target)
    log = logging.getLogger("test.sink.after")
    log.addHandler(sink)
    log.propagate = False
    try:
        log.warning("before")
        assert sink.stop()
        log.warning("after")
    finally:
        log.removeHandler(sink)
    assert [line.split(": ", 1)[1] for line in "".join(stream.lines).splitlines()] == ["before", "after"]
    assert sink.queue.empty()


def test_stop_waits_its_bound_in_all_not_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, ``stop()`` could wait 2 s to queue its sentinel, then 2 s
    more for the thread: 4 s where the docs say 2. Here the put "takes"
    1.9 s of an injected clock: the join gets what is left of the 2."""
    clock = iter([100.0, 101.9])
    monkeypatch.setattr(log_sink, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(log_sink, "_STOP_WAIT_S", 2.0)
    stream = _Stalled()
    target = logging.StreamHandler(stream)  # type: ignore[arg-type]
    sink = QueuedSink(target)
    log = logging.getLogger("test.sink.bound")
    log.addHandler(sink)
    log.propagate = False
    waits: list[float | None] = []
    try:
        log.warning("stuck")
        assert stream.entered.wait(WAIT_S)  # the writer is stuck in it
        thread = sink._writer._thread
        assert thread is not None
        join = thread.join
        thread.join = lambda timeout=None: (waits.append(timeout), join(timeout))[1]  # type: ignore[method-assign]
        assert not sink.stop()  # the sink still does not read
    finally:
        log.removeHandler(sink)
        stream.release.set()
    assert len(waits) == 1 and waits[0] is not None and waits[0] == pytest.approx(0.1)


def test_a_forked_child_writes_its_lines() -> None:
    """Before, a child made by ``os.fork`` (multiprocessing's default on
    Linux) after ``configure_logging()`` queued its lines for a writer
    thread that did not survive the fork: they were never written."""
    script = (
        "import logging, multiprocessing\n"
        "from ipc_server.logs import configure_logging\n"
        "def child():\n"
        "    logging.getLogger('app.child').warning('line from the forked child')\n"
        "if __name__ == '__main__':\n"
        "    configure_logging('info')\n"
        "    logging.getLogger('app').warning('line from the parent')\n"
        "    p = multiprocessing.get_context('fork').Process(target=child)\n"
        "    p.start(); p.join(30)\n"
        "    print('exit', p.exitcode)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S * 6)
    assert done.stdout.strip() == "exit 0", done
    assert "line from the parent" in done.stderr and "line from the forked child" in done.stderr, done.stderr


def test_drain_waits_for_the_queued_lines_within_its_bound() -> None:
    stream = _Stalled()
    target = logging.StreamHandler(stream)  # type: ignore[arg-type]
    target.setFormatter(TextFormatter())
    sink = QueuedSink(target)
    log = logging.getLogger("test.sink.drain")
    log.addHandler(sink)
    log.propagate = False
    try:
        log.warning("queued")
        assert stream.entered.wait(WAIT_S)  # the writer is stuck in it
        assert not sink.drain(0.05)  # a sink that does not read: it gives up
        stream.release.set()
        assert sink.drain(WAIT_S) and stream.lines and "queued" in stream.lines[-1]
        assert sink.stop()
    finally:
        log.removeHandler(sink)


def test_the_commands_error_line_comes_after_the_lines_logged_before_it() -> None:
    """Before, "cannot listen on ..." was printed at once while log lines
    logged before it still waited in the queue: on one stderr it came
    before them (1-3 runs of 10; every run with a sink this slow)."""
    script = (
        "import logging, socket, sys, threading\n"
        "held = socket.socket(); held.bind(('127.0.0.1', 0)); held.listen()\n"
        "emit = logging.StreamHandler.emit\n"
        "def slow(self, record):  # a sink slower than the command\n"
        "    threading.Event().wait(0.3)\n"
        "    emit(self, record)\n"
        "logging.StreamHandler.emit = slow\n"
        "from ipc_server.command import main\n"
        "sys.exit(main(['--port', str(held.getsockname()[1]), '--log-level', 'debug']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S * 6)
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) >= 2, done
    assert "cannot listen on 127.0.0.1:" in lines[-1], lines
