"""``drain()`` (docs/resilience.md §12): no new calls, the server routes
elsewhere, what is in flight finishes (the offline queue included), then
the client closes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost, Message, NotConnected
from ipc_server import IPCServer

from .conftest import WAIT_S
from .faultproxy import FaultProxy
from .test_idempotency import Gated


async def until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_new_calls_fail_while_the_ones_in_flight_finish(server: IPCServer, make_client) -> None:
    release = asyncio.Event()

    async def slow(msg: Message) -> str:
        await release.wait()
        return "finished"

    worker = await make_client()
    await worker.serve("slow", slow)
    caller = await make_client()
    pending = asyncio.ensure_future(caller.request("slow", timeout=WAIT_S))
    await until(lambda: caller.get_connection_info()["pending_requests"] == 1)  # the request is on the wire
    draining = asyncio.ensure_future(caller.drain(timeout=WAIT_S))
    await asyncio.sleep(0)
    for refused in (caller.request("slow"), caller.notify("slow"), caller.publish("news"), caller.subscribe("news", print)):
        with pytest.raises(NotConnected, match="draining"):
            await refused
    with pytest.raises(NotConnected):
        caller.serve("mine", lambda m: None)
    assert not draining.done()
    release.set()
    assert await asyncio.wait_for(pending, WAIT_S) == "finished"
    assert await asyncio.wait_for(draining, WAIT_S) is True
    assert caller.state.value == "disconnected"


async def test_a_draining_responder_finishes_what_it_has_and_the_server_routes_elsewhere(server: IPCServer, make_client) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls_out: list[Any] = []

    leaving = await make_client()
    staying = await make_client()
    helper = await make_client()
    await helper.serve("helper", lambda m: "helped")

    async def slow(msg: Message) -> str:
        started.set()
        await release.wait()
        calls_out.append(await leaving.request("helper", timeout=WAIT_S))  # a handler still running may call out
        return "from leaving"

    await leaving.serve("work", slow)
    await staying.serve("work", lambda m: "from staying")
    caller = await make_client()
    first = asyncio.ensure_future(caller.request("work", timeout=WAIT_S))
    await asyncio.wait_for(started.wait(), WAIT_S)
    draining = asyncio.ensure_future(leaving.drain(timeout=WAIT_S))
    await until(lambda: "work" not in leaving.get_connection_info()["services"])  # the server acknowledged the unserve
    assert [await caller.request("work", timeout=WAIT_S) for _ in range(4)] == ["from staying"] * 4
    release.set()
    assert await asyncio.wait_for(first, WAIT_S) == "from leaving"
    assert calls_out == ["helped"]
    assert await asyncio.wait_for(draining, WAIT_S) is True


async def test_the_offline_queue_is_flushed_once_connected_again() -> None:
    first = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await first.start()
    port = first.port
    client = IPCClient("app", "127.0.0.1", port, initial_delay=0.02, max_delay=0.1)
    await client.connect()
    await first.close()
    await until(lambda: not client.connected)
    queued = [asyncio.ensure_future(client.request("echo", i, timeout=WAIT_S)) for i in range(5)]
    note = asyncio.ensure_future(client.notify("noted", "n"))
    await until(lambda: client.queue_stats()["size"] == 6)
    draining = asyncio.ensure_future(client.drain(timeout=WAIT_S))
    notes: asyncio.Queue[Any] = asyncio.Queue()
    async with IPCServer("127.0.0.1", port, no_responders_grace_s=0) as second:
        second.add_handler("echo", lambda m: m.payload)
        second.add_handler("noted", lambda m: notes.put_nowait(m.payload))
        assert await asyncio.wait_for(asyncio.gather(*queued), WAIT_S) == list(range(5))
        await note
        assert await asyncio.wait_for(draining, WAIT_S) is True
        assert await asyncio.wait_for(notes.get(), WAIT_S) == "n"


async def test_what_outlives_the_deadline_ends_as_a_disconnect_ends_it(server: IPCServer, make_client) -> None:
    worker = await make_client()
    await worker.serve("hang", lambda m: asyncio.sleep(3600))
    caller = await make_client()
    pending = asyncio.ensure_future(caller.request("hang", timeout=WAIT_S * 4))
    await until(lambda: caller.get_connection_info()["pending_requests"] == 1)
    assert await caller.drain(timeout=0.2) is False
    with pytest.raises(ConnectionLost):
        await pending


async def test_two_drains_share_one_and_a_closed_client_drains_at_once(server: IPCServer, make_client) -> None:
    client = await make_client()
    assert await asyncio.gather(client.drain(timeout=WAIT_S), client.drain(timeout=WAIT_S)) == [True, True]
    assert await client.drain(timeout=WAIT_S) is True  # nothing to do
    await client.connect()  # drained, not spoiled: it may connect again
    assert client.connected
    with pytest.raises(ValueError):
        await client.drain(timeout=0)



@pytest.mark.parametrize("back", [True, False], ids=["server back", "server away"])
async def test_a_keyed_request_whose_connection_drops_mid_drain_is_waited_for(back: bool) -> None:
    """Between its loss and its resend a keyed request is in neither the
    pending table nor the queue; the drain still waits for it (one that
    looked then saw nothing and disconnected, failing it with not_connected).
    Resent and answered, the drain is clean; cut by the deadline, it is not."""
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        handler = Gated()
        server.add_handler("jobs.run", handler)
        proxy = await FaultProxy("127.0.0.1", server.port).start()
        client = IPCClient("app", "127.0.0.1", proxy.port, initial_delay=0.01, max_delay=0.05)
        try:
            await client.connect()
            call = asyncio.ensure_future(client.request("jobs.run", 1, idempotency_key="k", timeout=WAIT_S))
            await asyncio.wait_for(handler.entered.wait(), WAIT_S)
            draining = asyncio.ensure_future(client.drain(timeout=WAIT_S if back else 0.3))
            await asyncio.sleep(0)
            proxy.refuse(not back)
            proxy.cut()
            await asyncio.sleep(0)  # the proxy closes its sockets
            time.sleep(0.03)  # the drain's next look is due when the loss is read: both in one turn of the loop
            if back:
                await until(lambda: server.stats.idempotency["joined"] == 1)  # the resend joined the run
                handler.gate.set()
                assert await asyncio.wait_for(call, WAIT_S) == {"echo": 1}
                assert await asyncio.wait_for(draining, WAIT_S) is True
            else:
                assert await asyncio.wait_for(draining, WAIT_S) is False
                with pytest.raises(NotConnected):  # as disconnect() ends a queued call
                    await asyncio.wait_for(call, WAIT_S)
                handler.gate.set()
        finally:
            await client.disconnect()
            await proxy.close()
