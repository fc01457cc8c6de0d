"""The no-responders grace (docs/protocol.md §13.2): after the server starts,
and for requests a client replays, a request for a channel nobody serves
waits for a responder instead of failing ``no_responders`` at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message, NoResponders, ShuttingDown
from ipc_protocol.restarts import LAME_DUCK, REPLAY_HEADER, REPLAY_VALUE, lame_duck_deadline_ms, lame_duck_notice
from ipc_server import IPCServer

from .conftest import WAIT_S

REPLAY = {REPLAY_HEADER: REPLAY_VALUE}


async def until(predicate: Any, what: str) -> None:
    """Wait, at most WAIT_S, until ``predicate()`` holds."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.01)


async def window_closed(server: IPCServer, started_at: float) -> None:
    """Wait until the start's window (no_responders_grace_s from start()) has passed."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, started_at + server.config.no_responders_grace_s - loop.time()) + 0.01)


@pytest.fixture
async def clients() -> Any:
    made: list[IPCClient] = []

    async def make(port: int, **kwargs: Any) -> IPCClient:
        client = IPCClient("app", "127.0.0.1", port, **kwargs)
        made.append(client)
        await client.connect()
        return client

    yield make
    for c in made:
        await c.disconnect()


async def test_after_a_start_a_request_waits_for_its_responder(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S) as server:
        caller = await clients(server.port)
        pending = asyncio.ensure_future(caller.request("late.svc", 21, timeout=WAIT_S * 2))
        await until(lambda: server.stats.grace["holding"] == 1, "held")
        worker = await clients(server.port)
        await worker.serve("late.svc", lambda m: m.payload * 2)
        assert await asyncio.wait_for(pending, WAIT_S) == 42
        assert server.stats.grace == {"held": 1, "holding": 0, "routed": 1, "expired": 0}


async def test_the_window_opens_at_the_first_connect_not_at_the_listen(clients) -> None:
    """A server started in its predecessor's lame duck listens long before its
    clients come (docs/resilience.md §12 step 4): their requests still wait."""
    loop = asyncio.get_running_loop()
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0.5) as server:
        await window_closed(server, loop.time())  # nobody came for longer than the grace
        caller = await clients(server.port)
        pending = asyncio.ensure_future(caller.request("late.svc", 2, timeout=WAIT_S))
        await until(lambda: server.stats.grace["holding"] == 1 or pending.done(), "held")
        worker = await clients(server.port)  # the responder reconnects shortly after
        await worker.serve("late.svc", lambda m: m.payload * 2)
        assert await asyncio.wait_for(pending, WAIT_S) == 4
        assert server.stats.grace["routed"] == 1


async def test_an_in_process_handler_added_later_takes_it_too(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S) as server:
        caller = await clients(server.port)
        pending = asyncio.ensure_future(caller.request("py.late", 1, timeout=WAIT_S * 2))
        await until(lambda: server.stats.grace["holding"] == 1, "held")
        server.add_handler("py.late", lambda m: m.payload + 1)
        assert await asyncio.wait_for(pending, WAIT_S) == 2


async def test_outside_the_window_no_responders_is_immediate_unless_replayed(clients) -> None:
    loop = asyncio.get_running_loop()
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0.3) as server:
        caller = await clients(server.port)
        started_at = loop.time()  # the window opened at its connect
        await window_closed(server, started_at)
        with pytest.raises(NoResponders):
            await caller.request("nobody", timeout=WAIT_S)
        assert server.stats.grace["held"] == 0
        # A replayed request is held all the same, for up to the grace.
        pending = asyncio.ensure_future(caller.request("later", "x", headers=REPLAY, timeout=WAIT_S))
        await until(lambda: server.stats.grace["holding"] == 1, "held")
        seen: list[dict[str, str] | None] = []
        worker = await clients(server.port)
        await worker.serve("later", lambda m: seen.append(m.headers) or m.payload)
        assert await asyncio.wait_for(pending, WAIT_S) == "x"
        assert seen[0] is not None and seen[0][REPLAY_HEADER] == REPLAY_VALUE  # relayed like any header


async def test_nobody_within_the_grace_is_no_responders_naming_it(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0.2) as server:
        caller = await clients(server.port)
        with pytest.raises(NoResponders) as info:
            await caller.request("nobody", timeout=WAIT_S, headers=REPLAY)
        assert "§13.2" in info.value.message
        assert server.stats.grace["expired"] >= 1 and server.stats.grace["holding"] == 0


async def test_a_held_request_is_answered_before_its_own_deadline(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=60) as server:
        caller = await clients(server.port)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(NoResponders):  # not RequestTimeout: the server answers first
            await caller.request("nobody", timeout=0.5)
        assert loop.time() - t0 < 0.5


async def test_the_responder_is_told_the_time_that_is_left(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S) as server:
        caller = await clients(server.port)
        pending = asyncio.ensure_future(caller.send_request("budget", timeout=WAIT_S * 2))
        await until(lambda: server.stats.grace["holding"] == 1, "held")
        await asyncio.sleep(0.2)  # the time it waits is what the test measures
        worker = await clients(server.port)
        await worker.serve("budget", lambda m: m.timeout_ms)
        reply: Message = await asyncio.wait_for(pending, WAIT_S)
        assert reply.payload <= WAIT_S * 2 * 1000 - 200


async def test_a_requester_that_leaves_while_held_is_forgotten(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S) as server:
        caller = await clients(server.port)
        pending = asyncio.ensure_future(caller.request("gone", timeout=WAIT_S))
        await until(lambda: server.stats.grace["holding"] == 1, "held")
        await caller.disconnect()
        with pytest.raises(Exception):
            await pending
        await until(lambda: server.stats.grace["holding"] == 0, "dropped")
        ran: list[Any] = []
        worker = await clients(server.port)
        await worker.serve("gone", ran.append)
        assert server.stats.grace["routed"] == 0 and ran == []


async def test_a_cancelled_held_request_is_dropped_and_never_reaches_a_responder(clients) -> None:
    """A caller that gives up (§15.4: its task cancelled, the client sends
    ``cancel``) frees what it held: the request is not routed when a
    responder comes, nor counted in the caller's in-flight requests."""
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S * 4) as server:
        caller = await clients(server.port)
        pending = asyncio.ensure_future(caller.request("late.svc", 1, timeout=WAIT_S * 3))
        await until(lambda: server.stats.grace["holding"] == 1, "held")
        pending.cancel()
        await until(lambda: server.stats.grace["holding"] == 0, "dropped")
        assert server.stats.cancels == 1
        conn = next(iter(server.connections))
        assert conn.inflight.count == 0
        ran: list[Any] = []
        worker = await clients(server.port)
        await worker.serve("late.svc", lambda m: ran.append(m.payload) or m.payload)
        assert await caller.request("late.svc", 2, timeout=WAIT_S) == 2
        assert ran == [2] and server.stats.grace == {"held": 1, "holding": 0, "routed": 0, "expired": 0}


