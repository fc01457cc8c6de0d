"""Start a handler's call, at once where Python allows it.

An in-process handler such as an echo finishes without ever waiting. On
Python 3.12+ its task's first step runs at once (``eager_start``): a handler
that never waits costs no loop iteration, and finishes (and is answered)
before this returns.

Python 3.11 cannot run a task's first step at once and keep the task
current while it runs (``asyncio.timeout()``, ``TaskGroup`` and
``current_task()`` in a handler need it). An ``async def`` whose body has
no ``await``, ``async for`` or ``async with`` needs no task of its own,
though: its code has no ``YIELD_VALUE``, so it finishes in its first step
and nothing in it can wait on a task. Such a handler runs at once
(:class:`AtOnce`), in a copy of the context as a task would, with a
stand-in task current (libraries that tell asyncio by ``current_task()``
find one); a task costs ~1.4 µs more per call (docs/performance.md). Every
other handler waits for its task's first step in the next loop iteration.
"""

from __future__ import annotations

import asyncio
import contextvars
import dis
import inspect
import sys
import types
from asyncio import tasks
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["AtOnce", "never_waits", "start_eagerly"]

_EAGER = sys.version_info >= (3, 12)
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]


def start_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """A task running ``coro``, or None when it already finished (3.12+)."""
    if _EAGER:
        task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        return None if task.done() else task
    return loop.create_task(coro)


def never_waits(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s coroutine always finishes in its first step and
    :class:`AtOnce` should run it (Python 3.11): an ``async def`` function
    or method whose own code never yields. Anything else (a callable
    object, a ``functools.partial``, a decorated function that awaits the
    one it wraps) gets a task."""
    if _EAGER:  # eager tasks do the same and keep the handler's own task current
        return False
    func = fn.__func__ if isinstance(fn, types.MethodType) else fn
    if not isinstance(func, types.FunctionType) or not func.__code__.co_flags & inspect.CO_COROUTINE:
        return False
    return all(ins.opcode != _YIELD_VALUE for ins in dis.get_instructions(func.__code__))


class AtOnce:
    """Runs coroutines that never wait (:func:`never_waits`) to their end
    now, as their own task would, on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stand_in: asyncio.Task[None] | None = None

    def possible(self) -> bool:
        """False while a task runs (a call from a task's code): then the
        call gets a task of its own rather than the caller's as current."""
        return asyncio.current_task(self._loop) is None

    def finish(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """``coro``'s result; raises what it raised."""
        loop = self._loop
        stand_in = self._stand_in
        if stand_in is None:
            stand_in = self._stand_in = loop.create_task(_stand_in(), name="ipc_server handler run at once")
        tasks._enter_task(loop, stand_in)
        try:
            contextvars.copy_context().run(coro.send, None)
        except StopIteration as done:
            return done.value
        finally:
            tasks._leave_task(loop, stand_in)
        coro.close()  # it yielded after all (its code was replaced): never resumed
        raise RuntimeError("a handler that never awaits waited")


async def _stand_in() -> None:
    """The task ``current_task()`` gives in a handler run at once."""
