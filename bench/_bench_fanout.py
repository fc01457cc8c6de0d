"""Pub/sub fan-out (1 publisher -> 4 subscribers) and the memory of idle
connections, on fresh processes per round."""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

# _common first: it puts the checkout on sys.path.
from _common import (
    APP_ID,
    FANOUT_CHANNEL,
    HOST,
    PAYLOAD,
    Children,
    cpu_ns,
    rss_kb,
    self_cpu_ns,
)
from _bench_core import (
    Context,
    FANOUT_BATCH,
    FANOUT_WINDOW,
    REQUEST_TIMEOUT_S,
    SUBSCRIBERS,
    Settings,
)

from _bench_measure import _read_marks
from _minimal_client import MinimalClient

from ipc_client import IPCClient
from ipc_protocol import decode_message, encode_message
from ipc_protocol.framing import frame_header
from ipc_protocol.messages import connect_request



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
    elif kind == "minimal":
        mc = await MinimalClient.open(HOST, port, APP_ID)

        async def publish() -> None:
            mc.publish(FANOUT_CHANNEL, PAYLOAD)

        async def publish_last() -> Any:
            return await mc.publish_acked(FANOUT_CHANNEL, PAYLOAD)

        close = mc.close
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