async def test_held_requests_count_against_the_inflight_limit(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S, max_inflight_per_connection=4) as server:
        caller = await clients(server.port)
        calls = [asyncio.ensure_future(caller.request("bounded", i, timeout=WAIT_S * 2)) for i in range(10)]
        await until(lambda: server.stats.grace["holding"] == 4, "4 held")
        conn = next(iter(server.connections))
        assert conn.inflight.holding  # the rest wait, read or not (inflight.py)
        assert server.stats.grace["held"] == 4
        worker = await clients(server.port)
        await worker.serve("bounded", lambda m: m.payload)
        assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == list(range(10))


async def test_notifications_and_keyed_requests_are_held_too(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S) as server:
        caller = await clients(server.port)
        await caller.notify("events.late", "note")
        keyed = asyncio.ensure_future(caller.request("orders.late", "o1", idempotency_key="k1", timeout=WAIT_S * 2))
        await until(lambda: server.stats.grace["holding"] == 2, "held")
        got: asyncio.Queue[Any] = asyncio.Queue()
        worker = await clients(server.port)
        await worker.serve("events.late", lambda m: got.put_nowait(m.payload))
        await worker.serve("orders.late", lambda m: f"done {m.payload}")
        assert await asyncio.wait_for(got.get(), WAIT_S) == "note"
        assert await asyncio.wait_for(keyed, WAIT_S) == "done o1"


