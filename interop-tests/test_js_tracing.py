"""One trace across Node and Python (docs/tracing.md): a Node caller's
request to a Python responder that itself requests a Node responder keeps
one trace id over the three hops, each hop a new span whose parent is the
sender's; publishes carry the trace both ways. Real server, real Node
processes; OpenTelemetry spans in Node: test_js_tracing_otel.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from conftest import WAIT_S

from ipc_client import tracing


def ids(traceparent: str) -> tuple[str, str, str]:
    parsed = tracing.parse_traceparent(traceparent)
    assert parsed is not None, traceparent
    return parsed


async def test_one_trace_id_over_node_python_node(server, node_agent, py_client, caplog):
    caller = await node_agent(server.port)
    leaf = await node_agent(server.port)
    await leaf.call("serve", channel="node.leaf", kind="trace")
    py = await py_client(server.port)

    async def hop(msg: Any) -> Any:
        ctx = tracing.current()
        assert ctx is not None
        return {"by": "python", "headers": msg.headers, "context": {"traceId": ctx.trace_id, "spanId": ctx.span_id, "parentId": ctx.parent_id},
                "next": await py.request("node.leaf", msg.payload, timeout=WAIT_S)}  # fmt: skip

    await py.serve("py.hop", hop)
    with caplog.at_level(logging.DEBUG, logger="ipc_client.tracing"):
        res = await caller.call("request", channel="py.hop", payload={"n": 1}, timeoutMs=8000)
    python, node = res["payload"], res["payload"]["next"]
    assert (python["by"], node["by"]) == ("python", "node")

    # Hop 1, Node -> Python: the caller started a trace (it was in none).
    trace_id, caller_span, flags = ids(python["headers"]["traceparent"])
    assert flags == "01"
    assert python["context"] == {"traceId": trace_id, "spanId": python["context"]["spanId"], "parentId": caller_span}
    # Hop 2, Python -> Node: the Python handler's own request, a child of its span.
    trace_2, python_call_span, _ = ids(node["headers"]["traceparent"])
    assert trace_2 == trace_id
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request node.leaf ")]
    assert sent == [f"request node.leaf trace={trace_id} span={python_call_span} parent={python['context']['spanId']}"]
    # The Node responder's context: a new span whose parent is the Python call's.
    assert (node["context"]["traceId"], node["context"]["parentId"]) == (trace_id, python_call_span)
    spans = [caller_span, python["context"]["spanId"], python_call_span, node["context"]["spanId"]]
    assert len(set(spans)) == 4


async def test_publishes_carry_the_trace_both_ways(server, node_agent, py_client):
    agent = await node_agent(server.port)
    py = await py_client(server.port)
    got: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
    await py.subscribe("from.node", lambda m: got.put_nowait((m.headers, tracing.current())))
    await agent.call("subscribe", channel="from.python")

    await agent.call("publish", channel="from.node", payload=1, headers={"k": "v"})
    headers, ctx = await asyncio.wait_for(got.get(), WAIT_S)
    trace_id, span_id, _ = ids(headers["traceparent"])
    assert headers["k"] == "v" and (ctx.trace_id, ctx.parent_id) == (trace_id, span_id)

    await py.publish("from.python", 2, headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    message = await agent.wait_event("message")
    assert message["headers"] == {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}  # a caller's own, kept
