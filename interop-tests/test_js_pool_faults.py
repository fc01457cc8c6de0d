"""The Node pool and load-balanced client under faults, against the real
Python server, a closed port and a listener that never answers
(docs/resilience.md §2, §7, §8), each scenario run by the Python client
too: both count and say the same.

A failed open is a connection attempt, and a call that failed before it
reached a connection is failed in ``metrics()``, as a lone client counts
them; both clients left them out (a pool at a closed port: 0 attempts, a
success rate of 1.0 and 0 failed calls after a failed start() and three
failed requests).

The Node side is ``node/pool_faults.js``."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from conftest import run_node
from test_js_pool import pool_agent  # noqa: F401 (a fixture)

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient
from ipc_protocol import IPCError

HOST = "127.0.0.1"


@pytest.fixture
def refused() -> Iterator[int]:
    """A port bound and not listening: every connect to it is refused."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    """A port that takes connections and never answers the handshake."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, HOST, 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def counts(m: dict[str, Any]) -> list[Any]:
    return [m["connection_attempts"], m["connection_successes"], m["connection_success_rate"], m["messages_failed"], m["message_delivery_rate"]]


async def failure(aw: Any) -> str | None:
    """The code of the error ``aw`` raised; None when it returned."""
    try:
        await aw
    except IPCError as exc:
        return str(exc.code)
    return None


async def py_closed(ports: dict[str, int]) -> dict[str, Any]:
    pool = ConnectionPool("app", HOST, ports["refused"], initial_delay=5)  # no background retry meanwhile, as Node's
    errors = [await failure(pool.start())]
    errors += [await failure(pool.request("x", 1, timeout=0.5)) for _ in range(3)]
    open_counts = counts(pool.metrics())
    await pool.close()
    errors.append(await failure(pool.request("x", 1, timeout=0.5)))
    return {"errors": errors, "counts": open_counts, "closed": pool.metrics()["messages_failed"]}


async def py_silent(ports: dict[str, int]) -> dict[str, Any]:
    pool = ConnectionPool("app", HOST, ports["silent"], connect_timeout=0.2, initial_delay=5)
    errors = [await failure(pool.start()), await failure(pool.request("x", 1, timeout=2))]
    out = {"errors": errors, "counts": counts(pool.metrics())}
    await pool.close()
    return out


async def py_waited(ports: dict[str, int]) -> dict[str, Any]:
    pool = ConnectionPool("app", HOST, ports["real"], min_connections=1, max_connections=1)
    await pool.start()
    held = await pool.acquire()
    timed_out = await failure(pool.request("py.echo", 1, timeout=0.1))
    pool.release(held)
    answer = await pool.request("py.echo", 2)
    m = pool.metrics()
    await pool.close()
    return {"timedOut": timed_out, "answer": answer, "failedDelivered": [m["messages_failed"], m["messages_delivered"], m["message_delivery_rate"]]}


async def py_balanced(ports: dict[str, int]) -> dict[str, Any]:
    stalled = LoadBalancedClient("app", [(HOST, ports["silent"])], min_connections=0, health_check_interval=None, acquire_timeout=0.2, connect_timeout=5)
    await stalled.start()
    timed_out = await failure(stalled.request("x", 1, timeout=2))
    stalled_counts = counts(stalled.metrics())
    await stalled.close()
    down = LoadBalancedClient("app", [(HOST, ports["refused"])], health_check_interval=None, initial_delay=5)
    errors = [await failure(down.start()), await failure(down.request("x", 1, timeout=1))]
    await down.close()
    errors.append(await failure(down.request("x", 1, timeout=1)))
    return {"timedOut": timed_out, "stalled": stalled_counts, "errors": errors, "down": counts(down.metrics())}


async def py_streams(ports: dict[str, int]) -> dict[str, Any]:
    pool = ConnectionPool("app", HOST, ports["refused"], min_connections=0)
    errors = [await failure(pool.stream("x", timeout=0.5).__anext__())]
    opened = pool.metrics()["messages_failed"]
    await pool.close()
    errors.append(await failure(pool.stream("x").__anext__()))
    lb = LoadBalancedClient("app", [(HOST, ports["refused"])], health_check_interval=None, min_connections=0)
    errors.append(await failure(lb.stream("x").__anext__()))
    await lb.start()
    errors += [await failure(lb.stream("x", timeout=1).__anext__()), await failure(lb.stream("x", timeout=1).__anext__())]
    balanced = lb.metrics()["messages_failed"]
    await lb.close()
    return {"errors": errors, "failed": [opened, pool.metrics()["messages_failed"], balanced]}


async def py_queued(ports: dict[str, int]) -> dict[str, Any]:
    texts = []
    for options in ({}, {"queue_max_size": 0}):
        client = IPCClient("app", HOST, ports["refused"], wait_on_first_connect=True, initial_delay=5, **options)
        reconnecting = asyncio.Event()
        client.on("reconnecting", lambda *_: reconnecting.set())
        connecting = asyncio.ensure_future(client.connect())
        await asyncio.wait_for(reconnecting.wait(), 5)
        texts.append(await failure_text(client.request("r", 1, timeout=0.3)))
        if not options:
            texts.append(await failure_text(client.publish("q", 1, ack=True, timeout=0.3)))
            texts.append(await failure_text(client.request("r", 1, timeout=0.3, on_disconnect="fail")))
        await client.disconnect()
        await asyncio.gather(connecting, return_exceptions=True)
    return {"texts": texts}


async def failure_text(aw: Any) -> str:
    try:
        await aw
    except IPCError as exc:
        return str(exc)
    raise AssertionError("it did not fail")


