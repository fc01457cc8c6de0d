"""A round trip through the real server in a process of its own, for
tests/test_tracing.py: a caller's request to a responder that requests
another responder, a publish to a subscriber and a notification, then one
JSON line on stdout describing what happened.

``--block-otel``: OpenTelemetry cannot be imported (as if not installed);
the line tells whether anything of it was loaded and whether the client
tried. A request whose requester gives up on it ("hang") is among them. ``--sdk``: a tracer provider with the SDK's in-memory exporter; the
line lists the finished spans. ``--sdk-later``: a first round trip before
any provider is set, the provider set, then the round trip again.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

attempts: list[str] = []


class _Missing(importlib.abc.MetaPathFinder):
    """Makes ``opentelemetry`` unimportable, and counts the attempts."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


async def round_trip() -> dict[str, Any]:
    from ipc_client import IPCClient, tracing
    from ipc_server import IPCServer

    async with IPCServer("127.0.0.1", 0) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as caller, IPCClient("app", "127.0.0.1", server.port) as middle, IPCClient(
            "app", "127.0.0.1", server.port
        ) as back:
            delivered = asyncio.get_running_loop().create_future()

            async def outer(msg: Any) -> Any:
                return await middle.request("inner", msg.payload)

            async def fail(msg: Any) -> Any:
                raise ValueError("no")

            cancelled = asyncio.Event()

            async def hang(msg: Any) -> Any:
                try:
                    await asyncio.Event().wait()
                finally:
                    cancelled.set()

            await middle.serve("outer", outer)
            await middle.serve("fail", fail)
            await middle.serve("hang", hang)
            entered, stopped = asyncio.Event(), asyncio.Event()

            async def stuck(msg: Any) -> Any:
                entered.set()
                try:
                    await asyncio.Event().wait()
                finally:
                    stopped.set()

            await middle.serve("stuck", stuck)
            await back.serve("inner", lambda m: m.payload + 1)
            await back.subscribe("news", lambda m: delivered.set_result(tracing.current_trace_id()))
            result = await caller.request("outer", 1, timeout=10)
            try:
                await caller.request("fail", timeout=10)
            except Exception as exc:  # noqa: BLE001
                failed = type(exc).__name__
            try:  # its deadline cancels the handler (§15.4): its span ends too
                await caller.request("hang", timeout=0.2)
            except Exception:  # noqa: BLE001
                pass
            await asyncio.wait_for(cancelled.wait(), 10)
            call = asyncio.ensure_future(caller.request("stuck", timeout=10))  # its caller cancels it (§15.4)
            await asyncio.wait_for(entered.wait(), 10)
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            await asyncio.wait_for(stopped.wait(), 10)
            await caller.publish("news", {"n": 1}, ack=True)
            trace_in_subscriber = await asyncio.wait_for(delivered, 10)
    return {"result": result, "failed": failed, "trace_in_subscriber": trace_in_subscriber}


def main() -> None:
    if "--block-otel" in sys.argv:
        sys.meta_path.insert(0, _Missing())
        out = asyncio.run(round_trip())
        out["loaded"] = sorted(m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry."))
        out["attempts"] = len(attempts)
    else:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        if "--sdk-later" in sys.argv:
            asyncio.run(round_trip())  # nothing to record into yet
        trace.set_tracer_provider(provider)
        out = asyncio.run(round_trip())
        out["spans"] = [
            {
                "name": s.name,
                "kind": s.kind.name,
                "trace_id": f"{s.context.trace_id:032x}",
                "span_id": f"{s.context.span_id:016x}",
                "parent_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
                "attributes": dict(s.attributes or {}),
                "status": s.status.status_code.name,
            }
            for s in exporter.get_finished_spans()
        ]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
