"""start_eagerly: a coroutine runs at once; one that waits is finished by a
task exactly as if the task had started it (results, exceptions,
cancellation, context)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from ipc_server.eager import start_eagerly

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")


async def test_a_coroutine_that_never_waits_runs_now_without_a_task() -> None:
    ran: list[str] = []

    async def quick() -> None:
        ran.append(var.get())
        var.set("inner")

    assert start_eagerly(asyncio.get_running_loop(), quick()) is None
    assert ran == ["outer"]
    assert var.get() == "outer"  # it ran in a copy of the context, as a task would


async def test_a_coroutine_that_waits_is_resumed_by_a_task_where_it_stopped() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[object] = []

    async def waits() -> None:
        var.set("inner")
        steps.append("started")
        steps.append(await gate)
        steps.append(var.get())  # the task runs in the context the first step used
        steps.append(await asyncio.sleep(0, "slept"))

    task = start_eagerly(asyncio.get_running_loop(), waits())
    assert task is not None and steps == ["started"]
    assert var.get() == "outer"
    gate.set_result(7)
    await asyncio.wait_for(task, 5)
    assert steps == ["started", 7, "inner", "slept"]


async def test_cancelling_the_task_cancels_the_coroutine_inside_its_await() -> None:
    cleaned = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = start_eagerly(asyncio.get_running_loop(), forever())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set() and task.cancelled()


async def test_an_exception_after_the_first_wait_ends_the_task_with_it() -> None:
    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("late")

    task = start_eagerly(asyncio.get_running_loop(), fails_later())
    assert task is not None
    with pytest.raises(ValueError, match="late"):
        await task


async def test_an_exception_thrown_in_is_handled_by_the_coroutine() -> None:
    caught: list[str] = []

    async def catches() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            caught.append("cancelled")
        await asyncio.sleep(0)  # and it may go on waiting afterwards
        caught.append("done")

    task = start_eagerly(asyncio.get_running_loop(), catches())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait_for(task, 5)
    assert caught == ["cancelled", "done"]
