"""Streams and cancellation across languages (docs/protocol.md §15), through
the real server (``python -m ipc_server`` in its own process) on 127.0.0.1:

    python bench/streams.py [--items 50000] [--rounds 3] [--window 64] [--aborts 50] [--stall-s 5]

- ``throughput``: one stream of ``--items`` 100-byte items, Python responder
  (an async generator, in this process) to a Node consumer, and Node
  responder (an ``async function*``) to a Python consumer that keeps up;
  items/s (median of ``--rounds``) and the server's CPU per item, with the
  consumers' ``--window`` (64, both clients' default).
- ``memory``: a Python responder whose generator never ends, and a Node
  consumer that takes 100 items and then stops reading: the producer's
  memory (tracemalloc, RSS) and the items it pulled, sampled for
  ``--stall-s`` seconds. Credit holds the generator, so both stay flat.
- ``abort``: a Node request whose handler is a Python responder; once the
  handler runs, Node calls ``abort()``; the time until the handler sees
  ``CancelledError`` (both clocks are this host's wall clock), median and
  p90 of ``--aborts`` rounds.

Prints one JSON object per figure. Needs ``node``; bounded throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, cpu_ns, node_binary, rss_kb  # first: it also puts the checkout on sys.path

from ipc_client import IPCClient
from ipc_protocol import Message

PEER = Path(__file__).resolve().parent / "node" / "stream_peer.js"
ITEM = "x" * 100
WAIT_S = 60.0


class Proc:
    """A child process speaking lines on stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *argv: str, env: dict[str, str] | None = None) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT, env=None if env is None else {**os.environ, **env}
        )
        return cls(proc)

    async def line(self, prefix: str = "") -> str:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)
            if not raw:
                raise RuntimeError(f"{self.proc.pid} exited")
            text = raw.decode().strip()
            if text.startswith("error"):
                raise RuntimeError(text)
            if text.startswith(prefix):
                return text[len(prefix) :].strip()

    async def result(self) -> dict[str, Any]:
        return json.loads(await self.line("result"))  # type: ignore[no-any-return]

    def send(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((text + "\n").encode())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def node(node_bin: str, role: str, port: int, channel: str, arg: object, window: int = 64) -> Proc:
    peer = await Proc.start(node_bin, str(PEER), role, str(port), channel, str(arg), env={"WINDOW": str(window)})
    await peer.line("ready")
    return peer


async def throughput(node_bin: str, port: int, pid: int, items: int, rounds: int, window: int) -> dict[str, Any]:
    producer = IPCClient("bench", "127.0.0.1", port, request_timeout=WAIT_S)
    await producer.connect()

    async def stream(msg: Message) -> AsyncIterator[str]:
        for _ in range(msg.payload):
            yield ITEM

    await producer.serve("bench.py_stream", stream)
    py_to_node, node_to_py, cpu_py_node, cpu_node_py = [], [], [], []
    node_producer = await node(node_bin, "produce", port, "bench.node_stream", 100)
    try:
        for _ in range(rounds):
            consumer = await node(node_bin, "consume", port, "bench.py_stream", items, window)
            cpu0 = cpu_ns(pid)
            consumer.send()
            result = await consumer.result()
            cpu_py_node.append((cpu_ns(pid) - cpu0) / items / 1000)
            py_to_node.append(result["itemsPerS"])
            await consumer.stop()
            cpu0 = cpu_ns(pid)
            started = time.perf_counter()
            count = 0
            async for _item in producer.stream("bench.node_stream", items, window=window):
                count += 1
            node_to_py.append(count / (time.perf_counter() - started))
            cpu_node_py.append((cpu_ns(pid) - cpu0) / items / 1000)
    finally:
        await node_producer.stop()
        await producer.disconnect()
    return {
        "figure": f"stream throughput, 100-byte items, consumer keeping up (window {window})",
        "items_per_stream": items,
        "python_to_node_items_per_s": round(statistics.median(py_to_node)),
        "node_to_python_items_per_s": round(statistics.median(node_to_py)),
        "server_cpu_us_per_item": {"python_to_node": round(statistics.median(cpu_py_node), 2), "node_to_python": round(statistics.median(cpu_node_py), 2)},
        "rounds": rounds,
    }


async def memory(node_bin: str, port: int, server_pid: int, stall_s: float) -> dict[str, Any]:
    producer = IPCClient("bench", "127.0.0.1", port, request_timeout=WAIT_S)
    await producer.connect()
    pulled = 0

    async def endless(msg: Message) -> AsyncIterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield "x" * 100  # a new object each time, as real items are

    await producer.serve("bench.endless", endless)
    tracemalloc.start()
    consumer = await node(node_bin, "stall", port, "bench.endless", 100)
    samples = []
    try:
        await consumer.result()  # 100 taken: from now on the consumer reads nothing
        async with asyncio.timeout(WAIT_S):  # the grants already sent arrive: then the producer is held
            while True:
                before = pulled
                await asyncio.sleep(0.2)
                if pulled == before:
                    break
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) <= stall_s:
            current, _peak = tracemalloc.get_traced_memory()
            samples.append({"t_s": round(elapsed, 1), "items_pulled": pulled, "tracemalloc_kb": current // 1024,
                            "producer_rss_kb": rss_kb_self(), "server_rss_kb": rss_kb(server_pid)})  # fmt: skip
            await asyncio.sleep(stall_s / 10)
    finally:
        tracemalloc.stop()
        await consumer.stop()
        await producer.disconnect()
    first, last = samples[0], samples[-1]
    return {
        "figure": "producer memory while the consumer has stopped reading (Python producer, Node consumer, window 64)",
        "samples": samples,
        "growth": {key: last[key] - first[key] for key in ("items_pulled", "tracemalloc_kb", "producer_rss_kb", "server_rss_kb")},
    }


