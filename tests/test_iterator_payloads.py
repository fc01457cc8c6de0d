"""An iterator payload (a generator) is read once, where the call takes it
(docs/protocol.md §16.3): the paths that read a payload twice (a
coalescing or cache key, the offline queue's size and its replay, a wait
in the full send buffer's line) sent what was left of it, [] ."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from ipc_client import ConnectionPool, IPCClient
from ipc_protocol import RequestTimeout
from ipc_protocol.payload_paths import read_once
from ipc_server import IPCServer

from .conftest import WAIT_S, until
from .faultproxy import FaultProxy


async def _echo(msg: Any) -> Any:
    return msg.payload


def test_read_once_lists_iterators_only() -> None:
    d = {"a": 1}
    assert read_once(d) is d
    assert read_once(None) is None
    t = (1, 2)
    assert read_once(t) is t
    assert read_once(iter([1, 2])) == [1, 2]
    assert read_once(x for x in "ab") == ["a", "b"]
    assert read_once({1}) == {1}  # a set is not used up by reading it


async def test_coalesced_and_cached_requests_send_the_items(make_client) -> None:
    resp = await make_client(reconnect=False)
    req = await make_client(reconnect=False)
    await resp.serve("echo", _echo)
    assert await req.request("echo", iter([1, 2, 3]), coalesce=True) == [1, 2, 3]
    assert await req.request("echo", iter([4, 5]), cache_ttl=10) == [4, 5]
    # the answer is cached under the items' key, not under []'s
    assert await req.request("echo", [4, 5], cache_ttl=10) == [4, 5]
    assert await req.request("echo", [], cache_ttl=10) == []


async def test_pool_coalesced_request_sends_the_items(server: IPCServer, make_client) -> None:
    resp = await make_client(reconnect=False)
    await resp.serve("echo", _echo)
    pool = ConnectionPool("app", "127.0.0.1", server.port, max_connections=1)
    try:
        await asyncio.wait_for(pool.start(), WAIT_S)
        assert await pool.request("echo", (x for x in [1, 2]), coalesce=True, timeout=WAIT_S) == [1, 2]
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_offline_queue_replays_the_items() -> None:
    # The requester reaches the servers through a proxy that refuses it
    # until the responder has subscribed on the second server: a publish
    # replayed before any subscription reaches no one (at most once, §5).
    first = IPCServer("127.0.0.1", 0, shutdown_grace_s=0.1)
    await first.start()
    proxy = await FaultProxy("127.0.0.1", first.port).start()
    req = IPCClient("app", "127.0.0.1", proxy.port, request_timeout=WAIT_S, initial_delay=0.02, max_delay=0.05)
    await asyncio.wait_for(req.connect(), WAIT_S)
    proxy.refuse(True)
    await first.close()
    await until(lambda: not req.connected)
    answer = asyncio.ensure_future(req.request("echo", iter([1, 2, 3])))
    published = asyncio.ensure_future(req.publish("pub", (x for x in [4, 5, 6])))
    await until(lambda: len(req._outbox.queue) == 2)
    second = IPCServer("127.0.0.1", 0, shutdown_grace_s=0.1, no_responders_grace_s=WAIT_S)
    await second.start()
    proxy.retarget("127.0.0.1", second.port)
    resp = IPCClient("app", "127.0.0.1", second.port, reconnect=False)
    got: asyncio.Queue[Any] = asyncio.Queue()
    try:
        await asyncio.wait_for(resp.connect(), WAIT_S)
        await resp.serve("echo", _echo)
        await resp.subscribe("pub", lambda m: got.put_nowait(m.payload))
        proxy.refuse(False)
        assert await asyncio.wait_for(answer, WAIT_S) == [1, 2, 3]
        await asyncio.wait_for(published, WAIT_S)
        assert await asyncio.wait_for(got.get(), WAIT_S) == [4, 5, 6]
    finally:
        for c in (resp, req):
            await asyncio.wait_for(c.disconnect(), WAIT_S)
        await second.close()
        await proxy.close()


async def _fill(req: IPCClient) -> None:
    """Publish until the send buffer is full (the server stopped): the next call waits in its line."""
    body = "x" * (256 * 1024)
    for _ in range(400):
        try:
            await req.publish("sink", body, timeout=0.2)
        except RequestTimeout:
            return
    raise AssertionError("the send buffer never filled")


async def test_request_waiting_for_the_full_send_buffer_sends_the_items(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0")
    resp = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
    req = IPCClient("app", "127.0.0.1", srv.port, reconnect=False, request_timeout=20)
    await asyncio.wait_for(resp.connect(), WAIT_S)
    await asyncio.wait_for(req.connect(), WAIT_S)
    try:
        await resp.serve("echo", _echo)
        conn = req._link.conn
        for kw in ({}, {"idempotency_key": "k"}):
            srv.signal(signal.SIGSTOP)
            try:
                await _fill(req)
                answer = asyncio.ensure_future(req.request("echo", iter([1, 2, 3]), timeout=20, **kw))
                await until(lambda: len(conn.line) > 0)
            finally:
                srv.signal(signal.SIGCONT)
            assert await asyncio.wait_for(answer, 20) == [1, 2, 3], kw
    finally:
        for c in (resp, req):
            await asyncio.wait_for(c.disconnect(), 10)


async def test_a_load_balanced_failover_sends_the_items_again() -> None:
    """The load-balanced client reads it once, at its call: a call that
    fails over from a server with no responder (``no_responders``,
    docs/resilience.md §8) sends the next server the same items, not the
    [] a second read of the generator would give (as Node's,
    js-client/test/iterator_payloads.test.js)."""
    from ipc_client import LoadBalancedClient

    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as a, IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as b:
        b.add_handler("items", _echo)  # a has no responder for it
        lb = LoadBalancedClient("app", [("127.0.0.1", a.port), ("127.0.0.1", b.port)], health_check_interval=None, connect_timeout=2)
        await lb.start()
        try:
            for _ in range(2):
                assert await lb.request("items", (i for i in range(3)), timeout=WAIT_S) == [0, 1, 2]
                assert await lb.request("items", iter([4, 5]), timeout=WAIT_S) == [4, 5]
            stats = lb.server_stats()
            assert stats[0]["errors"] >= 1 and stats[0]["requests"] >= 1  # a was tried first, at least once
        finally:
            await lb.close()