EXPECTED: dict[str, dict[str, Any]] = {
    # was: counts [0, 0, 1.0, 0, 1.0] in both clients (closed: 0 failed)
    "closed": {"errors": ["not_connected"] * 5, "counts": [4, 0, 0.0, 3, 0.0], "closed": 4},
    # was: [0, 0, 1.0, 0, 1.0]
    "silent": {"errors": ["not_connected"] * 2, "counts": [2, 0, 0.0, 1, 0.0]},
    # was: [0, 1, 1.0]
    "waited": {"timedOut": "timeout", "answer": 2, "failedDelivered": [1, 1, 0.5]},
    # was: stalled [0, 0, 1.0, 0, 1.0], down [1, 0, 0.0, 0, 1.0]
    "balanced": {"timedOut": "timeout", "stalled": [1, 0, 0.0, 1, 0.0], "errors": ["not_connected"] * 3, "down": [1, 0, 0.0, 2, 0.0]},
    # was: [0, 0, 0] (a stream that reached no member, the pool closed; not started, one open refused, no healthy server)
    "streams": {"errors": ["not_connected"] * 5, "failed": [1, 2, 3]},
}
PYTHON = {"closed": py_closed, "silent": py_silent, "waited": py_waited, "balanced": py_balanced, "streams": py_streams}

# docs/resilience.md §4, the same words in both clients, Python in seconds and Node in milliseconds
# (was: Python "request on 'r' timed out in the offline queue", Node "no connection for r before its
# deadline (it waited in the offline queue)"; Python "not connected (reconnecting) and the call asked
# to fail fast" for both refusals, Node "the client is reconnecting").
QUEUED = [
    "no response on 'r' within {t} (it waited in the offline queue)",
    "no response on 'q' within {t} (it waited in the offline queue)",
    "the client is reconnecting and the call asked to fail fast ({fail})",
    "the client is reconnecting and its offline queue holds nothing ({off})",
]


async def test_both_clients_count_failed_opens_and_calls_that_reached_no_connection(node: str, handler_server: Any, refused: int, silent: int) -> None:
    ports = {"real": handler_server.port, "refused": refused, "silent": silent}
    scenarios = list(EXPECTED)
    lines = await run_node(node, "pool_faults.js", json.dumps({"scenarios": scenarios, **ports}))
    node_results = {line.pop("scenario"): line for line in lines}
    for name in scenarios:
        assert node_results[name] == EXPECTED[name], ("node", name, node_results[name])
        assert await PYTHON[name](ports) == EXPECTED[name], ("python", name)


async def test_both_clients_say_the_same_of_a_call_the_offline_queue_did_not_send(node: str, refused: int) -> None:
    """A request (or a publish with ack) that expired in the offline queue
    names its own timeout, as any request's (§4); one refused while
    reconnecting says why: the call's on_disconnect, or the queue being off."""
    lines = await run_node(node, "pool_faults.js", json.dumps({"scenarios": ["queued"], "refused": refused}))
    assert lines[0]["texts"] == [t.format(t="300 ms", fail="onDisconnect 'fail'", off="queueMaxSize 0") for t in QUEUED]
    assert (await py_queued({"refused": refused}))["texts"] == [t.format(t="0.3 s", fail='on_disconnect "fail"', off="queue_max_size 0") for t in QUEUED]


async def test_a_timed_out_call_names_its_own_timeout_in_both_clients(node: str, handler_server: Any, pool_agent: Any) -> None:
    """docs/resilience.md §4: the RequestTimeout of a pool's or a
    load-balanced client's call names the call's own timeout as it was
    given, however long it waited for a connection (was, 0.5 s waiting
    0.2 s: Python "within 0.299 s", Node "within 298.707 ms"; and Node
    "within 299.747 ms" for 300 ms with no wait at all). The proxy
    black-holes the path once connected, so the answer is the client's own
    timeout, never the server's (which races it)."""
    from tests.faultproxy import FaultProxy

    async with FaultProxy(HOST, handler_server.port) as proxy:
        agents = [
            await pool_agent("pool", port=proxy.port, minConnections=1, maxConnections=1),
            await pool_agent("balanced", servers=[f"{HOST}:{proxy.port}"], healthCheckInterval=None),
        ]
        pool = ConnectionPool("app", HOST, proxy.port, min_connections=1, max_connections=1)
        lb = LoadBalancedClient("app", [(HOST, proxy.port)], health_check_interval=None)
        try:
            for agent in agents:
                await agent.call("start")
            await pool.start()
            await lb.start()
            proxy.blackhole()
            for agent in agents:
                error = await agent.call_error("request", channel="py.echo", payload=1, timeoutMs=300)
                assert (error["code"], error["message"]) == ("timeout", "no response on 'py.echo' within 300 ms")
                await agent.call("holdFor", ms=200)
                error = await agent.call_error("request", channel="py.echo", payload=2, timeoutMs=500)
                assert (error["code"], error["message"]) == ("timeout", "no response on 'py.echo' within 500 ms")
            loop = asyncio.get_running_loop()
            for owner, target in ((pool, pool), (lb._pools[lb.servers[0]], lb)):
                held = await owner.acquire()
                loop.call_later(0.2, owner.release, held)
                try:
                    await target.request("py.echo", 2, timeout=0.5)
                except IPCError as exc:
                    assert (exc.code, str(exc)) == ("timeout", "no response on 'py.echo' within 0.5 s")
                else:
                    raise AssertionError("answered through a black hole")
        finally:
            proxy.blackhole(False)
            await pool.close()
            await lb.close()
