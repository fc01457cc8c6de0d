"""Spans of streams, cancelled calls and failovers, for
tests/test_tracing_streams.py: a tracer provider with the SDK's in-memory
exporter (set once a process, hence a process of its own), a real server
over loopback, then one JSON line on stdout: the finished spans, the
headers each handler saw and how many spans started and never ended.

argv[1]: the scenario (a function below).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

WAIT_S = 10.0
exporter = InMemorySpanExporter()
open_spans: dict[int, str] = {}


class _Open(SpanProcessor):
    """Which spans started and have not ended."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        open_spans[span.context.span_id] = span.name

    def on_end(self, span: Any) -> None:
        open_spans.pop(span.context.span_id, None)


provider = TracerProvider()
provider.add_span_processor(_Open())
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


async def until(check: Callable[[], bool]) -> None:
    """A bounded wait for what another task finishes (a span ended after its handler's cleanup)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("waited too long")
        await asyncio.sleep(0.005)


async def streams(port: int, seen: dict[str, Any]) -> None:
    """A stream read to its end, one that fails, one left early (and one
    whose handler never waits, run at once on Python 3.11)."""
    from ipc_client import HandlerError, IPCClient

    closed: dict[str, asyncio.Event] = {"st.endless": asyncio.Event(), "st.atonce": asyncio.Event()}

    async def ok(msg: Any) -> AsyncIterator[int]:
        seen["st.ok"] = msg.headers
        for i in range(3):
            yield i

    async def fail(msg: Any) -> AsyncIterator[int]:
        seen["st.fail"] = msg.headers
        yield 1
        raise ValueError("no")

    async def ticks(name: str) -> AsyncIterator[int]:
        try:
            for i in range(10**6):
                yield i
                await asyncio.sleep(0)
        finally:
            closed[name].set()

    async def endless(msg: Any) -> AsyncIterator[int]:
        async for i in ticks("st.endless"):
            yield i

    async def at_once(msg: Any) -> Any:  # never waits: returns the generator
        return ticks("st.atonce")

    async with IPCClient("app", "127.0.0.1", port) as producer, IPCClient("app", "127.0.0.1", port) as caller:
        for name, fn in (("st.ok", ok), ("st.fail", fail), ("st.endless", endless), ("st.atonce", at_once)):
            await producer.serve(name, fn)
        seen["items"] = [i async for i in caller.stream("st.ok", timeout=WAIT_S)]
        try:
            async for _ in caller.stream("st.fail", timeout=WAIT_S):
                pass
        except HandlerError as exc:
            seen["failed"] = exc.code.value
        for name in ("st.endless", "st.atonce"):
            async with caller.stream(name, timeout=WAIT_S) as items:
                async for i in items:
                    if i == 2:
                        break
            await asyncio.wait_for(closed[name].wait(), WAIT_S)
        await until(lambda: not open_spans)


async def cancelled_before_start(port: int, seen: dict[str, Any]) -> None:
    """Calls whose tasks are cancelled before their first step, as a
    TaskGroup cancels its siblings when one fails at once."""
    from ipc_client import IPCClient

    async with IPCClient("app", "127.0.0.1", port) as client:
        await client.serve("l.ok", lambda m: 1)
        for n in range(3):
            calls = [client.send_request("l.ok", n), client.publish("l.pub", n), client.notify("l.ok", n), client.request("l.ok", n, timeout=WAIT_S)]
            tasks = [asyncio.ensure_future(c) for c in calls]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        client.send_request("l.ok", "never awaited").close()  # type: ignore[attr-defined]
        seen["result"] = await client.request("l.ok", timeout=WAIT_S)


async def failover(port: int, seen: dict[str, Any]) -> None:
    """A load-balanced request that fails over: the first server has no
    responder (no_responders), the second answers."""
    from ipc_client import IPCClient, LoadBalancedClient
    from ipc_server import IPCServer

    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as empty, IPCClient("app", "127.0.0.1", port) as responder:
        await responder.serve("lb.x", lambda m: m.headers["traceparent"])
        lb = LoadBalancedClient("app", [("127.0.0.1", empty.port), ("127.0.0.1", port)], strategy="round_robin", health_check_interval=None)
        await lb.start()
        try:
            seen["served"] = await lb.request("lb.x", timeout=WAIT_S)
        finally:
            await lb.close()


async def stream_failover(port: int, seen: dict[str, Any]) -> None:
    """A load-balanced stream that fails over before its first item (the
    first server has no responder), read by a loop that checks no span of
    the bridge is current between items."""
    from ipc_client import IPCClient, LoadBalancedClient
    from ipc_server import IPCServer

    async def ticks(msg: Any) -> AsyncIterator[str]:
        for _ in range(2):
            yield msg.headers["traceparent"][36:52]

    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as empty, IPCClient("app", "127.0.0.1", port) as responder:
        await responder.serve("lb.s", ticks)
        lb = LoadBalancedClient("app", [("127.0.0.1", empty.port), ("127.0.0.1", port)], strategy="round_robin", health_check_interval=None)
        await lb.start()
        seen["items"], seen["in_reader"] = [], []
        try:
            async with lb.stream("lb.s", timeout=WAIT_S) as stream:
                async for item in stream:
                    seen["items"].append(item)
                    seen["in_reader"].append(trace.get_current_span().get_span_context().is_valid)
            seen["in_reader"].append(trace.get_current_span().get_span_context().is_valid)
        finally:
            await lb.close()
        await until(lambda: not open_spans)


async def propagation(port: int, seen: dict[str, Any]) -> None:
    """What a handler's call passes on with the SDK: from a sender with
    flags ``ff`` and a tracestate with a bad member, a repeated key and 40
    members; and what a root sends (the SDK sets the Level-2 random bit)."""
    from ipc_client import IPCClient

    async with IPCClient("app", "127.0.0.1", port) as caller, IPCClient("app", "127.0.0.1", port) as responder:
        await caller.serve("p.obs", lambda m: m.headers)

        async def hop(msg: Any) -> Any:
            return await responder.request("p.obs", timeout=WAIT_S)

        await responder.serve("p.hop", hop)
        state = "Bad Key=1,ok=2,ok=3," + ",".join(f"k{i}=v" for i in range(40))
        headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", "tracestate": state}
        seen["passed"] = await caller.request("p.hop", headers=headers, timeout=WAIT_S)
        seen["root"] = await caller.request("p.obs", timeout=WAIT_S)


async def main() -> None:
    from ipc_server import IPCServer

    seen: dict[str, Any] = {}
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        await globals()[sys.argv[1]](server.port, seen)
    spans = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "trace_id": f"{s.context.trace_id:032x}",
            "span_id": f"{s.context.span_id:016x}",
            "flags": f"{int(s.context.trace_flags):02x}",
            "parent_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
            "error_type": (s.attributes or {}).get("error.type"),
            "status": s.status.status_code.name,
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"spans": spans, "seen": seen, "unended": sorted(open_spans.values())}))


if __name__ == "__main__":
    asyncio.run(main())
