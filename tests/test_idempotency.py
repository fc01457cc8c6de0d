"""Idempotent retries (docs/protocol.md §6.6): the real server and real
clients over loopback TCP. A request with an idempotency key runs once per
key: a repeat while it runs joins it, a repeat after it gets the stored
answer, another request under the same key is refused; the window ends,
and its caps drop the oldest answers first (through responders and lost
connections: tests/test_idempotency_resend.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import (
    HandlerError,
    IdempotencyConflict,
    Message,
    NoResponders,
    RequestTimeout,
)
from ipc_protocol.idempotency import IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH
from ipc_server import IPCServer
from ipc_server.users import hash_token

from .conftest import ROOT, WAIT_S, RawPeer, frame


async def until(cond: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait, bounded, until ``cond()`` holds (each loop iteration checks it)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


class Gated:
    """A handler that counts its runs and answers once let through."""

    def __init__(self, answer: Callable[[Message], Any] = lambda msg: {"echo": msg.payload}) -> None:
        self.runs: list[Any] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.answer = answer

    async def __call__(self, msg: Message) -> Any:
        self.runs.append(msg.payload)
        self.entered.set()
        await self.gate.wait()
        return self.answer(msg)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[IPCServer]]]:
    servers: list[IPCServer] = []

    async def make(**settings: Any) -> IPCServer:
        server = IPCServer("127.0.0.1", 0, shutdown_grace_s=0.2, no_responders_grace_s=0, **settings)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[Callable[..., Awaitable[IPCClient]]]:
    clients: list[IPCClient] = []

    async def make(port: int, app_id: str = "app", **kwargs: Any) -> IPCClient:
        kwargs.setdefault("request_timeout", WAIT_S)
        c = IPCClient(app_id, "127.0.0.1", port, **kwargs)
        clients.append(c)
        await asyncio.wait_for(c.connect(), WAIT_S)
        return c

    yield make
    for c in clients:
        await c.disconnect()


def counts(server: IPCServer) -> dict[str, int]:
    return server.stats.idempotency


def test_the_header_and_key_length_are_those_of_the_shared_spec() -> None:
    spec = json.loads((ROOT / "interop-tests" / "spec" / "idempotency.json").read_text())
    assert (spec["header"], spec["max_key_length"]) == (IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH)
    assert spec["python_option"] == "idempotency_key"


# -- joining and storing -------------------------------------------------------------


async def test_a_repeat_while_running_joins_it_and_the_handler_runs_once(start, client) -> None:
    server = await start()
    handler = Gated()
    server.add_handler("jobs.run", handler)
    a, b = await client(server.port), await client(server.port)
    first = asyncio.ensure_future(a.send_request("jobs.run", {"n": 1}, idempotency_key="k1"))
    await asyncio.wait_for(handler.entered.wait(), WAIT_S)
    second = asyncio.ensure_future(b.send_request("jobs.run", {"n": 1}, idempotency_key="k1"))
    third = asyncio.ensure_future(a.send_request("jobs.run", {"n": 1}, idempotency_key="k1"))
    await until(lambda: counts(server)["joined"] == 2)
    assert counts(server)["running"] == 1
    handler.gate.set()
    replies = await asyncio.wait_for(asyncio.gather(first, second, third), WAIT_S)
    assert [r.payload for r in replies] == [{"echo": {"n": 1}}] * 3
    assert handler.runs == [{"n": 1}]
    # Each requester is answered under its own message id.
    assert len({r.reply_to for r in replies}) == 3 and len({r.message_id for r in replies}) == 3
    assert counts(server)["running"] == 0 and counts(server)["stored"] == 1


async def test_a_repeat_after_it_finished_gets_the_stored_answer_success_or_error(start, client) -> None:
    server = await start()
    runs: list[Any] = []

    @server.handler("calc")
    async def calc(msg: Message) -> Any:
        runs.append(msg.payload)
        if msg.payload < 0:
            raise ValueError("negative")
        return msg.payload * 2

    c = await client(server.port)
    assert await c.request("calc", 21, idempotency_key="ok") == 42
    assert await c.request("calc", 21, idempotency_key="ok") == 42
    for _ in range(2):
        with pytest.raises(HandlerError) as info:
            await c.request("calc", -1, idempotency_key="bad")
        assert info.value.remote_type == "ValueError" and "negative" in str(info.value)
    assert runs == [21, -1]
    assert counts(server)["replayed"] == 2 and counts(server)["stored"] == 2
    # Without a key it runs every time, and nothing is kept.
    assert await c.request("calc", 21) == 42 and runs == [21, -1, 21]
    assert counts(server)["started"] == 2


async def test_a_key_reused_for_another_request_is_refused_idempotency_conflict(start, client) -> None:
    server = await start()
    runs: list[Any] = []
    server.add_handler("a", lambda msg: runs.append(msg.payload) or "a")
    server.add_handler("b", lambda msg: runs.append(msg.payload) or "b")
    c = await client(server.port)
    assert await c.request("a", {"x": 1, "y": 2}, idempotency_key="k") == "a"
    assert await c.request("a", {"y": 2, "x": 1}, idempotency_key="k") == "a"  # the same JSON value
    with pytest.raises(IdempotencyConflict) as info:
        await c.request("a", {"x": 2}, idempotency_key="k")
    assert info.value.code == "idempotency_conflict" and "'k'" in str(info.value)
    with pytest.raises(IdempotencyConflict):
        await c.request("b", {"x": 1, "y": 2}, idempotency_key="k")
    assert runs == [{"x": 1, "y": 2}]
    assert counts(server)["conflicts"] == 2 and server.stats.errors["idempotency_conflict"] == 2


async def test_a_conflict_while_the_key_runs_is_refused_too(start, client) -> None:
    server = await start()
    handler = Gated()
    server.add_handler("jobs.run", handler)
    c = await client(server.port)
    first = asyncio.ensure_future(c.request("jobs.run", 1, idempotency_key="k"))
    await asyncio.wait_for(handler.entered.wait(), WAIT_S)
    with pytest.raises(IdempotencyConflict):
        await c.request("jobs.run", 2, idempotency_key="k")
    handler.gate.set()
    assert await asyncio.wait_for(first, WAIT_S) == {"echo": 1} and handler.runs == [1]


async def test_keys_are_scoped_per_app(start, client) -> None:
    server = await start()
    runs: list[str] = []
    server.add_handler("who", lambda msg: runs.append(msg.app_id) or msg.app_id)
    shop, billing = await client(server.port, "shop"), await client(server.port, "billing")
    assert await shop.request("who", None, idempotency_key="k") == "shop"
    assert await billing.request("who", None, idempotency_key="k") == "billing"
    assert runs == ["shop", "billing"]


async def test_keys_are_scoped_per_user_with_a_users_file(start, tmp_path: Path) -> None:
    alice, bob = hash_token("alice-token", log_n=4), hash_token("bob-token", log_n=4)
    users = tmp_path / "users.toml"
    rules = 'apps = ["app"]\nrequest = [">"]\n'
    users.write_text(f'[users.alice]\ntoken_hash = "{alice}"\n{rules}\n[users.bob]\ntoken_hash = "{bob}"\n{rules}')
    server = await start(users_file=str(users))
    server.add_handler("me", lambda msg: msg.payload)
    a = IPCClient("app", "127.0.0.1", server.port, user="alice", token="alice-token", reconnect=False)
    b = IPCClient("app", "127.0.0.1", server.port, user="bob", token="bob-token", reconnect=False)
    async with a, b:
        assert await a.request("me", "alice's", idempotency_key="k") == "alice's"
        # Bob's request under the same key is his own: it runs, and is no conflict.
        assert await b.request("me", "bob's", idempotency_key="k") == "bob's"
        assert await a.request("me", "alice's", idempotency_key="k") == "alice's"
    assert counts(server)["started"] == 2 and counts(server)["conflicts"] == 0


# -- the window ---------------------------------------------------------------------------


async def test_a_stored_answer_expires_after_the_window(start, client) -> None:
    server = await start(idempotency_window_s=0.2)
    runs: list[int] = []
    server.add_handler("tick", lambda msg: runs.append(1) or len(runs))
    c = await client(server.port)
    assert await c.request("tick", None, idempotency_key="k") == 1
    assert await c.request("tick", None, idempotency_key="k") == 1
    await until(lambda: counts(server)["expired"] == 1)  # the window's timer, no request needed
    assert counts(server)["stored"] == 0 and counts(server)["stored_bytes"] == 0
    assert await c.request("tick", None, idempotency_key="k") == 2


async def test_the_key_cap_evicts_the_oldest_answer(start, client) -> None:
    server = await start(idempotency_max_keys=2)
    runs: list[str] = []
    server.add_handler("job", lambda msg: runs.append(msg.payload) or msg.payload)
    c = await client(server.port)
    for key in ("a", "b", "c"):
        assert await c.request("job", key, idempotency_key=key) == key
    assert counts(server)["evicted"] == 1 and counts(server)["stored"] == 2
    assert await c.request("job", "c", idempotency_key="c") == "c"  # still kept
    assert await c.request("job", "b", idempotency_key="b") == "b"
    assert runs == ["a", "b", "c"]
    assert await c.request("job", "a", idempotency_key="a") == "a"  # the oldest went: it runs again
    assert runs == ["a", "b", "c", "a"]


async def test_the_byte_cap_bounds_the_stored_answers(start, client) -> None:
    server = await start(idempotency_max_bytes=2000)
    server.add_handler("blob", lambda msg: "x" * msg.payload)
    c = await client(server.port)
    await c.request("blob", 600, idempotency_key="a")
    await c.request("blob", 600, idempotency_key="b")
    assert counts(server)["stored"] == 2
    await c.request("blob", 600, idempotency_key="c")  # three do not fit: the oldest goes
    assert counts(server)["stored"] == 2 and counts(server)["evicted"] == 1 and counts(server)["stored_bytes"] <= 2000
    await c.request("blob", 5000, idempotency_key="big")  # larger than the cap: answered, never kept
    assert counts(server)["not_stored"] == 1 and counts(server)["stored"] == 2


async def test_answers_that_say_it_did_not_run_are_not_stored(start, client) -> None:
    server = await start()
    c = await client(server.port)
    with pytest.raises(NoResponders):
        await c.request("later", 1, idempotency_key="n")
    server.add_handler("later", lambda msg: "ran")
    assert await c.request("later", 1, idempotency_key="n") == "ran"  # the retry runs

    release = asyncio.Event()
    runs: list[int] = []

    async def slow(msg: Message) -> str:
        runs.append(1)
        if len(runs) == 1:
            await release.wait()
        return "done"

    server.add_handler("slow", slow)
    with pytest.raises(RequestTimeout):
        await c.request("slow", None, idempotency_key="t", timeout=0.1)
    assert await c.request("slow", None, idempotency_key="t") == "done"  # timeout is not kept: it runs again
    assert len(runs) == 2 and counts(server)["not_stored"] == 2


async def test_a_joiner_keeps_its_own_deadline(start, client) -> None:
    server = await start()
    handler = Gated()
    server.add_handler("jobs.run", handler)
    c = await client(server.port)
    first = asyncio.ensure_future(c.request("jobs.run", 1, idempotency_key="k", timeout=WAIT_S))
    await asyncio.wait_for(handler.entered.wait(), WAIT_S)
    peer = await RawPeer.open(server.port)
    await peer.handshake()
    peer.send(frame("request", "jobs.run", 1, message_id="j1", timeout_ms=50, headers={IDEMPOTENCY_HEADER: "k"}))
    reply = await peer.recv()
    assert reply.reply_to == "j1" and reply.error is not None and reply.error.code == "timeout"
    handler.gate.set()  # the run went on for the first requester
    assert await asyncio.wait_for(first, WAIT_S) == {"echo": 1} and handler.runs == [1]
    await peer.close()


async def test_a_bad_key_is_refused_before_and_at_the_server(start, client) -> None:
    server = await start()
    server.add_handler("echo", lambda msg: msg.payload)
    c = await client(server.port)
    with pytest.raises(ValueError):
        await c.request("echo", 1, idempotency_key="")
    with pytest.raises(ValueError):
        await c.request("echo", 1, idempotency_key="k" * 257)
    with pytest.raises(TypeError):
        await c.request("echo", 1, idempotency_key=7)
    assert await c.request("echo", 1, idempotency_key="k" * 256) == 1
    peer = await RawPeer.open(server.port)
    await peer.handshake()
    peer.send(frame("request", "echo", 1, message_id="q", headers={IDEMPOTENCY_HEADER: ""}))
    reply = await peer.recv()
    assert reply.reply_to == "q" and reply.error is not None and reply.error.code == "bad_message"
    await peer.close()
