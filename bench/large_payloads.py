"""Round trips with a large JSON payload (a list of small objects, as a
query's rows): our Python client and server against the hand-written
minimal ones (bench/_minimal_client.py, bench/_minimal_server.py), in
alternating rounds. docs/performance.md, "Large payloads".

    python bench/large_payloads.py [--rows 100] [--inflight 16] [--count 3200] [--rounds 3] [--before CHECKOUT]

Each case runs in a process of its own: the client, 16 requests in flight
(``--inflight``), against a fresh server whose ``echo`` handler answers the
payload back. ``--before``: a clone of another commit, whose client and
server run as a case of their own (``git clone -q . /tmp/before && git -C
/tmp/before checkout <sha>``). Figures: round trips per second and the
client's and the server's CPU (user + system) per round trip, medians over
the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _common import PAYLOAD

HERE = Path(__file__).resolve().parent

CASE = r"""
import asyncio, json, os, subprocess, sys, time
root, client_kind, server_kind, rows, inflight, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
sys.path[:0] = [root, os.path.join(root, "bench")]
from _common import PAYLOAD, cpu_ns, self_cpu_ns
server_script = os.path.join(root, "bench", "_server.py" if server_kind == "ours" else "_minimal_server.py")
server = subprocess.Popen([sys.executable, server_script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
port = int(server.stdout.readline().rpartition(":")[2])
payload = {"rows": [dict(PAYLOAD, n=i, note=None) for i in range(rows)]}

async def main():
    if client_kind == "ours":
        from ipc_client import IPCClient
        client = IPCClient("bench", "127.0.0.1", port, reconnect=False, request_timeout=60)
        await client.connect()
        close = client.disconnect
    else:
        from _minimal_client import MinimalClient
        client = await MinimalClient.open("127.0.0.1", port, "bench")
        close = client.close

    async def caller(n):
        for _ in range(n):
            await client.request("echo", payload)

    await asyncio.gather(*(caller(max(1, count // inflight // 10)) for _ in range(inflight)))
    c0, s0, t0 = self_cpu_ns(), cpu_ns(server.pid), time.perf_counter()
    await asyncio.gather(*(caller(count // inflight) for _ in range(inflight)))
    seconds, done = time.perf_counter() - t0, count // inflight * inflight
    result = {"rt_s": done / seconds, "client_us": (self_cpu_ns() - c0) / done / 1e3, "server_us": (cpu_ns(server.pid) - s0) / done / 1e3}
    await close()
    return result

try:
    print(json.dumps(asyncio.run(main())))
finally:
    server.stdin.close()
    server.wait(timeout=30)
"""


def run_case(root: Path, client: str, server: str, args: argparse.Namespace) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CASE, str(root), client, server, str(args.rows), str(args.inflight), str(args.count)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(root)),
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{client} client, {server} server ({root}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100, help="objects in the payload's list (100: ~12 KB a frame)")
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--count", type=int, default=3200, help="round trips measured per case and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", type=Path, help="another checkout: its client and server as one more case")
    args = p.parse_args()
    root = HERE.parent
    cases = [("ours", "ours", root, "our client, our server"), ("minimal", "ours", root, "minimal client, our server"), ("minimal", "minimal", root, "minimal client, minimal server")]
    if args.before is not None:
        cases.insert(0, ("ours", "ours", args.before.resolve(), f"our client, our server at {args.before}"))
    results: dict[str, list[dict[str, float]]] = {label: [] for *_, label in cases}
    for _ in range(args.rounds):
        for client, server, checkout, label in cases:
            results[label].append(run_case(checkout, client, server, args))
    payload = {"rows": [dict(PAYLOAD, n=i, note=None) for i in range(args.rows)]}
    size = len(json.dumps(payload, separators=(",", ":")))
    print(f"{args.rows} objects ({size / 1024:.1f} KB of payload), {args.inflight} in flight, {args.count} round trips a case, medians of {args.rounds} rounds\n")
    print("| case | round trips/s | client CPU µs/rt | server CPU µs/rt |")
    print("|---|---:|---:|---:|")
    for label, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"| {label} | {med['rt_s']:,.0f} | {med['client_us']:,.0f} | {med['server_us']:,.0f} |")


if __name__ == "__main__":
    main()