async def test_a_shutdown_answers_held_requests_shutting_down(clients) -> None:
    server = IPCServer("127.0.0.1", 0, no_responders_grace_s=WAIT_S)
    await server.start()
    caller = await clients(server.port, reconnect=False)
    pending = asyncio.ensure_future(caller.request("never", timeout=WAIT_S))
    await until(lambda: server.stats.grace["holding"] == 1, "held")
    await server.close()
    with pytest.raises(ShuttingDown):
        await pending


async def test_grace_zero_is_the_old_immediate_no_responders(clients) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        caller = await clients(server.port)
        with pytest.raises(NoResponders):
            await caller.request("nobody", timeout=WAIT_S, headers=REPLAY)
        assert server.stats.grace["held"] == 0


async def test_the_client_marks_what_it_replays_from_its_queue(clients) -> None:
    first = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await first.start()
    port = first.port
    seen: list[dict[str, str] | None] = []
    caller = await clients(port, initial_delay=0.02, max_delay=0.1)
    direct_worker = await clients(port)
    await direct_worker.serve("mark", lambda m: seen.append(m.headers) or "ok")
    assert await caller.request("mark", timeout=WAIT_S) == "ok"  # sent at once: no mark
    await first.close()
    await until(lambda: not caller.connected, "disconnected")
    queued = asyncio.ensure_future(caller.request("mark", timeout=WAIT_S * 2))
    async with IPCServer("127.0.0.1", port, no_responders_grace_s=WAIT_S):
        assert await asyncio.wait_for(queued, WAIT_S * 2) == "ok"  # the worker came back to serve it
    assert REPLAY_HEADER not in (seen[0] or {})
    assert (seen[1] or {}).get(REPLAY_HEADER) == REPLAY_VALUE


def test_the_mark_and_the_notice_are_those_of_the_shared_spec() -> None:
    spec = json.loads((Path(__file__).resolve().parent.parent / "interop-tests" / "spec" / "restarts.json").read_text())
    assert (REPLAY_HEADER, REPLAY_VALUE, LAME_DUCK) == (spec["replay_header"], spec["replay_value"], spec["feature"])
    notice = lame_duck_notice("app", spec["notice"]["payload"]["deadline_ms"])
    got = {"message_type": notice.message_type.value, "channel_id": notice.channel_id, "payload": notice.payload}
    assert got == spec["notice"]
    assert lame_duck_deadline_ms(notice) == spec["notice"]["payload"]["deadline_ms"]


def test_the_settings_come_from_toml_the_environment_and_flags(tmp_path) -> None:
    from ipc_server.command import build_parser
    from ipc_server.config import load_config

    path = tmp_path / "server.toml"
    path.write_text("no_responders_grace_s = 0.5\nlame_duck_duration_s = 12\n")
    config = load_config(path=path, env={})
    assert (config.no_responders_grace_s, config.lame_duck_duration_s) == (0.5, 12.0)
    config = load_config(env={"IPC_SERVER_NO_RESPONDERS_GRACE_S": "0", "IPC_SERVER_LAME_DUCK_DURATION_S": "3"})
    assert (config.no_responders_grace_s, config.lame_duck_duration_s) == (0.0, 3.0)
    flags = vars(build_parser().parse_args(["--no-responders-grace", "1.5", "--lame-duck-duration", "0"]))
    assert flags == {"no_responders_grace_s": 1.5, "lame_duck_duration_s": 0.0}
    for name in ("no_responders_grace_s", "lame_duck_duration_s"):
        with pytest.raises(ValueError, match=name):
            load_config(env={f"IPC_SERVER_{name.upper()}": "-1"})
