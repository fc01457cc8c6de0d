"""Trace context on the paths beside a plain request (docs/tracing.md):
a stream's request carries a traceparent as any request, its CLIENT span
ends with the stream, a streaming handler's SERVER span ends with its
failure or its requester's cancel, no span is left open by a call
cancelled early, and a load-balanced call's attempts share one trace.

The OpenTelemetry checks run tests/otel_spans.py in a process of its own
(a tracer provider is set once a process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient, LoadBalancedClient, tracing
from ipc_server import IPCServer

from .conftest import WAIT_S

ROOT = Path(__file__).resolve().parent.parent


async def test_a_stream_s_request_carries_a_traceparent_and_continues_a_handler_s_trace(make_client) -> None:
    producer, caller, middle = await make_client(), await make_client(), await make_client()
    seen: list[Any] = []

    async def ticks(msg: Any) -> AsyncIterator[int]:
        seen.append(msg.headers)
        yield 1

    async def relay(msg: Any) -> Any:  # a handler's stream continues the handler's trace
        return [i async for i in middle.stream("ticks", timeout=WAIT_S)] + [tracing.current().span_id]  # type: ignore[union-attr]

    await producer.serve("ticks", ticks)
    await middle.serve("relay", relay)
    assert [i async for i in caller.stream("ticks", timeout=WAIT_S)] == [1]
    parsed = tracing.parse_traceparent(seen[0]["traceparent"])
    assert parsed is not None and parsed[2] == "01"
    *items, relay_span = await caller.request("relay", headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, timeout=WAIT_S)
    assert items == [1]
    trace_id, span_id, _ = tracing.parse_traceparent(seen[1]["traceparent"])  # type: ignore[misc]
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and span_id not in (relay_span, "00f067aa0ba902b7")  # a span of its own


def _spans(scenario: str) -> dict[str, Any]:
    pytest.importorskip("opentelemetry.sdk.trace")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("otel_spans.py")), scenario], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_stream_spans_end_with_the_stream_and_its_failure_or_cancel() -> None:
    out = _spans("streams")
    assert out["unended"] == [] and out["seen"]["items"] == [0, 1, 2] and out["seen"]["failed"] == "handler_error"
    spans = {s["name"]: s for s in out["spans"]}
    # The stream's request is a CLIENT span; the traceparent its producer got is that span's.
    for channel in ("st.ok", "st.fail"):
        request, serve = spans[f"request {channel}"], spans[f"serve {channel}"]
        assert request["kind"] == "CLIENT" and serve["parent_id"] == request["span_id"] == out["seen"][channel]["traceparent"][36:52]
    assert (spans["request st.ok"]["status"], spans["serve st.ok"]["status"]) == ("UNSET", "UNSET")
    assert (spans["request st.fail"]["error_type"], spans["serve st.fail"]["error_type"]) == ("handler_error", "ValueError")
    assert spans["serve st.fail"]["status"] == "ERROR"
    # Left early: a cancel on both sides, also for a handler run at once (Python 3.11) that returned the generator.
    for channel in ("st.endless", "st.atonce"):
        assert (spans[f"request {channel}"]["error_type"], spans[f"serve {channel}"]["error_type"]) == ("cancelled", "cancelled"), channel


def test_a_call_cancelled_or_closed_before_its_first_step_leaves_no_span_open() -> None:
    out = _spans("cancelled_before_start")
    assert out["seen"]["result"] == 1
    assert out["unended"] == []


async def test_a_load_balanced_call_s_attempts_share_one_trace(server, make_client) -> None:
    """The first server has no responder (no_responders): the call fails
    over to the second, in the same trace, each attempt a span of its own."""
    responder = await make_client()
    await responder.serve("lb.x", lambda m: m.headers["traceparent"])
    sent: list[str] = []
    real = tracing.outgoing

    def spy(operation: str, channel: str, headers: Any, client: Any = None) -> Any:
        out = real(operation, channel, headers, client)
        sent.append(out[0]["traceparent"])
        return out

    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as empty:
        lb = LoadBalancedClient("app", [("127.0.0.1", empty.port), ("127.0.0.1", server.port)], strategy="round_robin", health_check_interval=None)
        await lb.start()
        tracing.outgoing = spy  # type: ignore[assignment]
        import ipc_client.client as client_module

        client_module.outgoing = spy  # type: ignore[assignment]
        try:
            served = await lb.request("lb.x", timeout=WAIT_S)
        finally:
            tracing.outgoing = client_module.outgoing = real  # type: ignore[assignment]
            await lb.close()
    assert len(sent) == 2 and served == sent[1]
    (first, first_span, _), (second, second_span, _) = (tracing.parse_traceparent(tp) for tp in sent)  # type: ignore[misc]
    assert first == second and first_span != second_span


async def test_a_load_balanced_stream_s_attempts_share_one_trace_the_reader_never_sees(server, make_client) -> None:
    """As a load-balanced request's: the first server has no responder, the
    stream fails over to the second in the same trace; the trace is current
    only while an attempt opens, never in the reader's loop between items."""
    responder = await make_client()

    async def ticks(msg: Any) -> AsyncIterator[str]:
        for _ in range(3):
            yield msg.headers["traceparent"]

    await responder.serve("lb.s", ticks)
    sent: list[str] = []
    real = tracing.outgoing

    def spy(operation: str, channel: str, headers: Any, client: Any = None) -> Any:
        out = real(operation, channel, headers, client)
        sent.append(out[0]["traceparent"])
        return out

    items, in_reader = [], []
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as empty:
        lb = LoadBalancedClient("app", [("127.0.0.1", empty.port), ("127.0.0.1", server.port)], strategy="round_robin", health_check_interval=None)
        await lb.start()
        tracing.outgoing = spy  # type: ignore[assignment]
        try:
            async with lb.stream("lb.s", timeout=WAIT_S) as stream:
                async for item in stream:
                    items.append(item)
                    in_reader.append(tracing.current())
        finally:
            tracing.outgoing = real  # type: ignore[assignment]
            await lb.close()
    assert len(sent) == 2 and items == [sent[1]] * 3
    (first, first_span, _), (second, second_span, _) = (tracing.parse_traceparent(tp) for tp in sent)  # type: ignore[misc]
    assert first == second and first_span != second_span
    assert in_reader == [None, None, None] and tracing.current() is None


