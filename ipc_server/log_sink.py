"""The server's log lines leave the event loop through a bounded queue
(docs/operations.md §4): a sink that stops reading (stderr a pipe nobody
reads) blocked the loop in its write, and after about 100 lines the server
answered nobody. A thread writes the queued lines; when the queue is full a
line is dropped and counted, and once the queue drains one line says how
many were. The process's exit writes what is queued (``stop``), waiting
2 s at most in all for a sink that does not read (``finish_logging``).

Once stopped, the sink hands each record to its target at once: nothing
reads the queue any more (lines logged at the interpreter's shutdown). A
child made by ``os.fork`` has no writer thread (threads do not survive a
fork) and often ends in ``os._exit`` (multiprocessing), which writes no
queue: its sinks write directly too.
"""

from __future__ import annotations

import atexit
import copy
import logging
import logging.handlers
import os
import queue
import threading
import time
import weakref

__all__ = ["QUEUE_LINES", "QueuedSink", "drain_logging", "finish_logging"]

QUEUE_LINES = 10_000
_STOP_WAIT_S = 2.0  # at exit, for a sink that does not read: the process still ends
_plain = logging.Formatter()


class _Writer(logging.handlers.QueueListener):
    """Writes queued records to the real handler; says what was dropped."""

    def __init__(self, sink: QueuedSink) -> None:
        super().__init__(sink.queue, sink.target)
        self.sink = sink

    def handle(self, record: logging.LogRecord) -> None:
        super().handle(record)
        if self.sink.dropped and self.sink.lines.empty():
            self.sink.report_dropped()


class QueuedSink(logging.handlers.QueueHandler):
    """The root logger's handler: puts records on the queue, never waits."""

    def __init__(self, target: logging.Handler, size: int = QUEUE_LINES) -> None:
        self.lines: queue.Queue[logging.LogRecord] = queue.Queue(size)
        super().__init__(self.lines)
        self.target = target
        self.dropped = 0
        self.stopped = False  # then records go to ``target`` at once
        self._lock = threading.Lock()  # ``dropped``; ``stopped`` against a record being queued
        self._writer = _Writer(self)
        self._writer.start()
        atexit.register(self.stop)
        _sinks.add(self)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The message and traceback as text now (its arguments may change),
        the fields kept, for the real handler's formatter to format."""
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = _plain.formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        with self._lock:
            if not self.stopped:
                try:
                    self.queue.put_nowait(record)
                except queue.Full:
                    self.dropped += 1
                return
        self.target.handle(record)

    def report_dropped(self) -> None:
        with self._lock:
            n, self.dropped = self.dropped, 0
        if n:
            record = logging.LogRecord("ipc_server", logging.WARNING, __file__, 0, "%d log lines dropped: the log output did not keep up", (n,), None)
            self.target.handle(record)

    def stop(self) -> bool:
        """Write what is queued within ``_STOP_WAIT_S`` in all, stop the
        thread, then write later records directly; False if the sink still
        does not read (its writer is stuck: records keep being queued)."""
        atexit.unregister(self.stop)
        writer = self._writer
        if self.stopped or writer._thread is None:
            return True
        deadline = time.monotonic() + _STOP_WAIT_S
        try:
            self.queue.put(writer._sentinel, timeout=_STOP_WAIT_S)  # type: ignore[attr-defined]
        except queue.Full:
            return False
        writer._thread.join(max(0.0, deadline - time.monotonic()))
        if writer._thread.is_alive():
            return False
        writer._thread = None
        with self._lock:  # records queued behind the sentinel, in order, before any direct one
            self.stopped = True
            while not self.lines.empty():
                self.target.handle(self.lines.get_nowait())
        self.report_dropped()
        return True

    def drain(self, timeout: float = _STOP_WAIT_S) -> bool:
        """Wait, ``timeout`` at most, until every line queued so far is
        written: before a message printed on the same stream (the
        command's "listening on", "cannot listen"), so it comes after
        them. False if the sink did not keep up in time."""
        if self.stopped:
            return True
        deadline = time.monotonic() + timeout
        lines = self.lines
        with lines.all_tasks_done:  # the writer marks each record done once written
            while lines.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                lines.all_tasks_done.wait(left)
        return True

    def _forked(self) -> None:
        """In a child of ``os.fork``: no writer thread; the parent writes
        what was queued, the child writes its own records directly."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self.queue = self.lines = queue.Queue(1)
        self.dropped = 0
        self.stopped = True

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)


_sinks: weakref.WeakSet[QueuedSink] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sink in list(_sinks):
        sink._forked()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def drain_logging(timeout: float = _STOP_WAIT_S) -> bool:
    """:meth:`QueuedSink.drain` for the root logger's sinks, ``timeout`` in all."""
    deadline = time.monotonic() + timeout
    done = True
    for handler in logging.getLogger().handlers:
        if isinstance(handler, QueuedSink):
            done = handler.drain(max(0.0, deadline - time.monotonic())) and done
    return done


def finish_logging() -> bool:
    """At the command's end: write the root logger's queued lines; False
    if its sink does not read, when only ``os._exit`` ends the process (a
    normal exit would flush stderr, and wait for the sink, forever)."""
    done = True
    for handler in logging.getLogger().handlers:
        if isinstance(handler, QueuedSink):
            done = handler.stop() and done
    return done