def rss_kb_self() -> int:
    import os

    return rss_kb(os.getpid())


async def abort_latency(node_bin: str, port: int, rounds: int) -> dict[str, Any]:
    responder = IPCClient("bench", "127.0.0.1", port, request_timeout=WAIT_S)
    await responder.connect()
    cancelled_at: list[float] = []
    caller: Proc | None = None
    started = asyncio.Event()  # Node's first request may come in before node() has returned

    async def slow(msg: Message) -> None:
        await started.wait()
        assert caller is not None
        caller.send()  # the handler runs: Node may abort now
        try:
            await asyncio.sleep(WAIT_S)
        except asyncio.CancelledError:
            cancelled_at.append(time.time() * 1000)
            raise

    await responder.serve("bench.slow", slow)
    caller = await node(node_bin, "abort", port, "bench.slow", rounds)
    started.set()
    latencies = []
    try:
        for _ in range(rounds):
            result = await caller.result()
            assert result["code"] == "cancelled", result
            async with asyncio.timeout(WAIT_S):
                while len(cancelled_at) <= len(latencies):
                    await asyncio.sleep(0.001)
            latencies.append(cancelled_at[len(latencies)] - result["abortedAt"])
    finally:
        await caller.stop()
        await responder.disconnect()
    latencies.sort()
    return {
        "figure": "Node abort() to the Python responder's CancelledError",
        "rounds": rounds,
        "median_ms": round(statistics.median(latencies), 3),
        "p90_ms": round(latencies[int(0.9 * (len(latencies) - 1))], 3),
        "max_ms": round(latencies[-1], 3),
    }


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=int, default=64, help="the consumers' window in the throughput figure")
    p.add_argument("--aborts", type=int, default=50)
    p.add_argument("--stall-s", type=float, default=5.0)
    args = p.parse_args()
    node_bin = node_binary()
    if node_bin is None:
        sys.exit("streams.py needs node on PATH")
    server = await Proc.start(sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "WARNING")
    try:
        port = int((await server.line("ipc_server listening on")).rpartition(":")[2])
        pid = server.proc.pid
        print(json.dumps(await throughput(node_bin, port, pid, args.items, args.rounds, args.window)), flush=True)
        print(json.dumps(await memory(node_bin, port, pid, args.stall_s)), flush=True)
        print(json.dumps(await abort_latency(node_bin, port, args.aborts)), flush=True)
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
