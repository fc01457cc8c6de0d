"""Messages from NATS handed to their callback as they are read
(docs/cluster.md §2).

nats-py puts every message of a subscription that has a callback on an
asyncio queue, which a task of the subscription's reads: a queue put and
get, a task switch and a loop iteration per message, on every hop across
nodes. The cluster's callbacks route a message and return without waiting,
so each is run here while nats-py's reader parses the message. A callback
that does wait is finished by a task, and the messages after it wait
behind it, in order, as they would in nats-py's queue.

This reaches into nats-py's ``Subscription`` (its ``_pending_queue``, an
``asyncio.Queue``, and the byte count it keeps beside it): where the
installed nats-py has no such queue, its own delivery stays
(:func:`deliver_at_once` returns False) and a test says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

__all__ = ["Resume", "deliver_at_once"]

log = logging.getLogger("ipc_server.cluster")


class Resume:
    """Await a coroutine already started by hand (``coro.send(None)`` gave
    ``step``, the future it waits on): the task running this waits on each
    future the coroutine yields, and resumes the coroutine after, as a task
    running it from the start would have."""

    def __init__(self, coro: Any, step: Any) -> None:
        self._coro = coro
        self._step = step

    def __await__(self) -> Generator[Any, None, None]:
        step = self._step
        while True:
            try:
                yield step
            except BaseException as exc:  # cancelled while it waited: the coroutine is told
                try:
                    step = self._coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                step = self._coro.send(None)
            except StopIteration:
                return


class _AtOnce(asyncio.Queue):  # type: ignore[type-arg]
    """Stands in for a subscription's queue: what nats-py puts on it goes to the callback now."""

    def __init__(self, sub: Any, cb: Callable[[Any], Awaitable[None]]) -> None:
        super().__init__()
        self._sub = sub
        self._cb = cb
        self._behind: deque[Any] | None = None  # messages after a callback that waits
        self._finishing: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference

    def put_nowait(self, msg: Any) -> None:
        self._sub._pending_size -= len(msg.data)  # counted by nats-py as it queued it; taken at once
        if self._behind is not None:
            self._behind.append(msg)
            return
        coro = self._cb(msg)
        try:
            step = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - as nats-py's own delivery, a callback's error stops nothing
            log.exception("cluster: handling a message on %s failed", msg.subject)
            return
        self._behind = deque()
        self._finishing = asyncio.get_running_loop().create_task(self._finish(coro, step))

    async def _finish(self, coro: Any, step: Any) -> None:
        try:
            await self._run(Resume(coro, step), "")
            while self._behind:
                msg = self._behind.popleft()
                await self._run(self._cb(msg), msg.subject)
        finally:
            self._behind = self._finishing = None

    @staticmethod
    async def _run(call: Awaitable[None], subject: str) -> None:
        try:
            await call
        except Exception:  # noqa: BLE001 - as above
            log.exception("cluster: handling a message on %s failed", subject or "a subscription")


def deliver_at_once(sub: Any, cb: Callable[[Any], Awaitable[None]]) -> bool:
    """Hand ``sub``'s messages to ``cb`` as they are read (False: nats-py's
    own delivery stays, this nats-py has no queue of the kind replaced, or
    messages are already on it)."""
    queue = getattr(sub, "_pending_queue", None)
    if type(queue) is not asyncio.Queue or queue.qsize() or not isinstance(getattr(sub, "_pending_size", None), int):
        return False
    sub._pending_queue = _AtOnce(sub, cb)
    return True
