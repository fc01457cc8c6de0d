"""The in-process streaming hot path (docs/protocol.md §15.6): the server's
own ``async def`` generator streaming to a Python consumer over 127.0.0.1,
for two checkouts in alternating rounds:

    python bench/streams_in_process.py [--items 100000] [--rounds 5]
        [--windows 64,1048576] [--before PATH]

Each round starts the server of each checkout (``_stream_server.py``: a
handler yielding 100-byte items, never awaiting), streams ``--items`` items
to a consumer in this process that keeps up, once per window, and measures
items/s at the consumer and the server's CPU per item. ``--before`` is a
checkout to compare with (a worktree of the commit before a change); the
best of the rounds is kept for each, as the machine's load moves the
figures between rounds. Prints one JSON object per checkout and window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from _common import BENCH_DIR, REPO_ROOT, Child, cpu_ns  # first: it also puts the checkout on sys.path

from ipc_client import IPCClient

WAIT_S = 120.0


async def one_stream(port: int, pid: int, items: int, window: int) -> tuple[float, float]:
    """Items/s at the consumer, and the server's CPU µs per item, for one stream."""
    async with IPCClient("bench", "127.0.0.1", port, request_timeout=WAIT_S) as client:
        assert await client.request("system", {"action": "ping"}) == {"status": "pong"}
        cpu0 = cpu_ns(pid)
        started = time.perf_counter()
        count = 0
        async with asyncio.timeout(WAIT_S):
            async for _item in client.stream("bench.local", items, window=window):
                count += 1
        elapsed = time.perf_counter() - started
        cpu = (cpu_ns(pid) - cpu0) / count / 1000
    assert count == items, count
    return count / elapsed, cpu


def start(root: str) -> tuple[Child, int]:
    server = Child("stream-server", [sys.executable, str(BENCH_DIR / "_stream_server.py"), "--root", root])
    line = server.readline(30)
    return server, int(line.strip().rpartition(":")[2])


async def run(checkouts: dict[str, str], items: int, rounds: int, windows: list[int]) -> list[dict[str, Any]]:
    best: dict[tuple[str, int], tuple[float, float]] = {}
    for _ in range(rounds):
        for label, root in checkouts.items():  # alternating, so that load hits both alike
            server, port = start(root)
            try:
                for window in windows:
                    rate, cpu = await one_stream(port, server.pid, items, window)
                    old = best.get((label, window))
                    best[(label, window)] = (max(rate, old[0]), min(cpu, old[1])) if old else (rate, cpu)
            finally:
                server.stop()
    return [
        {
            "figure": "in-process stream, 100-byte items, async generator that never awaits, Python consumer keeping up",
            "checkout": label,
            "window": window,
            "items_per_stream": items,
            "best_items_per_s": round(best[(label, window)][0]),
            "best_server_cpu_us_per_item": round(best[(label, window)][1], 2),
            "rounds": rounds,
        }
        for label in checkouts
        for window in windows
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--windows", default="64,1048576", help="the consumer's windows, comma-separated")
    p.add_argument("--before", help="a checkout to compare with, measured in the same rounds")
    args = p.parse_args()
    checkouts = {"this": str(REPO_ROOT)}
    if args.before:
        checkouts = {"before": args.before, **checkouts}
    windows = [int(w) for w in args.windows.split(",")]
    for figure in asyncio.run(run(checkouts, args.items, args.rounds, windows)):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
