"""For test_js_tracing_otel.py: a Python responder with the OpenTelemetry
SDK (in-memory exporter). It serves ``py.hop``, which requests ``node.leaf``
in turn, prints ``ready``, and when its stdin closes prints its finished
spans as one JSON line.

argv[1]: the server's port.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from ipc_client import IPCClient  # noqa: E402


async def main(port: int) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    async with IPCClient("app", "127.0.0.1", port) as client:

        async def hop(msg: Any) -> Any:
            return await client.request("node.leaf", msg.payload, timeout=8)

        await client.serve("py.hop", hop)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    spans = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "trace_id": f"{s.context.trace_id:032x}",
            "span_id": f"{s.context.span_id:016x}",
            "parent_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
            "attributes": dict(s.attributes or {}),
            "process": "python",
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"spans": spans}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
