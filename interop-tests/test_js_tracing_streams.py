"""Streams in the Node client's traces (docs/tracing.md): a stream's
request carries a traceparent, as any request, and with OpenTelemetry a
CLIENT span that ends with the stream; a streaming handler's body runs in
the trace of the request it serves, through its awaits, and its SERVER
span ends when the stream does, with its failure or its requester's
cancel. Real server; otel-node/stream_spans.js with the SDK, and without
any provider (NO_OTEL=1)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

from conftest import WAIT_S
from test_js_tracing_otel import OTEL_NODE, otel_node  # noqa: F401 - the fixture, shared

from ipc_client import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def _run(node: str, port: int, **env: str) -> dict[str, Any]:
    script = await asyncio.create_subprocess_exec(
        node, str(OTEL_NODE / "stream_spans.js"), str(port), cwd=OTEL_NODE, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(script.communicate(), WAIT_S * 3)
    assert script.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().splitlines()[-1])  # type: ignore[no-any-return]


def _trace_of(headers: dict[str, str]) -> str:
    parsed = tracing.parse_traceparent(headers["traceparent"])
    assert parsed is not None, headers
    return parsed[0]


async def test_node_stream_spans_cover_the_stream(server, node, otel_node):  # noqa: F811
    out = await _run(node, server.port)
    assert out["items"] == [1, 2] and out["seen"]["failed"] == "handler_error" and out["unended"] == 0
    # The stream's requests carry a traceparent (the caller's own is kept, as for any request).
    first, second, endless = out["seen"]["stream"]
    assert _trace_of(first) == TRACE and _trace_of(second) != TRACE and _trace_of(endless) not in (TRACE, _trace_of(second))
    # The handler's body, awaits included, runs in the request's trace; its call out continues it.
    assert out["seen"]["before"] == out["seen"]["after"] == [TRACE, _trace_of(second)]
    assert [_trace_of(h) for h in out["seen"]["out"]] == [TRACE, _trace_of(second)]
    spans = out["spans"]
    by_trace = {t: {s["name"]: s for s in spans if s["trace_id"] == t} for t in {s["trace_id"] for s in spans}}
    failing = by_trace[TRACE]
    serve = failing["serve n.gen"]
    assert (serve["error_type"], serve["status"]) == ("RangeError", 2)  # ended with the stream's failure, not before it
    assert failing["request obs.out"]["parent_id"] == serve["span_id"]  # the stream's own call is its child
    left = by_trace[_trace_of(second)]
    assert left["request n.gen"]["kind"] == "CLIENT" and left["request n.gen"]["span_id"] == second["traceparent"][36:52]
    assert left["request obs.out"]["parent_id"] == left["serve n.gen"]["span_id"]
    gone = by_trace[_trace_of(endless)]
    assert (gone["request n.endless"]["error_type"], gone["serve n.endless"]["error_type"]) == ("cancelled", "cancelled")


async def test_node_streams_without_a_provider_keep_the_trace(server, node, otel_node):  # noqa: F811
    out = await _run(node, server.port, NO_OTEL="1")
    assert out["spans"] == [] and out["items"] == [1, 2]
    second = _trace_of(out["seen"]["stream"][1])
    assert out["seen"]["before"] == out["seen"]["after"] == [TRACE, second]
    assert [_trace_of(h) for h in out["seen"]["out"]] == [TRACE, second]


async def test_node_load_balanced_attempts_are_children_of_one_span(start_server, node, otel_node):  # noqa: F811
    """The first server has no responder (no_responders): the call fails
    over to the second, in one trace, each attempt a CLIENT span under the call's."""
    empty, full = await start_server("--no-responders-grace", "0"), await start_server("--no-responders-grace", "0")
    script = await asyncio.create_subprocess_exec(
        node, str(OTEL_NODE / "failover_spans.js"), str(empty.port), str(full.port), cwd=OTEL_NODE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out_bytes, err = await asyncio.wait_for(script.communicate(), WAIT_S * 3)
    assert script.returncode == 0, err.decode()[-3000:]
    out = json.loads(out_bytes.decode().splitlines()[-1])
    call = [s for s in out["spans"] if s["kind"] == "INTERNAL"]
    attempts = [s for s in out["spans"] if s["kind"] == "CLIENT"]
    assert len(call) == 1 and call[0]["name"] == "request lb.x" and call[0]["parent_id"] is None
    assert [a["error_type"] for a in attempts] == ["no_responders", None]
    assert {a["parent_id"] for a in attempts} == {call[0]["span_id"]} and {a["trace_id"] for a in attempts} == {call[0]["trace_id"]}
    assert out["served"][36:52] == attempts[1]["span_id"]


async def _stream_failover(start_server: Any, node: str, **env: str) -> tuple[dict[str, Any], str]:
    empty, full = await start_server("--no-responders-grace", "0"), await start_server("--no-responders-grace", "0")
    script = await asyncio.create_subprocess_exec(
        node, str(OTEL_NODE / "stream_failover_spans.js"), str(empty.port), str(full.port), cwd=OTEL_NODE, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(script.communicate(), WAIT_S * 3)
    assert script.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().splitlines()[-1]), err.decode()


async def test_node_load_balanced_stream_attempts_share_one_trace_the_reader_never_sees(start_server, node, otel_node):  # noqa: F811
    """Without a provider: the stream fails over to the second server in the
    trace its first attempt started (NODE_DEBUG's lines of the two requests),
    and no trace is current in the reader's loop, between items or after."""
    out, log = await _stream_failover(start_server, node, NO_OTEL="1", NODE_DEBUG="ipc-bridge")
    sent = re.findall(r"request lb\.s trace=([0-9a-f]{32}) span=([0-9a-f]{16})", log)
    assert len(sent) == 2 and sent[0][0] == sent[1][0] and sent[0][1] != sent[1][1], log
    assert [_trace_of({"traceparent": tp}) for tp in out["items"]] == [sent[0][0]] * 2
    assert out["inReader"] == [False, False, False] and out["spans"] == []


async def test_node_load_balanced_stream_attempts_are_children_of_one_span(start_server, node, otel_node):  # noqa: F811
    out, _ = await _stream_failover(start_server, node)
    assert out["unended"] == 0 and out["inReader"] == [False, False, False]
    call = [s for s in out["spans"] if s["kind"] == "INTERNAL"]
    attempts = [s for s in out["spans"] if s["kind"] == "CLIENT"]
    assert len(call) == 1 and call[0]["name"] == "request lb.s" and call[0]["parent_id"] is None and call[0]["status"] == "UNSET"
    assert [a["error_type"] for a in attempts] == ["no_responders", None]
    assert {a["parent_id"] for a in attempts} == {call[0]["span_id"]} and {a["trace_id"] for a in attempts} == {call[0]["trace_id"]}
    assert [tp[36:52] for tp in out["items"]] == [attempts[1]["span_id"]] * 2
