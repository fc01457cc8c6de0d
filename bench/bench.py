#!/usr/bin/env python3
"""Benchmark of the IPC bridge: one command, a markdown table.

    python bench/bench.py                 # every workload, about a minute
    python bench/bench.py --quick         # shorter windows, under 30 s
    python bench/bench.py --only latency  # one workload (comma-separated list allowed)
    python bench/bench.py --json out.json # also write the results as JSON

The server runs in its own process (``bench/_server.py``: an ``IPCServer``
with an ``echo`` handler), so the server and the client under test use
separate cores. Responders and subscribers run in further processes. Server
CPU comes from ``/proc/<pid>/task/*/schedstat`` (or ``/proc/<pid>/stat``),
server memory from ``VmRSS`` in ``/proc/<pid>/status``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import mmap
import os
import resource
import signal
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# _common first: it puts the checkout on sys.path.
from _common import (
    APP_ID,
    ECHO_CHANNEL,
    FANOUT_CHANNEL,
    HOST,
    PAYLOAD,
    PAYLOAD_BYTES,
    Children,
    LoadMeter,
    cpu_ns,
    machine_info,
    rss_kb,
    self_cpu_ns,
)

from ipc_client import IPCClient
from ipc_protocol import decode_message, encode_message
from ipc_protocol.framing import frame_header
from ipc_protocol.messages import connect_request

INFLIGHT = 64
SUBSCRIBERS = 4
# Publishes the publisher may be ahead of the slowest subscriber. Keeps the
# server's per-connection buffer far below its slow-consumer limit (8 MiB)
# while never letting the pipeline run dry.
FANOUT_WINDOW = 4096
FANOUT_BATCH = 128
REQUEST_TIMEOUT_S = 10.0
# Average cores used by other processes during a workload above which its
# results are flagged: they compete with the server and clients for 2 cores.
BUSY_CORES = 0.15


@dataclass(frozen=True)
class Settings:
    mode: str
    warmup_s: float  # before measuring a throughput workload
    window_s: float  # one measurement window
    rounds: int  # windows per throughput workload; the median is reported
    latency_s: float  # sampling time per latency path
    fanout_messages: int  # messages published in the fan-out workload
    fanout_cap_s: float  # ... unless this much time passes first
    idle_connections: int


FULL = Settings("full", warmup_s=0.5, window_s=2.0, rounds=3, latency_s=2.0, fanout_messages=150_000, fanout_cap_s=8.0, idle_connections=2000)
QUICK = Settings("quick", warmup_s=0.3, window_s=1.0, rounds=1, latency_s=1.0, fanout_messages=40_000, fanout_cap_s=3.0, idle_connections=2000)


@dataclass
class Row:
    key: str
    workload: str
    result: str
    unit: str
    notes: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    error: bool = False


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt_us(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


async def connect(port: int) -> IPCClient:
    client = IPCClient(APP_ID, HOST, port, reconnect=False, request_timeout=REQUEST_TIMEOUT_S)
    await client.connect()
    return client


# -- workloads 1 and 2: round trips with 64 in flight ---------------------------


async def _round_trips(port: int, server_pid: int, s: Settings, responder_pid: int | None) -> dict[str, Any]:
    client = await connect(port)
    done = 0
    stop = False

    async def requester() -> None:
        nonlocal done
        while not stop:
            await client.send_request(ECHO_CHANNEL, PAYLOAD, timeout=REQUEST_TIMEOUT_S)
            done += 1

    tasks = [asyncio.create_task(requester()) for _ in range(INFLIGHT)]
    rounds: list[dict[str, float]] = []
    try:
        await asyncio.sleep(s.warmup_s)
        for _ in range(s.rounds):
            t0, n0, srv0, cli0 = time.perf_counter(), done, cpu_ns(server_pid), self_cpu_ns()
            rsp0 = cpu_ns(responder_pid) if responder_pid else 0
            await asyncio.sleep(s.window_s)
            t1, n1, srv1, cli1 = time.perf_counter(), done, cpu_ns(server_pid), self_cpu_ns()
            rsp1 = cpu_ns(responder_pid) if responder_pid else 0
            failed = [t for t in tasks if t.done()]
            if failed:
                failed[0].result()  # raises the requester's error
                raise RuntimeError("a requester stopped early")
            n = n1 - n0
            if n == 0:
                raise RuntimeError("no round trip completed in a measurement window")
            rounds.append(
                {
                    "rate": n / (t1 - t0),
                    "server_cpu_us": (srv1 - srv0) / n / 1000,
                    "client_cpu_us": (cli1 - cli0) / n / 1000,
                    "responder_cpu_us": (rsp1 - rsp0) / n / 1000,
                }
            )
    finally:
        stop = True
        _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 2)
        for t in pending:
            t.cancel()
        await client.disconnect()
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]} | {"rounds": [r["rate"] for r in rounds]}


def _rounds_note(s: Settings) -> str:
    return f"median of {s.rounds} × {s.window_s:g} s" if s.rounds > 1 else f"one {s.window_s:g} s window"


def run_rr(s: Settings) -> list[Row]:
    with Children() as ch:
        server, port = ch.server()
        m = asyncio.run(_round_trips(port, server.pid, s, None))
    return [
        Row(
            "rr",
            f"request/response, in-process handler, {INFLIGHT} in flight, 1 connection",
            fmt_int(m["rate"]),
            "rt/s",
            f"{_rounds_note(s)}; client CPU {fmt_us(m['client_cpu_us'])} µs/rt",
            {"rt_per_s": m["rate"], "rounds": m["rounds"], "client_cpu_us_per_rt": m["client_cpu_us"]},
        ),
        Row(
            "rr.server_cpu",
            "  server CPU per round trip (in-process handler)",
            fmt_us(m["server_cpu_us"]),
            "µs/rt",
            "server process user+sys CPU / round trips",
            {"server_cpu_us_per_rt": m["server_cpu_us"]},
        ),
    ]


def run_rr_responder(s: Settings) -> list[Row]:
    with Children() as ch:
        server, port = ch.server(handler=False)
        responder = ch.worker("responder", "responder", str(port))
        m = asyncio.run(_round_trips(port, server.pid, s, responder.pid))
    return [
        Row(
            "rr-responder",
            f"request/response via a responder client (2 hops), {INFLIGHT} in flight",
            fmt_int(m["rate"]),
            "rt/s",
            f"{_rounds_note(s)}; responder in its own process; client CPU {fmt_us(m['client_cpu_us'])} µs/rt, "
            f"responder CPU {fmt_us(m['responder_cpu_us'])} µs/rt",
            {
                "rt_per_s": m["rate"],
                "rounds": m["rounds"],
                "client_cpu_us_per_rt": m["client_cpu_us"],
                "responder_cpu_us_per_rt": m["responder_cpu_us"],
            },
        ),
        Row(
            "rr-responder.server_cpu",
            "  server CPU per round trip (via responder)",
            fmt_us(m["server_cpu_us"]),
            "µs/rt",
            "receives and sends 2 frames per round trip",
            {"server_cpu_us_per_rt": m["server_cpu_us"]},
        ),
    ]


# -- workload 3: latency, one request in flight ------------------------------------


async def _latency(port: int, s: Settings) -> dict[str, Any]:
    client = await connect(port)
    try:
        for _ in range(300):  # warm-up
            await client.send_request(ECHO_CHANNEL, PAYLOAD, timeout=REQUEST_TIMEOUT_S)
        samples: list[int] = []
        clock = time.perf_counter_ns
        end = clock() + int(s.latency_s * 1e9)
        while True:
            t0 = clock()
            await client.send_request(ECHO_CHANNEL, PAYLOAD, timeout=REQUEST_TIMEOUT_S)
            t1 = clock()
            samples.append(t1 - t0)
            if t1 >= end:
                break
    finally:
        await client.disconnect()
    samples.sort()
    us = 1 / 1000
    return {
        "p50_us": percentile(samples, 50) * us,
        "p99_us": percentile(samples, 99) * us,
        "p999_us": percentile(samples, 99.9) * us,
        "mean_us": statistics.fmean(samples) * us,
        "max_us": samples[-1] * us,
        "samples": len(samples),
    }


def run_latency(s: Settings) -> list[Row]:
    rows = []
    with Children() as ch:
        server, port = ch.server()
        m = asyncio.run(_latency(port, s))
        rows.append(_latency_row("latency", "latency p50 / p99, 1 in flight, in-process handler", m))
        ch.stop_all()
        server, port = ch.server(handler=False)
        ch.worker("responder", "responder", str(port))
        m = asyncio.run(_latency(port, s))
        rows.append(_latency_row("latency-responder", "latency p50 / p99, 1 in flight, via responder (2 hops)", m))
    return rows


def _latency_row(key: str, name: str, m: dict[str, Any]) -> Row:
    return Row(
        key,
        name,
        f"{fmt_us(m['p50_us'])} / {fmt_us(m['p99_us'])}",
        "µs",
        f"{m['samples']:,} samples; mean {fmt_us(m['mean_us'])}, p99.9 {fmt_us(m['p999_us'])}, max {fmt_us(m['max_us'])}",
        m,
    )


# -- workload 4: pub/sub fan-out -----------------------------------------------------


async def _fanout(port: int, server_pid: int, subs_pid: int, mm: mmap.mmap, s: Settings) -> dict[str, Any]:
    unpack = struct.unpack_from
    offsets = [8 * i for i in range(SUBSCRIBERS)]

    def received() -> list[int]:
        return [unpack("<Q", mm, o)[0] for o in offsets]

    pub = await connect(port)
    loop = asyncio.get_running_loop()

    async def phase(count: int, cap_s: float) -> dict[str, Any]:
        base = received()
        published = 0
        t0 = time.perf_counter()
        stop_at = t0 + cap_s
        while published < count - 1 and time.perf_counter() < stop_at:
            slowest = min(r - b for r, b in zip(received(), base))
            room = FANOUT_WINDOW - (published - slowest)
            if room <= 0:
                await asyncio.sleep(0.0005)
                continue
            k = min(FANOUT_BATCH, room, count - 1 - published)
            for _ in range(k):
                await pub.publish(FANOUT_CHANNEL, PAYLOAD)
            published += k
            await asyncio.sleep(0)
        # The last message asks for an ack: the server has queued everything
        # for every subscriber once it answers.
        delivered = await pub.publish(FANOUT_CHANNEL, PAYLOAD, ack=True, timeout=REQUEST_TIMEOUT_S)
        published += 1
        drain_until = loop.time() + 3.0
        while True:
            got = [r - b for r, b in zip(received(), base)]
            if min(got) >= published or loop.time() > drain_until:
                break
            await asyncio.sleep(0.0005)
        t1 = time.perf_counter()
        total = sum(got)
        return {
            "published": published,
            "received": total,
            "per_subscriber": got,
            "lost": SUBSCRIBERS * published - total,
            "ack_delivered": delivered,
            "seconds": t1 - t0,
            "capped": published < count,
        }

    try:
        await phase(2000, 5.0)  # warm-up
        srv0, sub0, pub0 = cpu_ns(server_pid), cpu_ns(subs_pid), self_cpu_ns()
        m = await phase(s.fanout_messages, s.fanout_cap_s)
        srv1, sub1, pub1 = cpu_ns(server_pid), cpu_ns(subs_pid), self_cpu_ns()
    finally:
        await pub.disconnect()
    n = m["published"]
    m["delivered_per_s"] = m["received"] / m["seconds"]
    m["server_cpu_us_per_msg"] = (srv1 - srv0) / n / 1000
    m["subscribers_cpu_us_per_msg"] = (sub1 - sub0) / n / 1000
    m["publisher_cpu_us_per_msg"] = (pub1 - pub0) / n / 1000
    return m


def run_fanout(s: Settings) -> list[Row]:
    shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile(prefix="ipc-bench-", dir=shm_dir) as counters, Children() as ch:
        counters.truncate(8 * SUBSCRIBERS)
        counters.flush()
        mm = mmap.mmap(counters.fileno(), 8 * SUBSCRIBERS)
        try:
            server, port = ch.server()
            subs = ch.worker("subscribers", "subscribers", str(port), str(SUBSCRIBERS), counters.name)
            m = asyncio.run(_fanout(port, server.pid, subs.pid, mm, s))
        finally:
            mm.close()
    lost = m["lost"]
    capped = " (time cap reached)" if m["capped"] else ""
    return [
        Row(
            "fanout",
            f"pub/sub fan-out, 1 publisher -> {SUBSCRIBERS} subscribers",
            fmt_int(m["delivered_per_s"]),
            "msg/s",
            f"delivered, summed over subscribers; {m['published']:,} published{capped}, {m['received']:,} received"
            f" in {m['seconds']:.2f} s; subscribers in 1 process, CPU {fmt_us(m['subscribers_cpu_us_per_msg'])} µs/published msg",
            m,
        ),
        Row(
            "fanout.lost",
            "  fan-out messages lost",
            str(lost),
            "msgs",
            "must be 0" if lost == 0 else f"LOST: per subscriber {m['per_subscriber']}",
            {"lost": lost},
            error=lost != 0,
        ),
        Row(
            "fanout.server_cpu",
            "  server CPU per published message",
            fmt_us(m["server_cpu_us_per_msg"]),
            "µs/msg",
            f"1 frame in, {SUBSCRIBERS} out",
            {"server_cpu_us_per_msg": m["server_cpu_us_per_msg"]},
        ),
    ]


# -- workload 5: idle connection memory ----------------------------------------------


async def _idle_memory(port: int, server_pid: int, n: int) -> dict[str, Any]:
    limit = asyncio.Semaphore(100)

    async def open_one(i: int) -> asyncio.StreamWriter:
        async with limit:
            reader, writer = await asyncio.open_connection(HOST, port)
            body = encode_message(connect_request(APP_ID, f"idle-{i}", client="ipc-bench/1"))
            writer.write(frame_header(len(body)) + body)
            size = int.from_bytes(await reader.readexactly(4), "big")
            reply = decode_message(await reader.readexactly(size))
            payload = reply.payload if isinstance(reply.payload, dict) else {}
            if payload.get("status") != "connected" or payload.get("protocol") != 2:
                writer.close()
                raise RuntimeError(f"handshake refused: {reply.payload!r} {reply.error!r}")
            return writer

    async def close_all(writers: list[asyncio.StreamWriter]) -> None:
        for w in writers:
            w.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)

    # Warm-up: the first connections pay for one-off allocations.
    await close_all(list(await asyncio.gather(*(open_one(i) for i in range(50)))))
    await asyncio.sleep(0.5)
    before = rss_kb(server_pid)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(open_one(1000 + i) for i in range(n)), return_exceptions=True)
    opened = [w for w in results if isinstance(w, asyncio.StreamWriter)]
    errors = [e for e in results if isinstance(e, BaseException)]
    elapsed = time.perf_counter() - t0
    try:
        if errors:
            raise RuntimeError(f"{len(errors)} of {n} connections failed, first: {errors[0]!r}")
        await asyncio.sleep(0.5)
        after = rss_kb(server_pid)
    finally:
        await close_all(opened)
    return {
        "connections": n,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_connection": (after - before) / n,
        "open_seconds": elapsed,
    }


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log(f"warning: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors wanted")


def run_memory(s: Settings) -> list[Row]:
    n = s.idle_connections
    with Children() as ch:
        server, port = ch.server()
        m = asyncio.run(_idle_memory(port, server.pid, n))
    return [
        Row(
            "memory",
            f"server memory per idle connection ({n:,} handshaken v2 connections)",
            f"{m['kb_per_connection']:.1f}",
            "KB/conn",
            f"server VmRSS {m['rss_before_kb'] / 1024:.1f} -> {m['rss_after_kb'] / 1024:.1f} MiB; opened in {m['open_seconds']:.2f} s",
            m,
        )
    ]


# -- driver -------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[[Settings], list[Row]]] = {
    "rr": run_rr,
    "rr-responder": run_rr_responder,
    "latency": run_latency,
    "fanout": run_fanout,
    "memory": run_memory,
}


def render(rows: list[Row], machine: dict[str, Any], s: Settings, elapsed: float) -> str:
    lines = [
        f"## ipc-bridge benchmark ({s.mode} run, {elapsed:.0f} s)",
        "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['python']}, Linux {machine['kernel']}, pydantic-core {machine['pydantic_core']}",
        f"- {PAYLOAD_BYTES}-byte JSON payload; server `bench/_server.py` in its own process "
        f"(IPCServer, async `echo` handler), Python IPCClient clients, asyncio default loop, {HOST}",
        f"- other processes used {machine['other_load_cores']:.2f} cores on average during the run"
        + (" (results are noisy: run again on an idle machine)" if machine["other_load_cores"] >= BUSY_CORES else ""),
        "",
        "| workload | result | unit | notes |",
        "|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.workload} | {r.result} | {r.unit} | {r.notes} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/bench.py",
        description="Benchmark the IPC bridge (server in its own process) and print a markdown table.",
    )
    p.add_argument("--quick", action="store_true", help="shorter measurement windows (under 30 s in all)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these workloads (repeat or comma-separate): {', '.join(WORKLOADS)}",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    names: list[str] = []
    for item in args.only or []:
        names += [x.strip() for x in item.split(",") if x.strip()]
    unknown = [x for x in names if x not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.names = [x for x in WORKLOADS if x in names] if names else list(WORKLOADS)
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _terminate)
    _raise_nofile(s.idle_connections + 512)
    machine = machine_info()
    rows: list[Row] = []
    started = time.perf_counter()
    whole_run = LoadMeter()
    for name in args.names:
        log(f"bench: {name} ...")
        t0 = time.perf_counter()
        meter = LoadMeter()
        try:
            new = WORKLOADS[name](s)
        except Exception as exc:  # report and go on with the next workload
            new = [Row(name, name, "error", "-", f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500], error=True)]
            log(f"bench: {name} failed: {type(exc).__name__}: {exc}")
        other = meter.other_cores()
        for row in new:
            row.values["other_load_cores"] = round(other, 2)
        if other >= BUSY_CORES:
            new[0].notes += f"; **machine busy: {other:.1f} cores used by other processes**"
        rows += new
        log(f"bench: {name} done in {time.perf_counter() - t0:.1f} s")
    elapsed = time.perf_counter() - started
    machine["other_load_cores"] = round(whole_run.other_cores(), 2)
    print(render(rows, machine, s, elapsed), flush=True)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "machine": machine,
            "settings": asdict(s),
            "payload_bytes": PAYLOAD_BYTES,
            "elapsed_s": elapsed,
            "results": [asdict(r) for r in rows],
        }
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        log(f"bench: results written to {out}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
