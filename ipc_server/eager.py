"""Start a coroutine at once, and make a task of it only if it suspends.

An in-process handler such as an echo finishes without ever waiting: giving
it a task costs a task object, a loop iteration and a callback per request
(asyncio's ``create_task`` schedules the first step for later). Python 3.12
has this built in (``Task(..., eager_start=True)``); this is the same for
3.11: the first step runs now, in a copy of the current context as a task's
would, and only a coroutine that is still running afterwards gets a task,
which resumes it exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start_eagerly"]

_BUILT_IN = sys.version_info >= (3, 12)


def start_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first suspends; return the task that finishes it,
    or None when it already has finished. Its exceptions surface as a task's
    would: through the task, or, when it finished at once, raised here (the
    callers' coroutines catch everything themselves)."""
    if _BUILT_IN:
        task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        return None if task.done() else task
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_Resumed(coro, waiting_on).run(), context=context)


class _Resumed:
    """Drives a started coroutine from where it suspended: the future it
    yielded goes up to the task, and what the task sends or throws goes
    down to the coroutine (what ``yield from`` does)."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    async def run(self) -> None:
        await self

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self._coro, self._waiting_on
        self._waiting_on = None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and the rest: into the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return
