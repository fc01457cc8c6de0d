"""The server's log lines leave the event loop through a bounded queue
(docs/operations.md §4): a sink that stops reading (stderr a pipe nobody
reads) blocked the loop in its write, and after about 100 lines the server
answered nobody. A thread writes the queued lines; when the queue is full a
line is dropped and counted, and once the queue drains one line says how
many were. The process's exit writes what is queued (``stop``), waiting
2 s at most for a sink that does not read (``finish_logging``).
"""

from __future__ import annotations

import atexit
import copy
import logging
import logging.handlers
import queue
import threading

__all__ = ["QUEUE_LINES", "QueuedSink", "finish_logging"]

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
        self._count = threading.Lock()
        self._writer = _Writer(self)
        self._writer.start()
        atexit.register(self.stop)

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
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._count:
                self.dropped += 1

    def report_dropped(self) -> None:
        with self._count:
            n, self.dropped = self.dropped, 0
        if n:
            record = logging.LogRecord("ipc_server", logging.WARNING, __file__, 0, "%d log lines dropped: the log output did not keep up", (n,), None)
            self.target.handle(record)

    def stop(self) -> bool:
        """Write what is queued, within a bound, then stop the thread;
        False if the sink still does not read (its writer is stuck)."""
        atexit.unregister(self.stop)
        writer = self._writer
        if writer._thread is None:
            return True
        try:
            self.queue.put(writer._sentinel, timeout=_STOP_WAIT_S)  # type: ignore[attr-defined]
        except queue.Full:
            return False
        writer._thread.join(_STOP_WAIT_S)
        if writer._thread.is_alive():
            return False
        writer._thread = None
        self.report_dropped()
        return True

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)


def finish_logging() -> bool:
    """At the command's end: write the root logger's queued lines; False
    if its sink does not read, when only ``os._exit`` ends the process (a
    normal exit would flush stderr, and wait for the sink, forever)."""
    done = True
    for handler in logging.getLogger().handlers:
        if isinstance(handler, QueuedSink):
            done = handler.stop() and done
    return done
