"""Start a handler's task, at once where Python allows it.

An in-process handler such as an echo finishes without ever waiting. On
Python 3.12+ its task's first step runs at once (``eager_start``): a handler
that never waits costs no loop iteration, and finishes (and is answered)
before this returns. Python 3.11 has no way to do that and keep the task
current while the first step runs (``asyncio.timeout()``, ``TaskGroup`` and
``current_task()`` in a handler need it): there a handler whose code never
waits runs with no task at all (``ipc_client.at_once``), and every other
one waits for its task's first step in the next loop iteration
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

__all__ = ["EAGER", "start_eagerly"]

EAGER = sys.version_info >= (3, 12)  # a task's first step runs in start_eagerly


def start_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """A task running ``coro``, or None when it already finished (3.12+)."""
    if EAGER:
        task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        return None if task.done() else task
    return loop.create_task(coro)
