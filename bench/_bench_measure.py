"""Round trips (64 in flight) and latency (one in flight), on fresh
processes per round: our server, the minimal server or nats-server, with
our clients, the minimal clients or nats clients, in Python or Node."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

# _common first: it puts the checkout on sys.path.
from _common import (
    APP_ID,
    ECHO_CHANNEL,
    HOST,
    PAYLOAD,
    Child,
    Children,
    cpu_ns,
    self_cpu_ns,
)
from _minimal_client import MinimalClient
from _bench_core import (
    Context,
    INFLIGHT,
    REQUEST_TIMEOUT_S,
    Settings,
)

from ipc_client import IPCClient



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



def _window(n: int, seconds: float, server_ns: int, client_ns: int, responder_ns: int) -> dict[str, float]:
    """One window's rate, CPU per round trip and cores kept busy, from its counts and CPU deltas."""
    if n == 0:
        raise RuntimeError("no round trip completed in the measurement window")
    return {
        "rate": n / seconds,
        "server_cpu_us": server_ns / n / 1000,
        "client_cpu_us": client_ns / n / 1000,
        "responder_cpu_us": responder_ns / n / 1000,
        # The processes' CPU together over the window's time: how many of the
        # machine's cores the round trips kept busy.
        "cores_busy": (server_ns + client_ns + responder_ns) / seconds / 1e9,
    }


async def _py_round_trips(kind: str, port: int, server_pid: int, s: Settings, other_pid: int | None, inflight: int) -> dict[str, float]:
    """One window of round trips after the warm-up, by requester tasks in this process."""
    call, close = await open_requester(kind, port)
    done = 0
    stop = False

    async def requester() -> None:
        nonlocal done
        while not stop:
            await call()
            done += 1

    tasks = [asyncio.create_task(requester()) for _ in range(inflight)]
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


def _node_round_trips(ch: Children, kind: str, port: int, server_pid: int, s: Settings, other_pid: int | None, inflight: int) -> dict[str, float]:
    """One window of round trips after the warm-up, by a Node requester process."""
    peer = ch.node(
        "node-requester",
        *("rr", "--client", kind, "--port", str(port), "--inflight", str(inflight)),
        *("--warmup", str(s.warmup_s), "--window", str(s.window_s), "--rounds", "1"),
        ready=False,
    )
    pids = [server_pid, peer.pid] + ([other_pid] if other_pid else [])
    (a, b), result = _read_marks(peer, pids, timeout=s.warmup_s + s.window_s + 30)
    w = result["windows"][0]
    responder_ns = b[other_pid] - a[other_pid] if other_pid else 0
    return _window(w["count"], w["seconds"], b[server_pid] - a[server_pid], b[peer.pid] - a[peer.pid], responder_ns)


def measure_rr(
    ctx: Context, lang: str, *, server: str, client: str, loop: str = "asyncio", responder: str | None = None, inflight: int = INFLIGHT
) -> dict[str, float]:
    """One window of round trips/s with ``inflight`` (64) in flight on one
    connection, on processes of its own (one round of a pair, see ``interleave``).

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
            return asyncio.run(_py_round_trips(client, port, srv.pid, ctx.s, rsp_pid, inflight))
        return _node_round_trips(ch, client, port, srv.pid, ctx.s, rsp_pid, inflight)


# -- measurements: latency, one request in flight ------------------------------------------




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

