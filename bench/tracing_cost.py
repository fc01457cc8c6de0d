"""What a traceparent on every message costs (docs/tracing.md): the clients'
CPU per round trip (caller and responder in one process, one request in
flight) and the server's, for two checkouts in alternating rounds.

    python bench/tracing_cost.py --before /tmp/before [--after .] [--rounds 5] [--count 10000]
    python bench/tracing_cost.py --before /tmp/before --instructions [--count 300]

``--before`` is a clone of the commit before tracing (``git clone -q . /tmp/before
&& git -C /tmp/before checkout <sha>``). Python variants: ``no-otel`` blocks
``opentelemetry`` as if it were not installed; ``otel-api`` lets it load
with no tracer provider set (headers only); ``otel-sdk`` sets the SDK's
provider with a processor that drops the spans (the cost of making them).
Node: @opentelemetry/api is not resolvable from js-client. The figures are
medians over the rounds, in microseconds of CPU (user + system) per round trip.

``--instructions``: the client process's instructions per round trip under
valgrind (``callgrind``), from a run of N and one of 2N round trips, so
start-up cancels out. Slow (a minute or two a case) but the same on a busy
machine, where CPU time is not: use it when other work shares the cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from _checkout_server import start_server
from _common import PAYLOAD, cpu_ns

HERE = Path(__file__).resolve().parent

PY_WORKER = r"""
import asyncio, importlib.abc, json, sys, time
variant, port, count, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(name)
if variant == "no-otel":
    sys.meta_path.insert(0, Missing())
elif variant == "otel-sdk":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    trace.set_tracer_provider(provider)
from ipc_client import IPCClient
async def main():
    async with IPCClient("bench", "127.0.0.1", port) as caller, IPCClient("bench", "127.0.0.1", port) as worker:
        await worker.serve("echo", lambda m: m.payload)
        await asyncio.sleep(0)
        for _ in range(500):  # warm up
            await caller.request("echo", payload)
        start = time.process_time()
        for _ in range(count):
            await caller.request("echo", payload)
        used = time.process_time() - start
    print(json.dumps({"us": used / count * 1e6}))
asyncio.run(main())
"""

NODE_WORKER = r"""
const { IPCClient } = require(process.argv[1]);
const [port, count] = [Number(process.argv[2]), Number(process.argv[3])];
const payload = JSON.parse(process.argv[4]);
(async () => {
  const caller = new IPCClient('bench', { port }), worker = new IPCClient('bench', { port });
  await caller.connect(); await worker.connect();
  await worker.serve('echo', (m) => m.payload);
  for (let i = 0; i < 500; i++) await caller.request('echo', payload);
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) await caller.request('echo', payload);
  const used = process.cpuUsage(start);
  await caller.disconnect(); await worker.disconnect();
  console.log(JSON.stringify({ us: (used.user + used.system) / count }));
})();
"""


def measure(root: Path, language: str, variant: str, count: int) -> tuple[float, float]:
    """(client µs per round trip, server µs per round trip) for one run."""
    server, port = start_server(root)
    try:
        payload = json.dumps(PAYLOAD)
        before = cpu_ns(server.pid)
        if language == "python":
            argv = [sys.executable, "-c", PY_WORKER, variant, str(port), str(count), payload]
            env = dict(os.environ, PYTHONPATH=str(root))
        else:
            argv = ["node", "-e", NODE_WORKER, str(root / "js-client"), str(port), str(count), payload]
            env = dict(os.environ)
        out = subprocess.run(argv, cwd="/", env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        server_us = (cpu_ns(server.pid) - before) / 1000 / (count + 500)
        return json.loads(out.stdout.splitlines()[-1])["us"], server_us
    finally:
        server.terminate()
        server.wait(10)


def instructions(root: Path, language: str, variant: str, count: int) -> float:
    """The client process's instructions per round trip, in thousands (see the module's doc)."""

    def run(n: int) -> int:
        server, port = start_server(root)
        try:
            payload = json.dumps(PAYLOAD)
            if language == "python":
                argv = [sys.executable, "-c", PY_WORKER.replace("range(500)", "range(50)"), variant, str(port), str(n), payload]
                env = dict(os.environ, PYTHONPATH=str(root))
            else:
                argv = ["node", "-e", NODE_WORKER.replace("i < 500", "i < 50"), str(root / "js-client"), str(port), str(n), payload]
                env = dict(os.environ)
            valgrind = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--callgrind-out-file=/dev/null"]
            out = subprocess.run([*valgrind, *argv], env=env, cwd="/", capture_output=True, text=True, timeout=3600)
            found = re.search(r"Collected : (\d+)", out.stderr)
            if found is None:
                raise RuntimeError(out.stderr[-2000:])
            return int(found.group(1))
        finally:
            server.terminate()
            server.wait(10)

    return (run(2 * count) - run(count)) / count / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=None, help="round trips per run (10,000; 300 with --instructions)")
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind instead of CPU time")
    args = parser.parse_args()
    cases = [
        ("python", "before", args.before, "no-otel"),
        ("python", "after, no-otel", args.after, "no-otel"),
        ("python", "after, otel-api", args.after, "otel-api"),
        ("python", "after, otel-sdk", args.after, "otel-sdk"),
        ("node", "before", args.before, "-"),
        ("node", "after", args.after, "-"),
    ]
    # The OpenTelemetry rows need what they measure (the `test` extra installs both).
    cases = [c for c in cases if c[3] != "otel-api" or importlib.util.find_spec("opentelemetry") is not None]
    cases = [c for c in cases if c[3] != "otel-sdk" or importlib.util.find_spec("opentelemetry.sdk") is not None]
    if shutil.which("node") is None:
        cases = [c for c in cases if c[0] != "node"]
    if args.instructions:
        print("| client | checkout | client instructions (k) / round trip |")
        print("|---|---|---:|")
        for language, name, root, variant in cases:
            print(f"| {language} | {name} | {instructions(root.resolve(), language, variant, args.count or 300):.0f} |", flush=True)
        return
    results: dict[tuple[str, str], list[tuple[float, float]]] = {(c[0], c[1]): [] for c in cases}
    for n in range(args.rounds):
        for language, name, root, variant in cases:
            results[(language, name)].append(measure(root.resolve(), language, variant, args.count or 10000))
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    print("| client | checkout | client CPU µs / round trip | server CPU µs / round trip |")
    print("|---|---|---:|---:|")
    for (language, name), runs in results.items():
        client = statistics.median(r[0] for r in runs)
        server = statistics.median(r[1] for r in runs)
        print(f"| {language} | {name} | {client:.1f} | {server:.1f} |")


if __name__ == "__main__":
    main()
