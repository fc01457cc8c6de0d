"""The Python client's offline queue over real loopback TCP, with the fault
proxy between it and the real server (docs/resilience.md §4): what waits
during an outage and in which order, deadlines, the overflow policies,
calls made while connecting, and the queue file (persistence, one owner)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient, QueueFileInUse
from ipc_protocol import FrameTooLarge, NotConnected, QueueFull, RequestTimeout
from ipc_server import IPCServer

from .conftest import WAIT_S
from .proxied import FAST, outage, proxy, state_event, until, via_proxy  # noqa: F401 - proxy and via_proxy are fixtures


async def test_requests_queued_during_an_outage_are_delivered_in_priority_order(server, proxy, via_proxy) -> None:
    seen: list[int] = []

    async def work(m: Any) -> int:  # on the loop, in the order they arrive (a plain one runs in a thread of its own)
        seen.append(m.payload)
        return m.payload * 10

    server.add_handler("work", work)
    client = await via_proxy()
    await outage(proxy, client)
    calls = [asyncio.ensure_future(client.request("work", n, priority=p, timeout=WAIT_S)) for n, p in [(1, 0), (2, 5), (3, 0), (4, 9)]]
    note = asyncio.ensure_future(client.notify("work", 5, priority=-1))
    await asyncio.wait_for(note, WAIT_S)  # a one-way call completes once it is queued
    await until(lambda: client.queue_stats()["size"] == 5)
    assert client.queue_stats()["by_priority"] == {9: 1, 5: 1, 0: 2, -1: 1}
    reconnected = state_event(client, "reconnected")
    proxy.refuse(False)
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == [10, 20, 30, 40]
    await asyncio.wait_for(reconnected.get(), WAIT_S)
    await until(lambda: len(seen) == 5)
    assert seen[:4] == [4, 2, 1, 3] and seen[4] == 5
    assert client.queue_stats()["size"] == 0

async def test_a_queued_request_fails_with_timeout_at_its_deadline(proxy, via_proxy) -> None:
    client = await via_proxy()
    await outage(proxy, client)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Its own timeout named, as any request's, and Node's (was: "request on 'anything' timed out in the offline queue").
    with pytest.raises(RequestTimeout, match=r"^no response on 'anything' within 0\.2 s \(it waited in the offline queue\)$"):
        await client.request("anything", timeout=0.2)
    waited = loop.time() - started
    assert 0.2 <= waited < 0.2 + 1.0  # at its deadline: not before, not long after
    assert client.queue_stats()["size"] == 0
    assert client.queue_stats()["dropped"] == 1  # left the queue unsent
    assert client.metrics()["messages_failed"] == 1
    with pytest.raises(RequestTimeout, match=r"^no response on 'news' within 0\.2 s \(it waited in the offline queue\)$"):
        await client.publish("news", 1, ack=True, timeout=0.2)  # an ack it waits for: the same words (was: "request on 'news'")

async def test_fail_fast_policy_and_disconnected_state(proxy, via_proxy) -> None:
    client = await via_proxy()
    unqueued = await via_proxy(queue_max_size=0)
    await outage(proxy, client)
    await until(lambda: unqueued.state.value == "reconnecting")
    # Node's words, what the call asked or the queue being off (was: "... and the call asked to fail fast" for both).
    with pytest.raises(NotConnected, match=r'^the client is reconnecting and the call asked to fail fast \(on_disconnect "fail"\)$'):
        await client.request("x", on_disconnect="fail")
    with pytest.raises(NotConnected):
        await client.publish("x", 1, on_disconnect="fail")
    with pytest.raises(NotConnected, match=r"^the client is reconnecting and its offline queue holds nothing \(queue_max_size 0\)$"):
        await unqueued.request("x")
    await client.disconnect()
    with pytest.raises(NotConnected, match=r"^not connected \(disconnected\)$"):  # disconnected: nothing would ever send it
        await client.request("x")
    failing = IPCClient("app", "127.0.0.1", proxy.port, on_disconnect="fail", **FAST)
    assert failing.on_disconnect == "fail"
    with pytest.raises(ValueError):
        IPCClient("app", on_disconnect="maybe")

async def test_full_queue_rejects_or_evicts_by_policy(proxy, via_proxy) -> None:
    rejecting = await via_proxy(queue_max_size=2)
    evicting = await via_proxy(queue_max_size=2, queue_overflow="drop_oldest")
    await outage(proxy, rejecting)
    await until(lambda: evicting.state.value == "reconnecting")
    r1 = asyncio.ensure_future(rejecting.request("a", timeout=WAIT_S))
    r2 = asyncio.ensure_future(rejecting.request("b", timeout=WAIT_S))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await rejecting.request("c")
    dropped = state_event(evicting, "queue_dropped")
    await evicting.publish("p.old", 1)
    e1 = asyncio.ensure_future(evicting.request("e1", timeout=WAIT_S))
    await asyncio.sleep(0)
    e2 = asyncio.ensure_future(evicting.request("e2", timeout=WAIT_S))  # evicts the publish
    e3 = asyncio.ensure_future(evicting.request("e3", timeout=WAIT_S))  # evicts e1
    event = await asyncio.wait_for(dropped.get(), WAIT_S)
    assert event == {"reason": "evicted", "channel": "p.old", "message_type": "publish", "priority": 0}
    with pytest.raises(QueueFull):
        await e1
    assert evicting.queue_stats()["dropped"] == 2
    await rejecting.disconnect()
    await evicting.disconnect()
    for fut in (r1, r2, e2, e3):  # settled by disconnect(), exactly once
        with pytest.raises(NotConnected):
            await fut

async def test_subscriptions_are_restored_before_the_queue_is_replayed(proxy, via_proxy) -> None:
    client = await via_proxy()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await client.subscribe("news.*", lambda m: got.put_nowait(m.payload))
    served = client.serve("svc.echo", lambda m: m.payload)
    await served
    await outage(proxy, client)
    await client.publish("news.a", "queued while away")
    answer = asyncio.ensure_future(client.request("svc.echo", "to myself", timeout=WAIT_S))
    proxy.refuse(False)
    assert await asyncio.wait_for(got.get(), WAIT_S) == "queued while away"
    assert await asyncio.wait_for(answer, WAIT_S) == "to myself"

async def test_persisted_one_way_messages_survive_a_client_restart(tmp_path: Path, server, proxy, make_client, via_proxy) -> None:
    path = str(tmp_path / "outbox.db")
    listener = await make_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await listener.subscribe("audit", lambda m: got.put_nowait(m.payload))
    first = await via_proxy(queue_path=path)
    await outage(proxy, first)
    for n in range(3):
        await first.publish("audit", n, priority=n, timeout=60)
    await first.notify("nobody.listens", "x", timeout=0.05)  # expires before the restart
    await first.disconnect()  # the process "stops" with messages still queued
    assert first.queue_stats()["size"] == 0
    proxy.refuse(False)
    second = await via_proxy(queue_path=path, connect=False)
    await asyncio.sleep(0.06)
    await second.connect()
    assert [await asyncio.wait_for(got.get(), WAIT_S) for _ in range(3)] == [2, 1, 0]
    assert second.metrics()["queue_dropped"] == 1  # the expired notification, counted
    await second.disconnect()  # one owner at a time
    third = await via_proxy(queue_path=path)  # sent means gone from the file
    assert third.queue_stats()["size"] == 0

async def test_connect_after_disconnect_reloads_persisted_messages_without_counting_them_dropped(
    tmp_path: Path, server, proxy, make_client, via_proxy
) -> None:
    # The same scenario and counts as js-client/test/resilience_queue.test.js.
    listener = await make_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await listener.subscribe("kept", lambda m: got.put_nowait(m.payload))
    client = await via_proxy(queue_path=str(tmp_path / "outbox.db"))
    await outage(proxy, client)
    for n in range(3):
        await client.publish("kept", n, timeout=60)
    await client.disconnect()
    assert client.queue_stats()["dropped"] == 0
    proxy.refuse(False)
    await client.connect()  # takes the file back: what it holds is loaded again, then sent
    assert [await asyncio.wait_for(got.get(), WAIT_S) for _ in range(3)] == [0, 1, 2]
    stats = client.queue_stats()
    assert (stats["size"], stats["dropped"], client.metrics()["queue_dropped"]) == (0, 0, 0)


async def test_calls_queued_while_connecting_go_out_and_later_calls_follow_them(server, proxy, via_proxy) -> None:
    server.add_handler("echo", lambda m: m.payload if isinstance(m.payload, int) else len(m.payload))
    client = await via_proxy(connect=False)
    proxy.set_latency(0.05)  # the handshake takes a while: calls made meanwhile are queued
    connecting = asyncio.ensure_future(client.connect())
    await until(lambda: client.state.value == "connecting")
    big = "x" * 1_000_000
    queued = [asyncio.ensure_future(client.request("echo", big, timeout=WAIT_S)) for _ in range(8)]
    proxy.set_latency(0)
    await asyncio.wait_for(connecting, WAIT_S)
    assert await client.request("echo", 7, timeout=WAIT_S) == 7  # behind the replay, not stuck
    assert await asyncio.wait_for(asyncio.gather(*queued), WAIT_S) == [1_000_000] * 8
    assert client.queue_stats()["size"] == 0

async def test_calls_queued_during_a_failing_first_connect_fail_with_it(proxy, via_proxy) -> None:
    proxy.blackhole(True)  # TCP connects, the handshake never completes
    client = await via_proxy(connect=False, connect_timeout=0.3)
    connecting = asyncio.ensure_future(client.connect())
    await until(lambda: client.state.value == "connecting")
    loop = asyncio.get_running_loop()
    started = loop.time()
    queued = asyncio.ensure_future(client.request("x", timeout=WAIT_S))
    with pytest.raises(NotConnected):
        await connecting
    with pytest.raises(NotConnected):
        await asyncio.wait_for(queued, WAIT_S)
    assert loop.time() - started < WAIT_S / 2  # at the failed connect, not at its own 5 s deadline
    assert client.queue_stats()["size"] == 0

async def test_two_clients_cannot_share_a_queue_file(tmp_path: Path, via_proxy) -> None:
    path = str(tmp_path / "outbox.db")
    owner = await via_proxy(queue_path=path)
    other = await via_proxy(queue_path=path, connect=False)
    with pytest.raises(QueueFileInUse):
        await other.connect()
    assert other.state.value == "disconnected"
    await owner.disconnect()  # gives the file up
    assert await other.connect()

async def test_persisted_messages_that_do_not_fit_or_cannot_be_read_are_reported(tmp_path: Path, server, proxy, make_client, via_proxy) -> None:
    """Loading a queue file into a smaller queue drops what does not fit as
    any dropped message is dropped: event, counters, row deleted."""
    path = str(tmp_path / "outbox.db")
    first = await via_proxy(queue_path=path)
    await outage(proxy, first)
    for n in range(3):
        await first.publish("audit", n, priority=n, timeout=60)
    await first.disconnect()
    with sqlite3.connect(path) as db:  # a row no client could have written
        db.execute("INSERT INTO queued (priority, expires_at, body) VALUES (0, 1e12, x'00ff')")
    db.close()
    proxy.refuse(False)
    second = await via_proxy(queue_path=path, queue_max_size=1, connect=False)
    dropped, errors = state_event(second, "queue_dropped"), state_event(second, "error")
    await second.connect()
    events = [await asyncio.wait_for(dropped.get(), WAIT_S) for _ in range(2)]
    assert sorted(e["priority"] for e in events) == [1, 2] and {e["reason"] for e in events} == {"evicted"}
    assert (await asyncio.wait_for(errors.get(), WAIT_S)).code is not None
    assert second.queue_stats()["dropped"] == 3
    assert second.metrics()["messages_failed"] == 3
    await until(lambda: second.queue_stats()["size"] == 0)  # the one that fit was sent
    await second.disconnect()
    with sqlite3.connect(path) as db:  # and nothing is left in the file
        assert db.execute("SELECT COUNT(*) FROM queued").fetchone()[0] == 0
    db.close()

async def test_queued_calls_the_new_server_refuses_count_as_dropped(proxy, via_proxy) -> None:
    """A request that leaves the queue unsent counts in ``dropped`` as a
    one-way message does (here: too large for the server it reconnects to)."""
    async with IPCServer("127.0.0.1", 0, max_frame_size=65536) as small:
        client = await via_proxy()
        await outage(proxy, client)
        request = asyncio.ensure_future(client.request("big", "x" * 200_000, timeout=WAIT_S))
        await client.publish("big", "y" * 200_000)
        await until(lambda: client.queue_stats()["size"] == 2)
        proxy.retarget("127.0.0.1", small.port)
        proxy.refuse(False)
        with pytest.raises(FrameTooLarge):
            await asyncio.wait_for(request, WAIT_S)
        await until(lambda: client.queue_stats()["size"] == 0)
        assert client.queue_stats()["dropped"] == 2
        await client.disconnect()
