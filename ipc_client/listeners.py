"""Named event callbacks, shared by the client, the pool and the load
balancer: one place that decides what a failing or async callback does."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ipc_protocol import printable

__all__ = ["Listeners"]

log = logging.getLogger("ipc_client")
F = TypeVar("F", bound=Callable[..., Any])


class Listeners:
    """Callbacks by event name. A callback that raises never breaks its
    emitter: its exception goes to the ``error`` callbacks, or is logged when
    there are none (or an ``error`` callback raised it). An ``error`` emitted
    with no callback is logged too: errors are never silently dropped. A
    callback that returns an awaitable has it run as a task, by the
    emitter's ``spawn`` if it has one (so it is cancelled with the emitter's
    other tasks)."""

    def __init__(self, owner: str, events: tuple[str, ...], spawn: Callable[[Awaitable[Any]], asyncio.Future[Any]] | None = None) -> None:
        self._owner = owner
        self._callbacks: dict[str, list[Callable[..., Any]]] = {e: [] for e in events}
        self._spawn = spawn
        self._tasks: set[asyncio.Task[Any]] = set()  # strong references until done

    def add(self, event: str, callback: F) -> F:
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(self._callbacks)}")
        self._callbacks[event].append(callback)
        return callback

    def emit(self, event: str, *args: Any) -> None:
        callbacks = self._callbacks[event]
        if not callbacks and event == "error":
            log.warning("%s error with no error listener: %s", self._owner, printable(args[0] if args else None))
            return
        for cb in list(callbacks):
            try:
                result = cb(*args)
                if inspect.isawaitable(result):
                    if self._spawn is not None:
                        task = self._spawn(result)
                    else:
                        task = asyncio.ensure_future(result)
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    task.add_done_callback(functools.partial(self._finished, event))
            except Exception as exc:  # a broken callback must not break the emitter
                self._failed(event, exc)

    def _finished(self, event: str, task: asyncio.Future[Any]) -> None:
        """An async callback ended: its exception is reported as a sync one's."""
        if not task.cancelled() and task.exception() is not None:
            self._failed(event, task.exception())  # type: ignore[arg-type]

    def _failed(self, event: str, exc: BaseException) -> None:
        if event != "error" and self._callbacks.get("error"):
            log.debug("%s %s callback failed", self._owner, event, exc_info=exc)
            self.emit("error", exc)
        else:
            log.error("%s %s callback failed", self._owner, event, exc_info=exc)
