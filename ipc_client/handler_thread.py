"""The one thread :class:`~ipc_client.sync.SyncIPCClient` runs its plain
handlers and event callbacks in, in arrival order.

A daemon thread, unlike a ``ThreadPoolExecutor``'s (which the interpreter
joins at exit): a handler still blocked when the program ends (waiting for
a message that never comes) must not keep the process alive, as the
client's own loop thread does not.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["HandlerThread"]

_STOP = object()


class HandlerThread:
    """Calls submitted functions one at a time, on a daemon thread started
    at the first one."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; dropped once :meth:`shutdown` was called."""
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._calls.put((fn, args))

    def shutdown(self) -> None:
        """Stop after the calls already queued; never waits (the garbage
        collector may call it on any thread, this one's too)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._calls.put(_STOP)

    def _run(self) -> None:
        calls = self._calls
        while (call := calls.get()) is not _STOP:
            fn, args = call
            fn(*args)
