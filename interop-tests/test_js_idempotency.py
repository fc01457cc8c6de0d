"""Idempotent retries across languages (docs/protocol.md §6.6): the Node
client's ``idempotencyKey`` against the real server (``python -m
ipc_server``) with Python and Node responders. A repeat of a key while its
request runs joins it and the handler runs once; a repeat after it gets
the stored answer; another payload under the key is refused
``idempotency_conflict``; the window ends and its key cap drops the oldest;
a Node request whose connection drops, or whose load-balanced client fails
over, after it reached the server still runs once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from conftest import WAIT_S
from test_js_pool import pool_agent  # noqa: F401 (a fixture)

from tests.faultproxy import FaultProxy

FAST = {"initialDelay": 20, "maxDelay": 100}


class Gated:
    """A Python responder handler that counts its runs and answers once let through."""

    def __init__(self) -> None:
        self.runs: list[Any] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, msg: Any) -> Any:
        self.runs.append(msg.payload)
        self.entered.set()
        await self.gate.wait()
        return {"echo": msg.payload, "key": (msg.headers or {}).get("idempotency-key")}


async def window(client: Any) -> dict[str, int]:
    """The server's idempotency counters (the ``stats`` action, §8)."""
    return (await client.request("system", {"action": "stats"}))["idempotency"]


