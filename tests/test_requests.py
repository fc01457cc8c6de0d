"""Request/response through the real server: handlers, responders, errors,
deadlines, and exactly one answer per request (docs/protocol.md §6, §7)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from ipc_protocol import ConnectionLost, HandlerError, NoResponders, RemoteError, RequestTimeout, ResponderLost

from .conftest import WAIT_S, RawPeer, frame


async def test_async_and_sync_handlers(server, make_client) -> None:
    @server.handler("math.add")
    async def add(msg):
        return msg.payload["a"] + msg.payload["b"]

    @server.handler("math.thread")
    def which_thread(msg):
        return threading.current_thread().name

    c = await make_client()
    resp = await c.send_request("math.add", {"a": 2, "b": 3})
    assert resp.payload == 5 and resp.message_type == "response"
    assert (await c.request("math.thread")).startswith("ipc-handler")


async def test_pattern_handler(server, make_client) -> None:
    server.add_handler("echo.>", lambda m: m.channel_id)
    c = await make_client()
    assert await c.request("echo.a.b") == "echo.a.b"


async def test_handler_exception_becomes_handler_error(server, make_client) -> None:
    @server.handler("boom")
    async def boom(msg):
        raise ValueError("bad value")

    c = await make_client()
    with pytest.raises(HandlerError) as info:
        await c.send_request("boom")
    assert info.value.code == "handler_error"
    assert info.value.remote_type == "ValueError" and info.value.message == "bad value"
    assert info.value.remote_stack is None  # not exposed by default


async def test_handler_can_raise_a_typed_error(server, make_client) -> None:
    from ipc_protocol import Forbidden

    @server.handler("guarded")
    async def guarded(msg):
        raise Forbidden("not you")

    c = await make_client()
    with pytest.raises(Forbidden):
        await c.send_request("guarded")


async def test_unserialisable_result_is_a_handler_error(server, make_client) -> None:
    server.add_handler("weird", lambda m: float("nan"))
    c = await make_client()
    with pytest.raises(HandlerError) as info:
        await c.send_request("weird")
    assert "cannot be sent" in info.value.message


async def test_no_responders_is_immediate(make_client) -> None:
    c = await make_client()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(NoResponders):
        await c.send_request("nobody.home", timeout=30)
    assert loop.time() - t0 < 5  # not the 30 s timeout


async def test_slow_sync_handler_does_not_block_other_clients(server, make_client) -> None:
    release = threading.Event()
    server.add_handler("slow", lambda m: release.wait(WAIT_S))
    server.add_handler("fast", lambda m: "fast")
    a, b = await make_client(), await make_client()
    slow = asyncio.ensure_future(a.request("slow"))
    assert await b.request("fast") == "fast"
    assert not slow.done()
    release.set()
    assert await slow is True


async def test_many_requests_in_flight_on_one_connection(server, make_client) -> None:
    async def echo(msg):
        await asyncio.sleep(0)
        return msg.payload

    server.add_handler("echo", echo)
    c = await make_client()
    results = await asyncio.gather(*(c.request("echo", i) for i in range(500)))
    assert results == list(range(500))


async def test_client_responder_answers_and_errors_cross(make_client) -> None:
    worker = await make_client()

    async def divide(msg):
        return msg.payload["a"] / msg.payload["b"]

    await worker.serve("math.div", divide)
    caller = await make_client()
    assert await caller.request("math.div", {"a": 6, "b": 3}) == 2
    with pytest.raises(HandlerError) as info:
        await caller.request("math.div", {"a": 1, "b": 0})
    assert info.value.remote_type == "ZeroDivisionError"


async def test_response_reply_to_is_the_requesters_id(server, make_client) -> None:
    worker = await make_client()
    await worker.serve("svc", lambda m: m.message_id)
    peer = await RawPeer.open(server.port)
    await peer.handshake()
    peer.send(frame("request", "svc", None, message_id="my-own-id"))
    resp = await peer.recv()
    assert resp.reply_to == "my-own-id"
    # The responder saw an id the server chose (here the requester's own,
    # §7.3); whichever it was, the requester's reply_to is its own id.
    await peer.close()


async def test_round_robin_among_least_busy_responders(make_client) -> None:
    workers = [await make_client() for _ in range(3)]
    for i, w in enumerate(workers):
        await w.serve("work", lambda m, i=i: i)
    caller = await make_client()
    seen = [await caller.request("work") for _ in range(9)]
    assert Counter(seen) == {0: 3, 1: 3, 2: 3}


async def test_busy_responder_is_skipped(make_client) -> None:
    gate = asyncio.Event()
    busy, idle = await make_client(), await make_client()

    holding = asyncio.Event()

    async def stuck(msg):
        holding.set()
        await gate.wait()
        return "busy"

    await busy.serve("work", stuck)
    await idle.serve("work", lambda m: "idle")
    caller = await make_client()
    first = asyncio.ensure_future(caller.request("work"))  # round robin starts at `busy`
    await asyncio.wait_for(holding.wait(), WAIT_S)
    for _ in range(5):
        assert await caller.request("work") == "idle"
    gate.set()
    assert await first == "busy"


async def test_responder_lost_is_immediate(make_client) -> None:
    worker = await make_client(reconnect=False)
    started = asyncio.Event()

    async def hang(msg):
        started.set()
        await asyncio.sleep(3600)

    await worker.serve("hang", hang)
    caller = await make_client()
    pending = asyncio.ensure_future(caller.request("hang", timeout=30))
    await asyncio.wait_for(started.wait(), WAIT_S)
    await worker.disconnect()
    with pytest.raises(ResponderLost):
        await asyncio.wait_for(pending, WAIT_S)


async def test_server_expires_forwarded_request_at_its_deadline(server, make_client) -> None:
    worker = await make_client()
    await worker.serve("hang", lambda m: asyncio.sleep(3600))
    peer = await RawPeer.open(server.port)
    await peer.handshake()
    peer.send(frame("request", "hang", None, message_id="r", timeout_ms=100))
    resp = await peer.recv()
    assert resp.reply_to == "r" and resp.error.code == "timeout"
    await peer.close()


async def test_client_timeout_raises_request_timeout(make_client) -> None:
    worker = await make_client()
    await worker.serve("hang", lambda m: asyncio.sleep(3600))
    caller = await make_client()
    with pytest.raises(RequestTimeout):
        await caller.request("hang", timeout=0.2)
    assert caller.get_connection_info()["pending_requests"] == 0


async def test_headers_are_relayed(make_client) -> None:
    worker = await make_client()
    await worker.serve("h", lambda m: m.headers)
    caller = await make_client()
    got = await caller.request("h", headers={"trace": "t-1"})
    assert got.pop("traceparent").startswith("00-") and got == {"trace": "t-1"}  # docs/tracing.md


async def test_notification_reaches_handler_and_is_never_answered(server, make_client) -> None:
    got = asyncio.get_running_loop().create_future()
    server.add_handler("log", lambda m: got.set_result(m.payload) if not got.done() else None)
    c = await make_client()
    await c.notify("log", {"line": 1})
    assert await asyncio.wait_for(got, WAIT_S) == {"line": 1}


async def test_services_are_announced_on_sys_channel(make_client) -> None:
    watcher = await make_client()
    events: asyncio.Queue = asyncio.Queue()
    await watcher.subscribe("$sys.services", lambda m: events.put_nowait(m.payload))
    worker = await make_client(reconnect=False)
    await worker.serve("jobs.resize", lambda m: None)
    added = await asyncio.wait_for(events.get(), WAIT_S)
    assert added["event"] == "added" and added["channel"] == "jobs.resize" and added["responders"] == 1
    await worker.disconnect()
    removed = await asyncio.wait_for(events.get(), WAIT_S)
    assert removed["event"] == "removed" and removed["responders"] == 0


async def test_every_request_settles_exactly_once_under_churn(make_client) -> None:
    """Responders come and go while requests fly: each request gets one outcome."""
    caller = await make_client()
    outcomes: list[str] = []

    async def one(i: int) -> None:
        try:
            await caller.request("churn", i, timeout=2)
            outcomes.append("ok")
        except (NoResponders, ResponderLost, RequestTimeout, RemoteError) as exc:
            outcomes.append(type(exc).__name__)

    async def flaky(msg):
        await asyncio.sleep(0.001)
        return msg.payload

    for _round in range(3):
        w = await make_client(reconnect=False)
        await w.serve("churn", flaky)
        batch = [asyncio.ensure_future(one(i)) for i in range(100)]
        await asyncio.sleep(0.005)
        await w.disconnect()
        await asyncio.wait_for(asyncio.gather(*batch), WAIT_S * 2)
    assert len(outcomes) == 300
    assert set(outcomes) <= {"ok", "NoResponders", "ResponderLost"}


async def test_pending_requests_fail_at_once_when_connection_drops(spawn) -> None:
    from ipc_client import IPCClient

    srv = await spawn("-m", "ipc_server", "--port", "0")
    worker = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
    caller = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
    await worker.connect()
    await caller.connect()
    await worker.serve("hang", lambda m: asyncio.sleep(3600))
    pending = [asyncio.ensure_future(caller.request("hang", timeout=60)) for _ in range(10)]
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    srv.proc.kill()
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), WAIT_S)
    assert loop.time() - t0 < WAIT_S
    assert all(isinstance(r, ConnectionLost) for r in results)
    await worker.disconnect()
    await caller.disconnect()


async def test_in_process_handler_overrunning_its_deadline(server, make_client) -> None:
    cancelled = asyncio.Event()

    @server.handler("overrun")
    async def overrun(msg):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    peer = await RawPeer.open(server.port)
    await peer.handshake()
    peer.send(frame("request", "overrun", None, message_id="r", timeout_ms=50))
    resp = await peer.recv()
    assert resp.reply_to == "r" and resp.error.code == "timeout"
    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    await peer.close()


async def test_a_result_with_nan_letters_and_a_non_json_type_is_answered(server, make_client) -> None:
    """A result pydantic can encode (a datetime) beside the letters "NaN" in a string is sent."""
    import datetime

    server.add_handler("when", lambda m: {"note": "NaN here", "at": datetime.datetime(2026, 1, 2)})
    c = await make_client()
    reply = await c.send_request("when", timeout=WAIT_S)
    assert reply.payload == {"note": "NaN here", "at": "2026-01-02T00:00:00"}


async def test_a_timed_out_handler_counts_against_the_inflight_limit_until_it_has_unwound(make_client) -> None:
    """The limit bounds running handlers: one cancelled at its deadline still runs its cleanup."""
    from ipc_server import IPCServer

    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=4) as srv:
        unwind = asyncio.Event()
        running = peak = 0

        @srv.handler("slow")
        async def slow(msg):  # type: ignore[no-untyped-def]
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                if msg.payload == "wait":
                    await asyncio.Event().wait()  # until cancelled at its deadline
                return msg.payload
            except asyncio.CancelledError:
                await unwind.wait()  # cleanup that takes a while
                raise
            finally:
                running -= 1

        from ipc_client import IPCClient

        c = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
        other = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
        await c.connect()
        await other.connect()
        try:
            first = await asyncio.gather(*(c.send_request("slow", "wait", timeout=0.05) for _ in range(4)), return_exceptions=True)
            assert all(isinstance(r, RequestTimeout) for r in first)
            second = [asyncio.create_task(c.send_request("slow", i, timeout=WAIT_S)) for i in range(4)]
            for _ in range(3):  # round trips through the server's loop: it has read the second batch by now, if it reads
                await other.health_check(timeout=WAIT_S)
            assert running == 4 and peak == 4  # the second batch waits for the four still unwinding
            unwind.set()
            assert [r.payload for r in await asyncio.gather(*second)] == [0, 1, 2, 3]
            assert peak == 4
        finally:
            unwind.set()
            await c.disconnect()
            await other.disconnect()


async def test_a_client_responder_s_unsendable_result_is_a_handler_error(make_client) -> None:
    """The responder answers with the encoding error's own text (the server's
    in-process handlers prefix theirs with "cannot be sent")."""
    responder = await make_client()
    await responder.serve("weird.client", lambda m: float("nan"))
    c = await make_client()
    with pytest.raises(HandlerError) as info:
        await c.send_request("weird.client")
    assert info.value.code == "handler_error"
    assert "cannot be sent" not in info.value.message and "NaN" in info.value.message


async def test_a_client_responder_s_result_over_the_frame_limit_is_answered_with_an_error(make_client) -> None:
    responder = await make_client(max_frame_size=4096)
    await responder.serve("big.client", lambda m: "x" * 8192)
    c = await make_client()
    with pytest.raises(RemoteError) as info:
        await c.send_request("big.client", timeout=WAIT_S)
    assert info.value.code == "handler_error" and info.value.remote_type == "FrameTooLarge"
