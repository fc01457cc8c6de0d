"""Cluster mode's figures (docs/cluster.md §8, issue 17 §5), side by side in
one run, on fresh processes per round, rounds interleaved:

- request/response through a responder client, 64 in flight: one server
  (requester and responder on it), two nodes joined through nats-server
  (requester on node A, responder on node B), and nats-server with nats-py
  clients in the same roles; rate and server CPU per round trip (both
  nodes together; nats-server's own CPU apart);
- latency, one request in flight: p50 and p99 of the same three;
- fan-out, one publisher and four subscriber connections: on one server;
  split two and two over two nodes (publisher on A); on nats-server;
- ``--workers 1`` vs ``2``: the in-process handler workload, servers started
  as ``--workers`` starts its workers (SO_REUSEPORT, joined through
  nats-server), requests from this process over connections spread over
  the workers; rate, CPU per round trip of each process, and round trips
  per busy server core.

``--instructions``: instead, the servers' instructions per round trip
(single node, and both nodes together) under valgrind's callgrind, from a
run of N round trips and one of 5N (50 in flight), so start-up and
shutdown cancel out: a figure other work on the machine does not move.

Servers are ``bench/_server.py`` (an ``IPCServer``; ``--cluster``: a node),
responders and subscribers ``bench/_worker.py``. The requester and the
publisher run in this process (asyncio, our Python client or nats-py).
Prints a table, and the figures as JSON with ``--json``.

    python bench/cluster.py [--rounds 3] [--seconds 2] [--json]
    python bench/cluster.py --instructions [--count 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import APP_ID, ECHO_CHANNEL, FANOUT_CHANNEL, HOST, PAYLOAD, Children, LoadMeter, cpu_ns, machine_info, self_cpu_ns
from _cluster_setup import SUBSCRIBERS, TIMEOUT_S, Call, Setup, open_requester, start_server

from ipc_client import IPCClient

INFLIGHT = 64
FANOUT_WINDOW = 4096


# -- measurements ----------------------------------------------------------------------


async def round_trips(calls: list[Call], seconds: float, cpu: Callable[[], int], per_pid: list[int] | None = None) -> dict[str, Any]:
    """``INFLIGHT`` requests in flight over ``calls`` for ``seconds`` after a warm-up."""
    done = 0
    stop = False

    async def loop(call: Call) -> None:
        nonlocal done
        while not stop:
            await call()
            done += 1

    tasks = [asyncio.create_task(loop(calls[i % len(calls)])) for i in range(INFLIGHT)]
    try:
        await asyncio.sleep(0.5)
        t0, n0, c0, me0 = time.perf_counter(), done, cpu(), self_cpu_ns()
        each0 = [cpu_ns(p) for p in per_pid or []]
        await asyncio.sleep(seconds)
        t1, n1, c1, me1 = time.perf_counter(), done, cpu(), self_cpu_ns()
        each1 = [cpu_ns(p) for p in per_pid or []]
        for t in tasks:
            if t.done():
                t.result()
    finally:
        stop = True
        await asyncio.wait(tasks, timeout=TIMEOUT_S)
    n = n1 - n0
    out = {"rate": n / (t1 - t0), "server_cpu_us": (c1 - c0) / n / 1000, "client_cpu_us": (me1 - me0) / n / 1000, "seconds": t1 - t0}
    if per_pid:
        out["per_process_cpu_us"] = [(b - a) / n / 1000 for a, b in zip(each0, each1)]
    return out


async def latency(call: Call, n: int) -> list[float]:
    for _ in range(200):  # warm-up
        await call()
    samples = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        await call()
        samples.append((clock() - t0) * 1e6)
    return samples


async def fanout(setup: Setup, messages: int) -> dict[str, Any]:
    """One publisher; deliveries per second to ``SUBSCRIBERS`` connections."""
    maps = []
    for path in setup.slots:
        fd = os.open(path, os.O_RDWR)
        maps.append(mmap.mmap(fd, os.path.getsize(path)))
        os.close(fd)

    def received() -> list[int]:
        return [struct.unpack_from("<Q", m, 8 * i)[0] for m in maps for i in range(len(m) // 8)]

    if setup.kind == "nats":
        import nats as nats_py

        nc = await nats_py.connect(f"nats://{HOST}:{setup.pub_port}", allow_reconnect=False, no_echo=True)
        body = json.dumps(PAYLOAD, separators=(",", ":")).encode()

        async def publish() -> None:
            await nc.publish(FANOUT_CHANNEL, body)

        close: Callable[[], Awaitable[None]] = nc.close
    else:
        client = IPCClient(APP_ID, HOST, setup.pub_port, reconnect=False)
        await client.connect()

        async def publish() -> None:
            await client.publish(FANOUT_CHANNEL, PAYLOAD)

        close = client.disconnect

    async def phase(count: int) -> tuple[int, float]:
        base = received()
        t0 = time.perf_counter()
        for published in range(count):
            while published - min(r - b for r, b in zip(received(), base)) >= FANOUT_WINDOW:
                await asyncio.sleep(0.0005)
            await publish()
            if published % 128 == 0:
                await asyncio.sleep(0)
        deadline = time.perf_counter() + 10
        while min(r - b for r, b in zip(received(), base)) < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)
        return sum(r - b for r, b in zip(received(), base)), time.perf_counter() - t0

    try:
        await phase(1000)
        c0 = setup.cpu()
        delivered, seconds = await phase(messages)
        c1 = setup.cpu()
    finally:
        await close()
        for m in maps:
            m.close()
    return {"rate": delivered / seconds, "lost": SUBSCRIBERS * messages - delivered, "server_cpu_us_per_msg": (c1 - c0) / messages / 1000}


def one_setup(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with Children() as ch, tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        setup = Setup(ch, kind, os.path.join(tmp, "counters"))

        async def run() -> dict[str, Any]:
            call, close = await open_requester(kind == "nats", setup.port)
            try:
                rr = await round_trips([call], args.seconds, setup.cpu, per_pid=[setup.nats_pid] if setup.nats_pid else None)
                if setup.nats_pid:
                    rr["nats_server_cpu_us"] = rr.pop("per_process_cpu_us")[0]
                samples = sorted(await latency(call, args.latency_n))
            finally:
                await close()
            fo = await fanout(setup, args.fanout_messages)
            return {"rr": rr, "p50_us": samples[len(samples) // 2], "p99_us": samples[int(len(samples) * 0.99)], "fanout": fo}

        return asyncio.run(run())


def workers_setup(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """``n`` servers with the echo handler on one port (n > 1: SO_REUSEPORT, through nats-server)."""
    with Children() as ch:
        url = None
        if n > 1:
            _, nats_port = ch.nats_server()
            url = f"nats://{HOST}:{nats_port}"
        first, port = start_server(ch, "w1", handler=True, cluster=url, reuse=n > 1)
        pids = [first.pid] + [start_server(ch, f"w{i}", handler=True, cluster=url, port=port, reuse=True)[0].pid for i in range(2, n + 1)]

        async def run() -> dict[str, Any]:
            clients: list[IPCClient] = []
            by_node: dict[str, list[IPCClient]] = {}
            while sum(len(v) >= 2 for v in by_node.values()) < n and len(clients) < 64:  # two connections per worker
                client = IPCClient(APP_ID, HOST, port, reconnect=False)
                await client.connect()
                clients.append(client)
                stats = await client.system("stats")
                by_node.setdefault(stats.get("cluster", {}).get("node", "w1"), []).append(client)
            chosen = [c for v in by_node.values() for c in v[:2]]
            try:
                calls = [lambda c=c: c.send_request(ECHO_CHANNEL, PAYLOAD, timeout=TIMEOUT_S) for c in chosen]
                return await round_trips(calls, args.seconds, lambda: sum(cpu_ns(p) for p in pids), per_pid=pids)
            finally:
                for c in clients:
                    await c.disconnect()

        out = asyncio.run(run())
        busy = out["server_cpu_us"] * out["rate"] / 1e6  # server cores busy on average
        out["per_busy_server_core"] = out["rate"] / busy if busy else 0.0
        return out


def _callgrind_total(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def instructions(kind: str, count: int, tmp: str) -> int:
    """The servers' instructions (every node's) over ``count`` round trips through a responder."""
    with Children() as ch:
        names = ["s"] if kind == "single" else ["a", "b"]
        url = None
        if kind == "cross":
            _, nats_port = ch.nats_server()
            url = f"nats://{HOST}:{nats_port}"
        ports = [start_server(ch, n, cluster=url, callgrind=os.path.join(tmp, f"{kind}-{count}-{n}"))[1] for n in names]
        ch.worker("responder", "responder", str(ports[-1]))

        async def run() -> None:
            client = IPCClient(APP_ID, HOST, ports[0], reconnect=False)
            await client.connect()

            async def loop(k: int) -> None:
                for _ in range(k):
                    await client.send_request(ECHO_CHANNEL, PAYLOAD, timeout=600)

            await asyncio.gather(*(loop(count // 50) for _ in range(50)))
            await client.disconnect()

        asyncio.run(run())
        ch.stop_all()  # callgrind writes its totals as each server exits
    return sum(_callgrind_total(os.path.join(tmp, f"{kind}-{count}-{n}")) for n in names)


def instructions_report(count: int) -> None:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("single", "cross"):
            out[kind] = (instructions(kind, 5 * count, tmp) - instructions(kind, count, tmp)) / (4 * count) / 1000
    print(f"server instructions per round trip, 50 in flight: one server {out['single']:.1f}k, two nodes {out['cross']:.1f}k "
          f"(both; {out['cross'] / out['single']:.2f}x)")  # fmt: skip


# -- report ----------------------------------------------------------------------------


def median(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in rounds:
        for key in path:
            r = r[key]
        values.append(float(r))  # type: ignore[arg-type]
    return statistics.median(values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="round-trip window per round")
    p.add_argument("--latency-n", type=int, default=2000)
    p.add_argument("--fanout-messages", type=int, default=20000)
    p.add_argument("--no-workers", dest="workers", action="store_false")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    p.add_argument("--instructions", action="store_true", help="the servers' instructions per round trip under callgrind, instead")
    p.add_argument("--count", type=int, default=500, help="--instructions: round trips of the shorter run (the longer: 5x)")
    args = p.parse_args()
    if args.instructions:
        instructions_report(args.count)
        return
    load = LoadMeter()
    kinds = ("single", "cross", "nats")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    workers: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    started = time.monotonic()
    for r in range(args.rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            results[kind].append(one_setup(kind, args))
        if args.workers:
            for n in (1, 2) if r % 2 == 0 else (2, 1):
                workers[n].append(workers_setup(n, args))
    figures: dict[str, Any] = {"machine": machine_info(), "other_cores_busy": round(load.other_cores(), 2), "rounds": args.rounds,
                               "elapsed_s": round(time.monotonic() - started, 1)}  # fmt: skip
    for kind in kinds:
        rs = results[kind]
        figures[kind] = {
            "rr_rate": median(rs, "rr", "rate"), "rr_server_cpu_us": median(rs, "rr", "server_cpu_us"),
            "p50_us": median(rs, "p50_us"), "p99_us": median(rs, "p99_us"),
            "fanout_rate": median(rs, "fanout", "rate"), "fanout_lost": max(r["fanout"]["lost"] for r in rs),
        }  # fmt: skip
    figures["cross"]["nats_server_cpu_us"] = median(results["cross"], "rr", "nats_server_cpu_us")
    if args.workers:
        for n in (1, 2):
            ws = workers[n]
            figures[f"workers_{n}"] = {
                "rate": median(ws, "rate"), "server_cpu_us": median(ws, "server_cpu_us"), "client_cpu_us": median(ws, "client_cpu_us"),
                "per_process_cpu_us": [round(statistics.median(w["per_process_cpu_us"][i] for w in ws), 1) for i in range(n)],
                "per_busy_server_core": median(ws, "per_busy_server_core"),
            }  # fmt: skip
    s, c, n = figures["single"], figures["cross"], figures["nats"]
    figures["targets"] = {
        "cross_p50_us": c["p50_us"], "cross_p50_bound_us": s["p50_us"] + n["p50_us"] + 100,
        "fanout_ratio": c["fanout_rate"] / s["fanout_rate"], "fanout_ratio_bound": 0.8,
        "cpu_ratio": c["rr_server_cpu_us"] / s["rr_server_cpu_us"], "cpu_ratio_bound": 2.5,
    }  # fmt: skip
    if args.json:
        print(json.dumps(figures), flush=True)
        return
    print(f"{'':28}{'single node':>14}{'two nodes':>14}{'nats-server':>14}")
    for label, key, fmt in (("round trips/s (64 in flight)", "rr_rate", "{:,.0f}"), ("server CPU per round trip µs", "rr_server_cpu_us", "{:.1f}"),
                            ("latency p50 µs", "p50_us", "{:.0f}"), ("latency p99 µs", "p99_us", "{:.0f}"),
                            ("fan-out deliveries/s", "fanout_rate", "{:,.0f}")):  # fmt: skip
        print(f"{label:28}" + "".join(f"{fmt.format(figures[k][key]):>14}" for k in kinds))
    print(f"two nodes: nats-server CPU per round trip {c['nats_server_cpu_us']:.1f} µs (not in the server figure)")
    t = figures["targets"]
    print(f"targets: cross p50 {t['cross_p50_us']:.0f} <= {t['cross_p50_bound_us']:.0f} µs; fan-out {t['fanout_ratio']:.2f}x >= 0.8x; CPU {t['cpu_ratio']:.2f}x <= 2.5x")
    if args.workers:
        for k in (1, 2):
            w = figures[f"workers_{k}"]
            print(f"--workers {k}: {w['rate']:,.0f} round trips/s, server CPU {w['server_cpu_us']:.1f} µs per round trip {w['per_process_cpu_us']}, "
                  f"client {w['client_cpu_us']:.1f} µs, {w['per_busy_server_core']:,.0f} per busy server core")  # fmt: skip
    print(f"other work on the machine: {figures['other_cores_busy']} cores busy on average; {figures['elapsed_s']} s")


if __name__ == "__main__":
    main()
