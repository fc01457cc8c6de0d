"""A plain served handler whose requester gave up keeps its admission slot
until its thread ends (docs/resilience.md §10): a request admitted
meanwhile is held, visibly, rather than waiting unseen for a thread; and a
held request its requester cancels never runs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ipc_protocol import RequestTimeout

from .conftest import WAIT_S, until


async def _two_cancelled_slow(make_client) -> tuple[Any, Any, threading.Event, list[str]]:
    """A responder with two slots, both held by plain handlers whose requesters timed out."""
    resp = await make_client(reconnect=False, max_concurrent_handlers=2)
    req = await make_client(reconnect=False)
    release = threading.Event()
    started = threading.Semaphore(0)
    ran: list[str] = []

    def slow(msg: Any) -> str:
        started.release()
        release.wait(WAIT_S * 4)
        return "slow"

    def fast(msg: Any) -> str:
        ran.append(msg.message_id)
        return "fast"

    await resp.serve("slow", slow)
    await resp.serve("fast", fast)
    for _ in range(2):
        call = asyncio.ensure_future(req.request("slow", None, timeout=WAIT_S * 4))
        assert await asyncio.to_thread(started.acquire, timeout=WAIT_S)
        call.cancel()  # the requester gives up: a cancel reaches the responder
        await asyncio.gather(call, return_exceptions=True)
    adm = resp._admission
    await until(lambda: len(adm.tasks) == 2 and all(t.done() for t in adm.tasks))  # both handler tasks cancelled
    return resp, req, release, ran


async def test_a_cancelled_plain_handler_holds_its_slot_until_its_thread_ends(make_client) -> None:
    resp, req, release, ran = await _two_cancelled_slow(make_client)
    adm = resp._admission
    try:
        answer = asyncio.ensure_future(req.request("fast", None, timeout=WAIT_S * 2))
        await until(lambda: len(adm.held) == 1)  # waiting, visibly: not admitted to wait for a thread
        assert len(adm.tasks) == 2 and len(adm.threads) == 2 and not ran
    finally:
        release.set()
    assert await asyncio.wait_for(answer, WAIT_S) == "fast"
    await until(lambda: not adm.tasks)
    assert len(adm.threads) <= 2


async def test_a_held_request_cancelled_never_runs(make_client) -> None:
    resp, req, release, ran = await _two_cancelled_slow(make_client)
    adm = resp._admission
    try:
        call = asyncio.ensure_future(req.request("fast", None, timeout=WAIT_S * 2))
        await until(lambda: len(adm.held) == 1)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await until(lambda: not adm.held)  # dropped at the cancel, not at its deadline
    finally:
        release.set()
    await until(lambda: not adm.tasks)
    assert await req.request("fast", None, timeout=WAIT_S) == "fast"
    assert len(ran) == 1  # the later one only


async def test_a_timed_out_request_to_a_busy_responder_is_refused_in_time(make_client) -> None:
    resp, req, release, _ran = await _two_cancelled_slow(make_client)
    try:
        try:
            await req.request("fast", None, timeout=0.3)
        except RequestTimeout:
            pass
        await until(lambda: not resp._admission.held)
    finally:
        release.set()
