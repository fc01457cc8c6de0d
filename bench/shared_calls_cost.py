"""What iterators, coalescing and the response cache cost the hot paths
(docs/resilience.md §11, README "Iterating over messages and requests"),
and what they save, for two checkouts in alternating rounds.

    python bench/shared_calls_cost.py --before /tmp/before [--after .] [--rounds 5] [--count 10000]

``--before`` is a clone of the commit before them. Rows, each the median over
the rounds of CPU (user + system) per operation in microseconds:

- ``round trip``: a plain request (no coalesce, no cache_ttl) from a caller
  to a responder in the same client process: the client's CPU and the
  server's. Every request passes the new per-call options' check.
- ``publish to 4``: a publish delivered to 4 subscribing clients in one
  process (callback subscriptions): the clients' and the server's CPU per publish.
- ``cache hit`` / ``requests loop`` (after only): a call answered from the
  response cache; a round trip answered by ``client.requests()``'s loop
  instead of a ``serve()`` handler.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _checkout_server import start_server
from _common import PAYLOAD, cpu_ns

HERE = Path(__file__).resolve().parent

PY_WORKER = r"""
import asyncio, json, sys, time
case, port, count, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
from ipc_client import IPCClient
async def rounds(caller, worker, call):
    for _ in range(500):  # warm up
        await call()
    start = time.process_time()
    for _ in range(count):
        await call()
    return time.process_time() - start
async def main():
    async with IPCClient("bench", "127.0.0.1", port) as caller, IPCClient("bench", "127.0.0.1", port) as worker:
        if case == "publish":
            subs = [IPCClient("bench", "127.0.0.1", port) for _ in range(4)]
            got = [0]
            done = asyncio.Event()
            def on_msg(msg):
                got[0] += 1
                if got[0] == 4 * (count + 500):
                    done.set()
            for s in subs:
                await s.connect()
                await s.subscribe("ticks", on_msg)
            start = None
            for i in range(count + 500):
                if i == 500:
                    start = time.process_time()
                await caller.publish("ticks", payload)
            await asyncio.wait_for(done.wait(), 60)
            used = time.process_time() - start
            for s in subs:
                await s.disconnect()
        elif case == "loop":
            async with worker.requests("echo") as reqs:
                async def serve():
                    async for req in reqs:
                        await req.respond(req.payload)
                task = asyncio.create_task(serve())
                used = await rounds(caller, worker, lambda: caller.request("echo", payload))
            await task
        else:
            await worker.serve("echo", lambda m: m.payload)
            await asyncio.sleep(0)
            if case == "cached":
                used = await rounds(caller, worker, lambda: caller.request("echo", payload, cache_ttl=3600))
            else:
                used = await rounds(caller, worker, lambda: caller.request("echo", payload))
    print(json.dumps({"us": used / count * 1e6}))
asyncio.run(main())
"""

NODE_WORKER = r"""
const { IPCClient } = require(process.argv[1]);
const [cas, port, count] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const payload = JSON.parse(process.argv[5]);
(async () => {
  const caller = new IPCClient('bench', { port }), worker = new IPCClient('bench', { port });
  await caller.connect(); await worker.connect();
  let call = () => caller.request('echo', payload);
  let loop = null;
  if (cas === 'loop') {
    const reqs = await worker.requests('echo').ready();
    loop = (async () => { for await (const req of reqs) req.respond(req.payload); })();
    loop.reqs = reqs;
  } else {
    await worker.serve('echo', (m) => m.payload);
    if (cas === 'cached') call = () => caller.request('echo', payload, { cacheTtl: 3600000 });
  }
  for (let i = 0; i < 500; i++) await call();
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) await call();
  const used = process.cpuUsage(start);
  if (loop !== null) { await loop.reqs.return(); await loop; }
  await caller.disconnect(); await worker.disconnect();
  console.log(JSON.stringify({ us: (used.user + used.system) / count }));
})();
"""


def measure(root: Path, language: str, case: str, count: int) -> tuple[float, float]:
    """(client µs per operation, server µs per operation) for one run."""
    server, port = start_server(root)
    try:
        payload = json.dumps(PAYLOAD)
        before = cpu_ns(server.pid)
        if language == "python":
            argv = [sys.executable, "-c", PY_WORKER, case, str(port), str(count), payload]
            env = dict(os.environ, PYTHONPATH=str(root))
        else:
            argv = ["node", "-e", NODE_WORKER, str(root / "js-client"), case, str(port), str(count), payload]
            env = dict(os.environ)
        out = subprocess.run(argv, cwd="/", env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        server_us = (cpu_ns(server.pid) - before) / 1000 / (count + 500)
        return json.loads(out.stdout.splitlines()[-1])["us"], server_us
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=10000)
    args = parser.parse_args()
    cases = [
        ("python", "round trip", "before", args.before),
        ("python", "round trip", "after", args.after),
        ("python", "publish to 4", "before", args.before),
        ("python", "publish to 4", "after", args.after),
        ("python", "cache hit", "after", args.after),
        ("python", "requests loop", "after", args.after),
        ("node", "round trip", "before", args.before),
        ("node", "round trip", "after", args.after),
        ("node", "cache hit", "after", args.after),
        ("node", "requests loop", "after", args.after),
    ]
    kinds = {"round trip": "plain", "publish to 4": "publish", "cache hit": "cached", "requests loop": "loop"}
    results: dict[tuple[str, str, str], list[tuple[float, float]]] = {c[:3]: [] for c in cases}
    for n in range(args.rounds):
        for language, what, name, root in cases:
            results[(language, what, name)].append(measure(root.resolve(), language, kinds[what], args.count))
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    print("| client | operation | checkout | client CPU µs / op | server CPU µs / op |")
    print("|---|---|---|---:|---:|")
    for (language, what, name), runs in results.items():
        client = statistics.median(r[0] for r in runs)
        server = statistics.median(r[1] for r in runs)
        print(f"| {language} | {what} | {name} | {client:.1f} | {server:.1f} |")


if __name__ == "__main__":
    main()