async def until(check: Callable[[], Any], *, timeout: float = WAIT_S) -> None:
    """Polls an async check until it holds (bounded)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def gated_responder(py_client: Callable[..., Any], port: int, channel: str = "jobs.run") -> tuple[Any, Gated]:
    handler = Gated()
    responder = await py_client(port)
    await responder.serve(channel, handler)
    return responder, handler


async def test_node_requests_with_one_key_join_the_run_and_the_python_responder_runs_once(server, node_agent, py_client):
    responder, handler = await gated_responder(py_client, server.port)
    a, b = await node_agent(server.port), await node_agent(server.port)
    await a.call("startRequest", tag="a", channel="jobs.run", payload={"n": 1}, idempotencyKey="job-1", timeoutMs=8000)
    await asyncio.wait_for(handler.entered.wait(), WAIT_S)
    await b.call("startRequest", tag="b", channel="jobs.run", payload={"n": 1}, idempotencyKey="job-1", timeoutMs=8000)
    await until(lambda: _joined(responder, 1))
    handler.gate.set()
    done = [await a.wait_event("requestDone"), await b.wait_event("requestDone")]
    assert all(d["ok"] for d in done), done
    assert [d["payload"] for d in done] == [{"echo": {"n": 1}, "key": "job-1"}] * 2
    # After it finished: the stored answer, the handler not run again.
    again = await b.call("request", channel="jobs.run", payload={"n": 1}, idempotencyKey="job-1")
    assert again["payload"] == {"echo": {"n": 1}, "key": "job-1"}
    assert handler.runs == [{"n": 1}]
    assert (await window(responder))["replayed"] == 1


async def _joined(client: Any, n: int) -> bool:
    return (await window(client))["joined"] >= n


async def test_python_requests_with_one_key_run_once_at_a_node_responder(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="jobs.node", kind="slow", delayMs=500)
    a, b = await py_client(server.port), await py_client(server.port)
    first = asyncio.ensure_future(a.request("jobs.node", {"n": 2}, idempotency_key="job-2", timeout=WAIT_S))
    served = await agent.wait_event("served")
    assert served["request"]["headers"]["idempotency-key"] == "job-2"  # the header reaches the responder
    second = asyncio.ensure_future(b.request("jobs.node", {"n": 2}, idempotency_key="job-2", timeout=WAIT_S))
    assert await asyncio.wait_for(asyncio.gather(first, second), WAIT_S) == [{"n": 2}, {"n": 2}]
    assert await a.request("jobs.node", {"n": 2}, idempotency_key="job-2") == {"n": 2}
    assert agent.count("served") == 1
    counts = await window(a)
    assert (counts["started"], counts["joined"], counts["replayed"]) == (1, 1, 1)


async def test_a_key_reused_for_another_payload_is_refused_in_node(server, node_agent, py_client):
    responder, handler = await gated_responder(py_client, server.port)
    handler.gate.set()
    agent = await node_agent(server.port)
    await agent.call("request", channel="jobs.run", payload=1, idempotencyKey="k")
    error = await agent.call_error("request", channel="jobs.run", payload=2, idempotencyKey="k")
    assert (error["code"], error["name"]) == ("idempotency_conflict", "IdempotencyConflictError")
    error = await agent.call_error("request", channel="jobs.run", payload=1, idempotencyKey="")
    assert error["name"] == "TypeError"  # refused before sending
    assert handler.runs == [1]


async def test_the_window_ends_and_its_key_cap_drops_the_oldest(start_server, node_agent, py_client):
    server = await start_server("--idempotency-window", "0.5", "--idempotency-max-keys", "2")
    responder, handler = await gated_responder(py_client, server.port)
    handler.gate.set()
    agent = await node_agent(server.port)
    for key in ("a", "b", "c"):
        await agent.call("request", channel="jobs.run", payload=key, idempotencyKey=key)
    assert (await agent.call("request", channel="jobs.run", payload="c", idempotencyKey="c"))["payload"]["echo"] == "c"
    assert handler.runs == ["a", "b", "c"]
    await agent.call("request", channel="jobs.run", payload="a", idempotencyKey="a")  # evicted: it runs again
    assert handler.runs == ["a", "b", "c", "a"]
    assert (await window(responder))["evicted"] == 2  # "a" first, then "b" for the new "a"

    async def all_expired() -> bool:
        return (await window(responder))["stored"] == 0

    await until(all_expired)  # the window's end, with no request to trigger it
    await agent.call("request", channel="jobs.run", payload="c", idempotencyKey="c")
    assert handler.runs == ["a", "b", "c", "a", "c"]


async def test_a_node_request_whose_connection_drops_after_reaching_the_server_runs_once(server, node_agent, py_client):
    responder, handler = await gated_responder(py_client, server.port)
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        agent = await node_agent(proxy.port, **FAST)
        await agent.call("startRequest", tag="r", channel="jobs.run", payload="x", idempotencyKey="job-3", timeoutMs=8000)
        await asyncio.wait_for(handler.entered.wait(), WAIT_S)
        proxy.cut()
        await agent.wait_event("reconnected")
        await until(lambda: _joined(responder, 1))  # the resend, from the offline queue, joined the run
        handler.gate.set()
        done = await agent.wait_event("requestDone")
        assert done["ok"] and done["payload"] == {"echo": "x", "key": "job-3"}, done
        assert handler.runs == ["x"]
    finally:
        await proxy.close()


async def test_a_node_load_balanced_failover_with_a_key_runs_once(server, pool_agent, py_client):  # noqa: F811
    # Two routes to one server; the call takes the first (a proxy), which is
    # cut while the handler runs: the retry on the second route joins the run.
    responder, handler = await gated_responder(py_client, server.port)
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    try:
        agent = await pool_agent("balanced", servers=[f"127.0.0.1:{proxy.port}", f"127.0.0.1:{server.port}"], healthCheckInterval=60000)
        await agent.call("start")
        await agent.call("startRequest", tag="lb", channel="jobs.run", payload="y", idempotencyKey="job-4", timeoutMs=8000)
        await asyncio.wait_for(handler.entered.wait(), WAIT_S)
        proxy.cut()
        await until(lambda: _joined(responder, 1))
        handler.gate.set()
        done = await agent.wait_event("requestDone")
        assert done["ok"] and done["payload"] == {"echo": "y", "key": "job-4"}, done
        assert handler.runs == ["y"]
    finally:
        await proxy.close()
