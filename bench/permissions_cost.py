"""What channel permissions cost (docs/security.md §3): publishes per second
and the server's CPU per publish on one connection, without a users file
and with one whose user has allow and deny patterns for publish.

    python bench/permissions_cost.py            # 4 rounds per side (about 40 s)
    python bench/permissions_cost.py --quick    # one short round per side

The publisher sends publishes without an ack in bursts of ``BURST``, each
burst closed by one acked publish (flow control: the server has handled
the burst when its ack comes back), on our Python client, to
``python -m ipc_server`` in its own process; nobody subscribes, so what is
measured is the server's handling of a publish, the permission check
included. Two channel sets: **one channel** (every check after the first
is a hit in the connection's decision cache) and **1,000 channels**
round robin (more than the cache's 128: every check is a miss, the worst
case). The sides are measured in alternating rounds (bench/README.md,
"Interleaved rounds"); a microbenchmark of the check itself follows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from _common import HOST, PAYLOAD, Children, cpu_ns  # first: puts the checkout on sys.path

from ipc_client import IPCClient
from ipc_server.users import hash_token

BURST = 256
ALLOW = ["bench.>", "orders.>", "inventory.*", "payments.*.eu", "audit.*.>", "ops.alerts", "*.health", "news.*", "eu.>", "us.>"]
DENY = ["bench.secret.>", "orders.audit.>", "payments.internal.*"]


def users_file(directory: Path) -> str:
    path = directory / "users.toml"
    path.write_text(
        f"""
[users.bench]
token_hash = "{hash_token("bench-token", log_n=10)}"
apps = ["bench"]
publish = {{ allow = {json.dumps(ALLOW)}, deny = {json.dumps(DENY)} }}
"""
    )
    return str(path)


async def publish_rate(port: int, server_pid: int, users: bool, channels: list[str], warmup_s: float, window_s: float) -> dict[str, float]:
    credentials: dict[str, Any] = {"user": "bench", "token": "bench-token"} if users else {}
    async with IPCClient("bench", HOST, port, reconnect=False, **credentials) as client:
        sent = 0

        async def burst() -> None:
            nonlocal sent
            for i in range(BURST - 1):
                await client.publish(channels[(sent + i) % len(channels)], PAYLOAD)
            await client.publish(channels[(sent + BURST - 1) % len(channels)], PAYLOAD, ack=True)
            sent += BURST

        loop = asyncio.get_running_loop()
        until = loop.time() + warmup_s
        while loop.time() < until:
            await burst()
        start_sent, start_cpu, start_t = sent, cpu_ns(server_pid), time.perf_counter()
        until = loop.time() + window_s
        while loop.time() < until:
            await burst()
        n, cpu, elapsed = sent - start_sent, cpu_ns(server_pid) - start_cpu, time.perf_counter() - start_t
    return {"rate": n / elapsed, "server_cpu_us": cpu / n / 1000}


def measure_round(users: str | None, channels: list[str], args: argparse.Namespace) -> dict[str, float]:
    with Children() as children:
        argv = [sys.executable, "-m", "ipc_server", "--host", HOST, "--port", "0", "--log-level", "WARNING"]
        if users is not None:
            argv += ["--users", users]
        server = children._start("server", argv)
        port = int(server.expect("ipc_server listening on ").rsplit(":", 1)[1])
        with asyncio.Runner() as runner:
            return runner.run(publish_rate(port, server.pid, users is not None, channels, args.warmup, args.window))


def check_cost() -> dict[str, float]:
    """The check alone: ``Auth.permits`` on a publish, a cache hit and a miss, in ns."""
    from ipc_protocol import Message, MessageType
    from ipc_server.permissions import Grant, Permissions, Rule

    grant = Grant("bench", "", frozenset({"bench"}), Permissions(publish=Rule(tuple(ALLOW), tuple(DENY))))
    hit = Message.build(MessageType.PUBLISH, "bench", "bench.ticks", PAYLOAD)
    n = 200_000
    hit_ns = min(timeit.repeat(lambda: grant.may_publish(hit.channel_id), number=n, repeat=5)) / n * 1e9
    names = [f"bench.c{i}" for i in range(1000)]
    it = iter(names * 200)
    miss_ns = min(timeit.repeat(lambda: grant.may_publish(next(it)), number=1000, repeat=5)) / 1000 * 1e9
    return {"hit_ns": hit_ns, "miss_ns": miss_ns}


def main() -> int:
    p = argparse.ArgumentParser(description="publish throughput without and with channel permissions")
    p.add_argument("--quick", action="store_true", help="one short round per side")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    args.rounds, args.warmup, args.window = (1, 0.3, 1.0) if args.quick else (4, 1.0, 2.0)
    results: dict[str, Any] = {"check": check_cost()}
    with tempfile.TemporaryDirectory() as tmp:
        users = users_file(Path(tmp))
        for label, channels in (("one channel", ["bench.ticks"]), ("1,000 channels", [f"bench.c{i}" for i in range(1000)])):
            sides: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
            for side in (["without", "with", "with", "without"] * args.rounds)[: 2 * args.rounds]:
                print(f"{label}: {side} permissions, round {len(sides[side]) + 1}", file=sys.stderr)
                sides[side].append(measure_round(users if side == "with" else None, channels, args))
            results[label] = {
                side: {"publishes_per_s": statistics.median(r["rate"] for r in rounds), "server_cpu_us": statistics.median(r["server_cpu_us"] for r in rounds)}
                for side, rounds in sides.items()
            }
    lines = ["| channels | permissions | publishes/s | server CPU / publish |", "|---|---|---|---|"]
    for label in ("one channel", "1,000 channels"):
        without, with_ = results[label]["without"], results[label]["with"]
        for name, side in (("without", without), ("with", with_)):
            lines.append(f"| {label} | {name} | {side['publishes_per_s']:,.0f} | {side['server_cpu_us']:.2f} µs |")
        lines.append(f"| {label} | with / without | {with_['publishes_per_s'] / without['publishes_per_s']:.3f}× | {with_['server_cpu_us'] / without['server_cpu_us']:.3f}× |")
    check = results["check"]
    print("\n".join(lines))
    print(f"\nThe check alone (Grant.may_publish, {len(ALLOW)} allow and {len(DENY)} deny patterns): {check['hit_ns']:.0f} ns cached, {check['miss_ns']:.0f} ns on a miss.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