def test_a_load_balanced_stream_s_attempts_are_children_of_one_span() -> None:
    out = _spans("stream_failover")
    assert out["unended"] == [] and out["seen"]["in_reader"] == [False, False, False]
    call = [s for s in out["spans"] if s["kind"] == "INTERNAL"]
    attempts = [s for s in out["spans"] if s["kind"] == "CLIENT"]
    assert len(call) == 1 and call[0]["name"] == "request lb.s" and call[0]["parent_id"] is None and call[0]["status"] == "UNSET"
    assert [a["error_type"] for a in attempts] == ["no_responders", None]
    assert {a["parent_id"] for a in attempts} == {call[0]["span_id"]} and {a["trace_id"] for a in attempts} == {call[0]["trace_id"]}
    assert out["seen"]["items"] == [attempts[1]["span_id"]] * 2


def test_a_load_balanced_call_s_attempts_are_children_of_one_span() -> None:
    out = _spans("failover")
    assert out["unended"] == []
    call = [s for s in out["spans"] if s["kind"] == "INTERNAL"]
    attempts = [s for s in out["spans"] if s["kind"] == "CLIENT"]
    assert len(call) == 1 and call[0]["name"] == "request lb.x" and call[0]["parent_id"] is None
    assert [a["error_type"] for a in attempts] == ["no_responders", None]
    assert {a["parent_id"] for a in attempts} == {call[0]["span_id"]} and {a["trace_id"] for a in attempts} == {call[0]["trace_id"]}
    assert out["seen"]["served"][36:52] == attempts[1]["span_id"]


def test_with_the_sdk_a_handler_passes_on_the_sampled_flag_and_the_valid_tracestate() -> None:
    """The rule of tests/test_trace_state.py holds with OpenTelemetry too: the
    SDK's parser (which drops a whole tracestate for one bad member) sees
    only what passes it, and its Level-2 random bit is not sent."""
    out = _spans("propagation")
    passed, root = out["seen"]["passed"], out["seen"]["root"]
    assert passed["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and passed["traceparent"].endswith("-01")
    assert passed["tracestate"] == "ok=2," + ",".join(f"k{i}=v" for i in range(31))
    assert root["traceparent"].endswith("-01") and "tracestate" not in root
