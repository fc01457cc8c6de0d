"""W3C trace context across the bridge (docs/tracing.md): both ends of the
Python client, the server keeping the headers, and the ids.

The OpenTelemetry tests run in a subprocess of their own (a tracer provider
is global and can be set once), as does the test that nothing of
OpenTelemetry is imported when it is missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient, otel, tracing
from ipc_protocol import encode_frame

from .conftest import WAIT_S, frame
from .test_relay import recv_body, requester, responder

ROOT = Path(__file__).resolve().parent.parent
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def ids(traceparent: str) -> tuple[str, str, str]:
    parsed = tracing.parse_traceparent(traceparent)
    assert parsed is not None, traceparent
    return parsed


# -- the ids and the header --------------------------------------------------------


VECTORS = json.loads((ROOT / "interop-tests" / "spec" / "traceparent.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.get("note") or v["value"][:20])
def test_parse_traceparent(vector: dict[str, Any]) -> None:
    """The shared vectors: the Node client reads them alike (js-client/test/tracing.test.js)."""
    expected = vector["expected"]
    assert tracing.parse_traceparent(vector["value"]) == (tuple(expected) if expected is not None else None)


def _drawn_in_threads(draw: Callable[[], str], each: int, threads: int = 4) -> list[str]:
    """What ``threads`` threads drawing ``each`` at once got."""
    seen: list[str] = []
    workers = [threading.Thread(target=lambda: seen.extend(draw() for _ in range(each))) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return seen


def test_new_ids_are_random_hex_and_distinct_across_threads() -> None:
    seen = _drawn_in_threads(tracing.new_span_id, 3000)
    assert len(set(seen)) == len(seen) == 12000
    assert all(len(s) == 16 and int(s, 16) != 0 for s in seen)
    trace_id = tracing.new_trace_id()
    assert len(trace_id) == 32 and int(trace_id, 16) != 0


def test_a_new_trace_s_traceparents_are_valid_and_distinct_across_threads() -> None:
    """Drawn whole from a pool (a message sent outside any trace): sampled,
    neither id all zeros, none handed to two threads."""
    seen = _drawn_in_threads(tracing.new_traceparent, 1000)
    assert len(set(seen)) == len(seen) == 4000
    parsed = [tracing.parse_traceparent(tp) for tp in seen]
    assert all(p is not None and p[0] != "0" * 32 and p[1] != "0" * 16 and p[2] == "01" for p in parsed)
    assert len({p[0] for p in parsed if p is not None}) == 4000  # a new trace id each


def test_a_forked_child_draws_ids_of_its_own() -> None:
    tracing.new_span_id()  # the batches are filled in the parent
    tracing.new_traceparent()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, (tracing.new_span_id() + tracing.new_traceparent()).encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 16 + 55).decode()
    os.waitpid(pid, 0)
    os.close(r)
    assert child[:16] != tracing.new_span_id() and child[16:] != tracing.new_traceparent()


def test_a_handled_message_s_context_is_worked_out_once_when_first_read() -> None:
    """A delivery's or a served request's context (tracing._Arrived) parses
    the sender's header and draws its span id only when read, and then
    reads the same from every thread."""
    import threading

    from ipc_protocol import Message, MessageType

    sender = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    msg = Message.build(MessageType.PUBLISH, "app", "news", 1, headers={"traceparent": sender, "tracestate": "k=v"})
    ctx = tracing.call_in_trace(lambda m: tracing.current(), msg)
    assert ctx is not None and not tracing._is_set(ctx)  # nothing read: nothing worked out
    seen: list[tuple[Any, ...]] = []
    threads = [threading.Thread(target=lambda: seen.append((ctx.span_id, ctx.trace_id, ctx.parent_id))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {(ctx.span_id, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")}
    assert (ctx.flags, ctx.tracestate, ctx.traceparent) == ("01", "k=v", f"00-4bf92f3577b34da6a3ce929d0e0e4736-{ctx.span_id}-01")
    plain = tracing.call_in_trace(lambda m: tracing.current(), Message.build(MessageType.PUBLISH, "app", "news", 1))
    assert plain is not None and plain.parent_id is None and len(plain.trace_id) == 32 and plain.flags == "01"
    with pytest.raises(AttributeError):
        ctx.not_a_field  # noqa: B018


def test_outgoing_headers() -> None:
    headers, span = tracing.outgoing("request", "x", None)
    assert span is None and set(headers) == {"traceparent"}
    trace_id, span_id, flags = ids(headers["traceparent"])
    assert flags == "01"
    # The caller's headers are copied, never changed; a traceparent of theirs is kept.
    mine = {"k": "v"}
    headers, _ = tracing.outgoing("publish", "x", mine)
    assert mine == {"k": "v"} and headers["k"] == "v" and "traceparent" in headers
    theirs = {"traceparent": TP, "tracestate": "a=1"}
    assert tracing.outgoing("notify", "x", theirs)[0] is theirs


def test_outgoing_continues_a_span_the_application_made_current_without_an_sdk() -> None:
    """A context propagated into the application (the API alone, no tracer
    provider) is continued; outside it, and in a context holding only
    other values, a message starts a trace of its own."""
    trace = pytest.importorskip("opentelemetry.trace")
    context = pytest.importorskip("opentelemetry.context")
    remote = trace.NonRecordingSpan(trace.SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, trace.TraceFlags(1)))
    token = context.attach(trace.set_span_in_context(remote))
    try:
        assert tracing.current_trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736"
        headers, span = tracing.outgoing("request", "x", None)
        assert span is None and ids(headers["traceparent"])[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
    finally:
        context.detach(token)
    token = context.attach(context.set_value("unrelated", 1))
    try:
        assert tracing.current_trace_id() is None
        assert ids(tracing.outgoing("request", "x", None)[0]["traceparent"])[0] != "4bf92f3577b34da6a3ce929d0e0e4736"
    finally:
        context.detach(token)
    assert tracing.current_trace_id() is None


def test_the_application_s_context_is_read_from_the_api_s_own_variable_or_asked_for() -> None:
    """With the API's default runtime context the sender reads its context
    variable itself (what ``get_current`` returns); with any other it asks
    ``get_current``."""
    context = pytest.importorskip("opentelemetry.context")
    getter = otel._context_getter(context)
    assert getter is not context.get_current and getter() is context.get_current()
    token = context.attach(context.set_value("k", 1))
    try:
        assert getter() is context.get_current()
    finally:
        context.detach(token)

    class OtherRuntime:
        _current_context = None

    other = types.SimpleNamespace(_RUNTIME_CONTEXT=OtherRuntime(), get_current=lambda: "asked")
    assert otel._context_getter(other)() == "asked"


# -- through the server ------------------------------------------------------------


async def test_a_handlers_calls_continue_the_trace_of_its_request(make_client) -> None:
    caller, middle, back = await make_client(), await make_client(), await make_client()
    seen: dict[str, Any] = {}

    async def outer(msg):
        seen["outer"] = (msg.headers, tracing.current())
        return await middle.request("inner", msg.payload)

    def inner(msg):  # a plain handler: run in a worker thread, in the request's context
        seen["inner"] = (msg.headers, tracing.current(), tracing.current_trace_id(), threading.current_thread().name)
        return msg.payload + 1

    await middle.serve("outer", outer)
    await back.serve("inner", inner)
    assert tracing.current() is None and tracing.current_trace_id() is None
    assert await caller.request("outer", 1, timeout=WAIT_S) == 2

    outer_headers, outer_ctx = seen["outer"]
    inner_headers, inner_ctx, inner_trace_id, thread = seen["inner"]
    trace_id, first_span, _ = ids(outer_headers["traceparent"])
    # Hop 1: a new trace; the responder's context is a new span, child of the caller's.
    assert (outer_ctx.trace_id, outer_ctx.parent_id) == (trace_id, first_span) and outer_ctx.span_id != first_span
    # Hop 2: the handler's own request continues the trace with a new span id.
    trace_2, second_span, _ = ids(inner_headers["traceparent"])
    assert trace_2 == trace_id and second_span not in (first_span, outer_ctx.span_id)
    assert (inner_ctx.trace_id, inner_ctx.parent_id) == (trace_id, second_span) and inner_trace_id == trace_id
    assert thread != threading.main_thread().name
    assert tracing.current() is None  # nothing leaks into the caller's context


async def test_a_user_traceparent_is_kept_and_continued(make_client) -> None:
    caller, worker = await make_client(), await make_client()
    got: list[Any] = []
    await worker.serve("svc", lambda m: got.append((m.headers, tracing.current())) or "ok")
    await caller.request("svc", headers={"traceparent": TP, "tracestate": "vendor=1", "x": "y"}, timeout=WAIT_S)
    headers, ctx = got[0]
    assert headers == {"traceparent": TP, "tracestate": "vendor=1", "x": "y"}
    assert (ctx.trace_id, ctx.parent_id, ctx.tracestate) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "vendor=1")
    # A malformed one is still sent as it is; the responder starts a trace of its own.
    await caller.request("svc", headers={"traceparent": "nonsense"}, timeout=WAIT_S)
    headers, ctx = got[1]
    assert headers == {"traceparent": "nonsense"} and ctx.parent_id is None and len(ctx.trace_id) == 32


async def test_publish_and_notify_carry_the_trace_to_their_handlers(make_client) -> None:
    publisher, subscriber = await make_client(), await make_client()
    got: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()

    def sync_handler(msg):
        got.put_nowait(("sync", msg.headers, tracing.current()))

    async def async_handler(msg):
        got.put_nowait(("async", msg.headers, tracing.current()))

    await subscriber.subscribe("news.*", sync_handler)
    await subscriber.subscribe("news.>", async_handler)
    await subscriber.serve("note", lambda m: got.put_nowait(("note", m.headers, tracing.current())))
    assert await publisher.publish("news.a", 1, ack=True, headers={"k": "v"}) == 1
    await publisher.notify("note", 2)
    received = {}
    for _ in range(3):
        kind, headers, ctx = await asyncio.wait_for(got.get(), WAIT_S)
        received[kind] = (headers, ctx)
    assert tracing.current() is None  # the inline handler's context did not stay behind
    pub_headers = received["sync"][0]
    assert pub_headers["k"] == "v" and received["async"][0] == pub_headers  # one frame, one traceparent
    trace_id, span_id, _ = ids(pub_headers["traceparent"])
    for kind in ("sync", "async"):
        ctx = received[kind][1]
        assert (ctx.trace_id, ctx.parent_id) == (trace_id, span_id)
    note_headers, note_ctx = received["note"]
    assert ids(note_headers["traceparent"])[0] != trace_id  # a new trace: the caller was in none
    assert note_ctx.parent_id == ids(note_headers["traceparent"])[1]


async def test_in_process_handlers_read_the_headers(server, make_client) -> None:
    server.add_handler("py.meta", lambda m: m.headers)
    c = await make_client()
    headers = await c.request("py.meta", timeout=WAIT_S)
    assert ids(headers["traceparent"])


async def test_a_request_without_options_is_traced_and_a_subclass_send_request_still_runs(server, make_client) -> None:
    # request() with no options skips send_request's decorators (docs/performance.md):
    # the same trace context goes out, and a subclass's own send_request is still called.
    server.add_handler("py.meta", lambda m: m.headers)
    c = await make_client()
    assert ids((await c.request("py.meta"))["traceparent"])
    seen: list[str] = []

    class Logged(IPCClient):
        async def send_request(self, channel: str, payload: Any = None, **kwargs: Any) -> Any:
            seen.append(channel)
            return await super().send_request(channel, payload, **kwargs)

    async with Logged("app", "127.0.0.1", server.port) as logged:
        assert ids((await logged.request("py.meta"))["traceparent"])
    assert seen == ["py.meta"]


async def test_the_server_keeps_trace_headers_when_it_re_encodes(raw) -> None:
    """Two requesters using the same id at one responder: the second request
    is re-encoded under a server id (§7.3), its headers unchanged; the
    first travels as the requester's own bytes."""
    worker = await responder(raw)
    first, second = await requester(raw), await requester(raw)
    headers = {"traceparent": TP, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", "baggage": "k=v"}
    body = json.dumps(frame("request", "svc", 1, message_id="same", headers=headers, timeout_ms=5000)).encode()
    first.send_raw(encode_frame(body))
    assert await recv_body(worker) == body
    second.send(frame("request", "svc", 2, message_id="same", headers=headers, timeout_ms=5000))
    forwarded = json.loads(await recv_body(worker))
    assert forwarded["message_id"] != "same" and forwarded["headers"] == headers


async def test_trace_ids_in_the_debug_log(make_client, caplog) -> None:
    caller, worker = await make_client(), await make_client()
    await worker.serve("svc", lambda m: "ok")
    with caplog.at_level(logging.DEBUG, logger="ipc_client.tracing"):
        await caller.request("svc", timeout=WAIT_S)
    lines = [r.getMessage() for r in caplog.records if r.name == "ipc_client.tracing"]
    sent = next(line for line in lines if line.startswith("request svc "))
    served = next(line for line in lines if line.startswith("serve svc "))
    fields = dict(part.split("=") for part in sent.split()[2:])
    assert fields["parent"] == "None" and f"trace={fields['trace']}" in served and f"parent={fields['span']}" in served


def test_the_log_filter_names_the_trace() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert tracing.TraceLogFilter().filter(record) and record.trace_id == "-"  # type: ignore[attr-defined]


# -- OpenTelemetry, in a process of its own ------------------------------------------


def _round_trip(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("otel_round_trip.py")), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_without_opentelemetry_nothing_of_it_is_imported() -> None:
    out = _round_trip("--block-otel")
    assert out["result"] == 2 and out["failed"] == "HandlerError" and len(out["trace_in_subscriber"]) == 32
    assert out["loaded"] == [] and out["attempts"] >= 1  # the client looked for it, once, and left nothing behind


def test_spans_begin_with_the_first_message_after_a_provider_is_set() -> None:
    """The clients look for a tracer provider cheaply until one is set
    (ipc_client/otel.py), and then make spans from the next message on."""
    pytest.importorskip("opentelemetry.sdk.trace")
    spans = _round_trip("--sdk", "--sdk-later")["spans"]
    assert sorted(s["name"] for s in spans) == sorted(
        ["request outer", "serve outer", "request inner", "serve inner", "request fail", "serve fail", "request hang", "serve hang", "request stuck", "serve stuck", "publish news", "deliver news"]
    )


def test_opentelemetry_spans_form_one_tree_per_trace() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    spans = {s["name"]: s for s in _round_trip("--sdk")["spans"]}
    assert set(spans) == {
        "request outer", "serve outer", "request inner", "serve inner", "request fail", "serve fail",
        "request hang", "serve hang", "request stuck", "serve stuck", "publish news", "deliver news",
    }  # fmt: skip
    assert spans["serve hang"]["status"] == "ERROR" and spans["serve hang"]["attributes"]["error.type"] == "cancelled"  # ended when its requester gave up
    assert spans["request hang"]["attributes"]["error.type"] == "timeout"
    # A cancelled task is `cancelled`, the code of a caller giving up, as Node's aborted call (AbortError) is.
    assert [spans[n]["attributes"]["error.type"] for n in ("request stuck", "serve stuck")] == ["cancelled", "cancelled"]
    chain = [spans[n] for n in ("request outer", "serve outer", "request inner", "serve inner")]
    assert [s["kind"] for s in chain] == ["CLIENT", "SERVER", "CLIENT", "SERVER"]
    assert len({s["trace_id"] for s in chain}) == 1 and chain[0]["parent_id"] is None
    for parent, child in zip(chain, chain[1:]):
        assert child["parent_id"] == parent["span_id"]
    publish, deliver = spans["publish news"], spans["deliver news"]
    assert (publish["kind"], deliver["kind"], deliver["parent_id"]) == ("PRODUCER", "CONSUMER", publish["span_id"])
    assert deliver["trace_id"] == publish["trace_id"] != chain[0]["trace_id"]
    attrs = spans["serve outer"]["attributes"]
    assert attrs["messaging.system"] == "ipc-bridge" and attrs["messaging.destination.name"] == "outer"
    assert (attrs["messaging.operation.type"], attrs["messaging.operation.name"]) == ("process", "serve")
    assert spans["request outer"]["attributes"]["messaging.operation.type"] == "send"
    assert spans["request outer"]["attributes"]["server.address"] == "127.0.0.1"
    failed, served = spans["request fail"], spans["serve fail"]
    assert (failed["status"], failed["attributes"]["error.type"]) == ("ERROR", "handler_error")
    assert (served["status"], served["attributes"]["error.type"], served["parent_id"]) == ("ERROR", "ValueError", failed["span_id"])


async def test_within_enters_the_trace_of_a_message_for_a_block(server, make_client) -> None:
    """For an in-process handler of the server (or an iterator's loop): its calls continue the request's trace."""
    worker = await make_client()
    got: list[Any] = []
    await worker.serve("inner", lambda m: got.append(m.headers) or "ok")

    async def outer(msg):
        with tracing.within(msg) as ctx:
            await worker.request("inner", timeout=WAIT_S)
            return ctx.trace_id

    server.add_handler("py.outer", outer)
    caller = await make_client()
    trace_id = await caller.request("py.outer", headers={"traceparent": TP}, timeout=WAIT_S)
    assert trace_id == ids(TP)[0] == ids(got[0]["traceparent"])[0]
    assert tracing.current() is None


def test_an_overlong_tracestate_is_not_passed_on() -> None:
    from ipc_protocol import Message, MessageType

    msg = Message.build(MessageType.REQUEST, "app", "svc", None, headers={"traceparent": TP, "tracestate": "k=" + "v" * 600})
    with tracing.within(msg) as ctx:
        assert ctx.trace_id == ids(TP)[0] and ctx.tracestate is None
        assert "tracestate" not in tracing.outgoing("request", "next", None)[0]
