"""Keyed requests across a server killed and started again on the same port
(docs/resilience.md §3, docs/protocol.md §6.6): the server's window of
keys went with its process, so the requester's resend is forwarded to the
responder again, which joins the run still going or answers with the
answer it kept, and the handler runs once. Then the responder's own
bounds (ipc_client/keyed_runs.py). Node's: interop-tests/test_js_idempotency_restart.py."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_client.keyed_runs import KeyedRuns
from ipc_protocol import Message, MessageType, ResponderLost

from .conftest import WAIT_S
from .test_idempotency import Gated, until

KEYS = 5
FAST: dict[str, Any] = {"initial_delay": 0.02, "max_delay": 0.1}


class Counted(Gated):
    """A gated handler that also counts the runs that ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = 0

    async def __call__(self, msg: Message) -> Any:
        try:
            return await super().__call__(msg)
        finally:
            self.ended += 1


@pytest.mark.parametrize("when", ["running", "finished"])
async def test_a_keyed_request_resent_to_a_restarted_server_runs_once_at_its_responder(spawn, when) -> None:
    first = await spawn("-m", "ipc_server", "--port", "0")
    port = first.port
    handler = Counted()
    responder = IPCClient("app", "127.0.0.1", port, **FAST)
    requester = IPCClient("app", "127.0.0.1", port, **FAST)
    try:
        for c in (responder, requester):
            await c.connect()
        await responder.serve("jobs.run", handler)
        calls = [asyncio.ensure_future(requester.request("jobs.run", i, idempotency_key=f"job-{i}", timeout=WAIT_S * 2)) for i in range(KEYS)]
        await until(lambda: len(handler.runs) == KEYS)
        first.signal(signal.SIGKILL)
        await first.wait()
        await until(lambda: not responder.connected and not requester.connected)
        runs = responder._subs.keyed
        if when == "finished":
            handler.gate.set()  # its answers find no connection: kept
            await until(lambda: handler.ended == KEYS)
        await spawn("-m", "ipc_server", "--port", str(port))
        if when == "running":
            # Each resend reached the responder: it joined its key's run (without it, ran again).
            await until(lambda: runs.joined == KEYS or len(handler.runs) == 2 * KEYS)
            handler.gate.set()
        assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S * 2) == [{"echo": i} for i in range(KEYS)]
        assert sorted(handler.runs) == list(range(KEYS))  # once each, not twice
        assert (runs.joined, runs.replayed) == ((KEYS, 0) if when == "running" else (0, KEYS))
        assert runs.running == 0
    finally:
        for c in (responder, requester):
            await c.disconnect()


# -- the responder's bookkeeping, on its own ------------------------------------------


class Sent:
    """The ``reply`` of KeyedRuns: records answers; a connection is open while in ``open``."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, Any, Exception | None]] = []
        self.open: set[str] = set()

    def __call__(self, conn: Any, msg: Message, result: Any, failure: Exception | None) -> bool:
        if conn not in self.open:
            return False
        self.answers.append((msg.message_id, result, failure))
        return True


def keyed(key: str, payload: Any = 1, *, mid: str = "m", app: str = "app") -> Message:
    return Message.build(MessageType.REQUEST, app, "jobs.run", payload, message_id=mid, headers={"idempotency-key": key})


def test_a_resend_joins_only_the_same_request_of_the_same_app() -> None:
    sent = Sent()
    runs = KeyedRuns(sent, False)
    run = runs.start("old", keyed("k"))
    assert run is not None
    assert runs.start("new", keyed("k", mid="m2")) is None  # joined
    other_payload = runs.start("new", keyed("k", 2, mid="m3"))
    other_app = runs.start("new", keyed("k", mid="m4", app="other"))
    assert other_payload is not None and other_payload.scope is None  # runs as usual, untracked
    assert other_app is not None and other_app.scope is not None  # another app's key
    sent.open.add("new")
    runs.finish(run, "done", None)
    assert sent.answers == [("m2", "done", None)]  # the old connection is gone; the joiner is answered
    assert runs.kept == 0  # it was sent: nothing to keep
    runs.finish(other_payload, "other", None)
    assert runs.kept == 0


def test_an_answer_nobody_got_is_kept_within_its_bounds_and_window() -> None:
    sent = Sent()
    runs = KeyedRuns(sent, False, max_answers=2, max_bytes=10_000)
    for key in ("a", "b", "c"):
        run = runs.start("gone", keyed(key))
        assert run is not None
        runs.finish(run, key, None)
    assert runs.kept == 2  # the oldest went first
    sent.open.add("new")
    assert runs.start("new", keyed("a", mid="ra")) is not None  # dropped: runs again
    assert runs.start("new", keyed("c", mid="rc")) is None
    assert sent.answers == [("rc", "c", None)] and runs.replayed == 1
    big = runs.start("gone", keyed("big"))
    assert big is not None
    runs.finish(big, "x" * 20_000, None)  # over the byte cap: not kept
    assert runs.start("new", keyed("big", mid="rb")) is not None
    expired = KeyedRuns(sent, False, window_s=0)
    run = expired.start("gone", keyed("k"))
    assert run is not None
    expired.finish(run, 1, None)
    assert expired.start("new", keyed("k", mid="late")) is not None and expired.kept == 0


def test_a_stopped_run_answers_its_joiners_responder_lost_and_keeps_nothing() -> None:
    sent = Sent()
    sent.open.add("new")
    runs = KeyedRuns(sent, False)
    run = runs.start("old", keyed("k"))
    assert run is not None and runs.start("new", keyed("k", mid="m2")) is None
    runs.abandon(run)
    assert [(mid, type(failure)) for mid, _, failure in sent.answers] == [("m2", ResponderLost)]
    assert (runs.running, runs.kept) == (0, 0)
