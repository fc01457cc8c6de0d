"""Run a handler that cannot wait at once, with no task of its own (Python 3.11).

A handler runs in a task of its own, so that ``asyncio.timeout()``,
``TaskGroup`` and ``current_task()`` work in it. Python 3.12+ starts such a
task eagerly: its first step runs at once, and a handler that never waits
costs no loop iteration. Python 3.11 cannot run a task's first step at once
and keep the task current while it runs. An ``async def`` whose own code has
no ``YIELD_VALUE`` (no ``await``, ``async for`` or ``async with``) cannot
wait, though, so nothing in it can need a task of its own: on 3.11 it runs
at once (:class:`AtOnce`), in a copy of the context as a task would, with a
stand-in task current (libraries that tell asyncio by ``current_task()``
find one). A task and its step cost ~1.4 µs more (docs/performance.md).

The Python client's served requests and the server's in-process handlers
use it (Node has no tasks to spare: nothing to mirror).
"""

from __future__ import annotations

import asyncio
import contextvars
import dis
import functools
import inspect
import sys
import threading
import types
from asyncio import tasks
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ipc_protocol.contracts import AWAITS_ONLY_ATTR

__all__ = ["AtOnce", "HandlerCancelled", "answered_as", "is_async_function", "makes_generator", "never_waits", "propagates", "result_of"]

_EAGER = sys.version_info >= (3, 12)
# On 3.11 (where AtOnce runs) asyncio.current_task() is a Python function
# around this dict's get, the loop -> running task map the C task steps keep:
# half the cost, for every request a handler that never waits answers.
_RUNNING = getattr(tasks, "_current_tasks", None)
_current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    _RUNNING.get if isinstance(_RUNNING, dict) else asyncio.current_task
)
_enter_task, _leave_task = tasks._enter_task, tasks._leave_task
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
R = TypeVar("R")
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
_GENERATOR = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


class HandlerCancelled(Exception):
    """A handler's call ended in ``CancelledError`` that nothing of ours
    caused (no deadline, cancel or shutdown): answered as its failure, so
    the request still ends in one answer."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"the handler of {channel!r} was cancelled")


def propagates(exc: BaseException) -> bool:
    """Whether a handler's ``exc`` that is no ``Exception`` must stop the
    loop rather than be answered ``handler_error``: ``KeyboardInterrupt``
    and ``SystemExit`` on a loop in the main thread, where ``asyncio.run()``
    expects them to end the program. On a loop in another thread
    (``SyncIPCClient``'s own) they cannot end the program, only kill a loop
    nobody watches, leaving every call on it hanging: they are answered as
    any failure there, as ``GeneratorExit`` or a library's own
    ``BaseException`` are everywhere. ``CancelledError`` is decided by
    whoever cancelled (``HandlerCancelled``)."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit)) and threading.current_thread() is threading.main_thread()


def answered_as(exc: BaseException, channel: str) -> BaseException | None:
    """The failure a handler's ``exc`` that is no ``Exception`` is answered
    with, in the handler's task; None when it must propagate: a
    ``CancelledError`` of the task's own cancellation (a cancel, the
    connection's loss, ``disconnect()``: the request is settled already),
    or what ends the program (:func:`propagates`). A ``CancelledError`` the
    handler raised itself (it awaited a task someone else cancelled) is
    :class:`HandlerCancelled`, as in the server: every request ends in one
    answer (docs/protocol.md §6.3)."""
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return None if task is None or task.cancelling() else HandlerCancelled(channel)
    return None if propagates(exc) else exc


def is_async_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, fast for plain ``async def``: it runs for every served request."""
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        return True
    return inspect.iscoroutinefunction(fn)


def makes_generator(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a generator function, ``async`` or not (or an
    object's ``__call__`` is one). Calling it runs none of its code, so a
    handler that is one is called on the loop, not in a handler thread:
    a cancel that comes while a thread made the generator would find a
    call out of its reach (docs/protocol.md §15.4)."""
    code = getattr(fn, "__code__", None)  # a function, a bound method: fast, for every served request
    if code is None:
        call = fn if isinstance(fn, functools.partial) else getattr(type(fn), "__call__", None)
        return call is not None and (inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call))
    return bool(code.co_flags & _GENERATOR)


def never_waits(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s coroutine always finishes in its first step and
    :class:`AtOnce` should run it (Python 3.11): an ``async def`` function
    or method whose own code never yields. Anything else (a callable
    object, a ``functools.partial``, a decorated function that awaits the
    one it wraps) gets a task; the wrapper of a typed handler awaits only
    the handler, and never waits when the handler never does."""
    if _EAGER:  # eager tasks do the same and keep the handler's own task current
        return False
    func = fn.__func__ if isinstance(fn, types.MethodType) else fn
    if not isinstance(func, types.FunctionType) or not func.__code__.co_flags & inspect.CO_COROUTINE:
        return False
    awaited = getattr(func, AWAITS_ONLY_ATTR, None)  # a typed handler's wrapper (ipc_protocol.contracts)
    if awaited is not None:
        return never_waits(awaited)
    return all(ins.opcode != _YIELD_VALUE for ins in dis.get_instructions(func.__code__))


def result_of(coro: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine of a function that never waits, run to its
    end now; raises what it raised."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()  # it yielded after all (its code was replaced): never resumed
    raise RuntimeError("a handler that never awaits waited")


class AtOnce:
    """Runs code as a task's first step would run it, on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stand_in: asyncio.Task[None] | None = None

    def possible(self) -> bool:
        """False while a task runs (a call from a task's code): then the
        handler gets a task of its own rather than the caller's as current."""
        return _current_task(self._loop) is None

    def run(self, fn: Callable[[A, B, C], R], a: A, b: B, c: C) -> R:
        """``fn(a, b, c)`` in a copy of the context, with the stand-in task
        current. Three arguments, not ``*args``: ``Context.run(fn, *args)``
        costs ~140 ns more than a call with its arguments spelled out."""
        loop = self._loop
        stand_in = self._stand_in
        if stand_in is None:
            stand_in = self._stand_in = loop.create_task(_stand_in(), name="handler run at once")
        _enter_task(loop, stand_in)
        try:
            return contextvars.copy_context().run(fn, a, b, c)
        finally:
            _leave_task(loop, stand_in)


async def _stand_in() -> None:
    """The task ``current_task()`` gives in a handler run at once."""
