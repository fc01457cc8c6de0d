"""Idempotent retries (docs/protocol.md §6.6) through responders and lost
connections: a forwarded keyed request runs once at its responder, a lost
responder's run is not stored, a keyed request whose connection drops is
sent again and still runs once, over a load-balanced client too, and
shutdown answers a run and its joiners (the key's rules themselves:
tests/test_idempotency.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from ipc_client import LoadBalancedClient
from ipc_protocol import ConnectionLost, RequestTimeout

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .test_idempotency import Gated, client, counts, start, until  # noqa: F401 - client and start are fixtures


# -- forwarded to responders, and the requester's connection lost ------------------------


async def test_a_forwarded_request_runs_once_at_its_responder(start, client) -> None:
    server = await start()
    handler = Gated()
    responder = await client(server.port)
    await responder.serve("jobs.*", handler)
    a, b = await client(server.port), await client(server.port)
    first = asyncio.ensure_future(a.request("jobs.run", "x", idempotency_key="k"))
    await asyncio.wait_for(handler.entered.wait(), WAIT_S)
    second = asyncio.ensure_future(b.request("jobs.run", "x", idempotency_key="k"))
    await until(lambda: counts(server)["joined"] == 1)
    handler.gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), WAIT_S) == [{"echo": "x"}] * 2
    assert await a.request("jobs.run", "x", idempotency_key="k") == {"echo": "x"}
    assert handler.runs == ["x"]


async def test_a_lost_responder_is_not_stored_and_the_retry_runs_elsewhere(start, client) -> None:
    server = await start()
    handler = Gated()
    doomed = await client(server.port, reconnect=False)
    await doomed.serve("jobs.run", handler)
    c = await client(server.port)
    call = asyncio.ensure_future(c.request("jobs.run", 1, idempotency_key="k"))
    await asyncio.wait_for(handler.entered.wait(), WAIT_S)
    await doomed.disconnect()
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(call, WAIT_S)
    assert getattr(info.value, "code", None) == "responder_lost"
    other = await client(server.port)
    await other.serve("jobs.run", lambda msg: "second")
    assert await c.request("jobs.run", 1, idempotency_key="k") == "second"


@pytest.mark.parametrize("where", ["handler", "responder"])
async def test_a_keyed_request_whose_connection_drops_is_resent_and_runs_once(start, client, where) -> None:
    # The offline queue's replay: the first attempt reached the server and
    # its handler is running when the requester's connection is cut.
    server = await start()
    handler = Gated()
    if where == "handler":
        server.add_handler("jobs.run", handler)
    else:
        responder = await client(server.port)
        await responder.serve("jobs.run", handler)
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        c = await client(proxy.port, initial_delay=0.01, max_delay=0.05)
        reconnected = asyncio.Event()
        c.on("reconnected", lambda info: reconnected.set())
        call = asyncio.ensure_future(c.request("jobs.run", {"n": 1}, idempotency_key="job-1", timeout=WAIT_S))
        await asyncio.wait_for(handler.entered.wait(), WAIT_S)
        proxy.cut()
        await asyncio.wait_for(reconnected.wait(), WAIT_S)
        await until(lambda: counts(server)["joined"] == 1)  # the resend joined the run
        handler.gate.set()
        assert await asyncio.wait_for(call, WAIT_S) == {"echo": {"n": 1}}
        assert handler.runs == [{"n": 1}]
        kpis = c.metrics()  # one call, one result: the loss it outlived is not a failure
        assert (kpis["messages_delivered"], kpis["messages_failed"]) == (1, 0)
        # Without a key the same loss fails the call (it may have run).
        handler.gate.clear()
        plain = asyncio.ensure_future(c.request("jobs.run", {"n": 2}, timeout=WAIT_S))
        await until(lambda: len(handler.runs) == 2)
        proxy.cut()
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(plain, WAIT_S)
        assert getattr(info.value, "code", None) == "connection_lost"
        assert c.metrics()["messages_failed"] == 1
        handler.gate.set()
    finally:
        await proxy.close()


async def test_on_disconnect_fail_does_not_resend(start, client) -> None:
    server = await start()
    handler = Gated()
    server.add_handler("jobs.run", handler)
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        c = await client(proxy.port, initial_delay=0.01)
        call = asyncio.ensure_future(c.request("jobs.run", 1, idempotency_key="k", on_disconnect="fail"))
        await asyncio.wait_for(handler.entered.wait(), WAIT_S)
        proxy.cut()
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(call, WAIT_S)
        assert getattr(info.value, "code", None) == "connection_lost"
        handler.gate.set()
        await until(lambda: counts(server)["stored"] == 1)  # the run finished, its answer kept for a retry
    finally:
        await proxy.close()


async def test_a_keyed_request_that_expires_in_the_queue_has_the_loss_as_its_cause(start, client) -> None:
    # docs/resilience.md §3: a keyed request whose deadline passes while its
    # connection is down fails with RequestTimeout, its __cause__ the loss;
    # here the loss is noticed at once and the resend waits in the queue.
    server = await start()
    handler = Gated()
    server.add_handler("jobs.run", handler)
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        c = await client(proxy.port, initial_delay=0.01, max_delay=0.05)
        call = asyncio.ensure_future(c.request("jobs.run", 1, idempotency_key="k", timeout=0.5))
        await asyncio.wait_for(handler.entered.wait(), WAIT_S)
        proxy.refuse(True)
        proxy.cut()
        with pytest.raises(RequestTimeout, match="offline queue") as info:
            await asyncio.wait_for(call, WAIT_S)
        assert isinstance(info.value.__cause__, ConnectionLost)
        handler.gate.set()
    finally:
        await proxy.close()


async def test_load_balanced_failover_with_a_key_runs_once(start) -> None:
    # Two routes to one server: the call goes through the first (a proxy),
    # which is cut while the handler runs; the client fails over to the
    # second route, and the retry joins the run instead of running again.
    server = await start()
    handler = Gated()
    server.add_handler("jobs.run", handler)
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    lb = LoadBalancedClient("app", [("127.0.0.1", proxy.port), ("127.0.0.1", server.port)], health_check_interval=None)
    try:
        await asyncio.wait_for(lb.start(), WAIT_S)
        call = asyncio.ensure_future(lb.request("jobs.run", "x", idempotency_key="lb-1", timeout=WAIT_S))
        await asyncio.wait_for(handler.entered.wait(), WAIT_S)
        proxy.cut()
        await until(lambda: counts(server)["joined"] == 1)
        handler.gate.set()
        assert await asyncio.wait_for(call, WAIT_S) == {"echo": "x"}
        assert handler.runs == ["x"]
    finally:
        await lb.close()
        await proxy.close()


async def test_shutdown_answers_the_run_and_its_joiners(start, client) -> None:
    server = await start()
    handler = Gated()
    server.add_handler("jobs.run", handler)
    a, b = await client(server.port, reconnect=False), await client(server.port, reconnect=False)
    first = asyncio.ensure_future(a.request("jobs.run", 1, idempotency_key="k"))
    await asyncio.wait_for(handler.entered.wait(), WAIT_S)
    second = asyncio.ensure_future(b.request("jobs.run", 1, idempotency_key="k"))
    await until(lambda: counts(server)["joined"] == 1)
    await server.close(grace_s=0.05)
    for call in (first, second):
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(call, WAIT_S)
        assert getattr(info.value, "code", None) in ("shutting_down", "connection_lost")


async def test_a_loss_noticed_past_the_deadline_ends_the_keyed_request_with_its_timeout() -> None:
    """Whichever comes first at the deadline, the loss or the timer: the
    request's own deadline ended it (a keyed request outlives losses)."""
    from ipc_client.idempotency import resend_on_loss
    from ipc_client.state import ConnectionState, StateMachine

    loop = asyncio.get_running_loop()
    state = StateMachine()

    async def lost() -> None:
        raise ConnectionLost("the connection was lost")

    with pytest.raises(RequestTimeout) as info:
        await resend_on_loss(lost, state, lambda: None, loop.time() - 0.001, "wait")
    assert isinstance(info.value.__cause__, ConnectionLost)
    # Connected on paper, the socket already gone: the deadline passes while the client has not noticed.
    state.set(ConnectionState.CONNECTING)
    state.set(ConnectionState.CONNECTED)
    outbox = SimpleNamespace(keyed=0)
    waiting = asyncio.ensure_future(resend_on_loss(lost, state, lambda: None, loop.time() + 0.05, "wait", None, outbox))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert outbox.keyed == 1  # counted while it waits, in neither the pending table nor the queue (drain())
    with pytest.raises(RequestTimeout):
        await waiting
    assert outbox.keyed == 0
    with pytest.raises(ConnectionLost):  # on_disconnect="fail": the loss itself
        await resend_on_loss(lost, state, lambda: None, loop.time() - 0.001, "fail")
