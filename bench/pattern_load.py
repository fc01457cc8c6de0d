"""Another app's request/response latency while one connection holds many
wildcard patterns (issue 16 §3; docs/protocol.md §5.3), against any checkout:

    python bench/pattern_load.py live   [--tree DIR] [--patterns 1000000] [--seconds 10] [--rate 500] [-- server flags...]
    python bench/pattern_load.py tables [--tree DIR] [--patterns 1000000]

``live``: the server is ``python -m ipc_server`` from ``--tree`` (default:
this checkout) in its own process, on 127.0.0.1, with the subscription
limits lifted when it has them. A victim app (a requester and a responder
on ``echo``, in this process) sends requests at a fixed rate, open loop (it
never waits for answers), so a stalled server shows in every request it
delays, not in one. A hog app (another process, one
connection) subscribes ``h<i>.*`` / ``h<i>.>`` for ``--patterns`` distinct
prefixes, then publishes with acknowledgements, one at a time, on channels
no one published on before (``h<j>.n<k>``: never in the server's cache),
then disconnects. Prints the victim's latency in each phase and the
server's memory per pattern (resident set size, the whole server).

``tables``: the routing tables alone, in a process of the checkout's code:
match() on an exact channel (cached, uncached), a channel no one subscribed
to, a channel a pattern matches, the responder table's find(), each per call
(best of 5 rounds), and the tables' memory per pattern (tracemalloc).

Raw sockets frame by hand, so every checkout is measured with the same
client code. Bounded in time: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
_PREFIX = struct.Struct(">I")
_WAIT_S = 600.0  # the longest any one phase may take before the run fails
PAYLOAD = '{"order_id":48213,"customer":"ACME Corp","total":99.5}'


def _msg(app: str, mtype: str, channel: str, mid: str, payload: str = "null", extra: str = "") -> bytes:
    body = (
        f'{{"message_id":"{mid}","app_id":"{app}","channel_id":"{channel}","message_type":"{mtype}",'
        f'"payload":{payload},"timestamp":0,"reply_to":null{extra}}}'
    ).encode()
    return _PREFIX.pack(len(body)) + body


def _response(app: str, channel: str, reply_to: str, payload: str) -> bytes:
    body = f'{{"message_id":"r","app_id":"{app}","channel_id":"{channel}","message_type":"response","payload":{payload},"timestamp":0,"reply_to":"{reply_to}"}}'.encode()
    return _PREFIX.pack(len(body)) + body


class Peer:
    """A raw version-2 connection: frames in (heartbeat pings answered), frames out."""

    def __init__(self, app: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.app, self.reader, self.writer = app, reader, writer
        self.buf = b""

    @classmethod
    async def open(cls, port: int, app: str, name: str) -> Peer:
        peer = cls(app, *await asyncio.open_connection(HOST, port, limit=1 << 22))
        connect = f'{{"action":"connect","protocol":2,"client":"bench","connection_id":"{name}"}}'
        peer.writer.write(_msg(app, "request", "system", "hello", connect))
        reply = await asyncio.wait_for(peer.frames(), 30)
        if not reply or b'"connected"' not in reply[0]:
            raise RuntimeError(f"handshake refused: {reply!r}")
        return peer

    async def frames(self) -> list[bytes]:
        """The frame bodies of the next read (at least one); [] at EOF."""
        out: list[bytes] = []
        while not out:
            data = await self.reader.read(1 << 20)
            if not data:
                return []
            buf = self.buf + data
            i = 0
            while len(buf) - i >= 4:
                (n,) = _PREFIX.unpack_from(buf, i)
                if len(buf) - i - 4 < n:
                    break
                body = buf[i + 4 : i + 4 + n]
                i += 4 + n
                if b'"action":"ping"' in body:  # §9: the server's heartbeat
                    self.writer.write(_response(self.app, "system", json.loads(body)["message_id"], '{"status":"pong"}'))
                else:
                    out.append(body)
            self.buf = buf[i:]
        return out


# -- the victim: requests at a fixed rate, open loop ----------------------------


class Victim:
    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.sent: list[float] = []  # per request number: when it was written
        self.latency: dict[int, float] = {}
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, port: int) -> None:
        responder = await Peer.open(port, "victim", "responder")
        responder.writer.write(_msg("victim", "subscribe", "echo", "s", '{"serve":true}'))
        await asyncio.wait_for(responder.frames(), 30)
        requester = await Peer.open(port, "victim", "requester")
        self.tasks = [asyncio.ensure_future(c) for c in (self._serve(responder), self._read(requester), self._send(requester))]

    async def _serve(self, peer: Peer) -> None:
        while bodies := await peer.frames():
            peer.writer.write(b"".join(_response("victim", "echo", json.loads(b)["message_id"], PAYLOAD) for b in bodies))

    async def _read(self, peer: Peer) -> None:
        while bodies := await peer.frames():
            now = time.perf_counter()
            for body in bodies:
                n = int(json.loads(body)["reply_to"][1:])
                self.latency[n] = now - self.sent[n]

    async def _send(self, peer: Peer) -> None:
        next_t = time.perf_counter()
        while self.running:
            now = time.perf_counter()
            while next_t <= now:  # late wake-ups are this process's, not the server's: count from the write
                n = len(self.sent)
                self.sent.append(now)
                peer.writer.write(_msg("victim", "request", "echo", f"q{n}", PAYLOAD, ',"timeout_ms":300000'))
                next_t += self.interval
            await asyncio.sleep(next_t - time.perf_counter())

    async def caught_up(self) -> None:
        """Wait (bounded) until every request sent so far is answered, so that
        the next phase starts with none of this one's requests in flight."""
        owed, deadline = len(self.sent), time.perf_counter() + _WAIT_S
        while time.perf_counter() < deadline and not all(n in self.latency for n in range(owed)):
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop sending; wait (bounded) for every answer still owed."""
        self.running = False
        deadline = time.perf_counter() + _WAIT_S
        while len(self.latency) < len(self.sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        for t in self.tasks:
            t.cancel()

    def summary(self, t0: float, t1: float) -> str:
        """Latency of the requests sent in [t0, t1)."""
        lat = sorted(self.latency.get(n, float("inf")) for n, sent in enumerate(self.sent) if t0 <= sent < t1)
        if not lat:
            return "no requests"

        def pct(q: float) -> str:
            return f"{lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3:.2f}"

        return f"{len(lat):6d} requests  p50 {pct(0.50)} ms  p99 {pct(0.99)} ms  max {lat[-1] * 1e3:.2f} ms"


# -- the hog: another process, driven line by line on stdin ------------------


async def _hog(port: int, patterns: int) -> None:
    loop = asyncio.get_running_loop()
    peer = await Peer.open(port, "hog", "hog")

    def say(line: str) -> None:
        print(line, flush=True)

    say("ready")

    while command := (await loop.run_in_executor(None, sys.stdin.readline)).split():
        if command[0] == "subscribe":  # pipelined, at most `window` acks owed
            started, sent, acked, errors, window = time.perf_counter(), 0, 0, 0, 20_000
            while acked < patterns:
                k = min(2000, patterns - sent, window - (sent - acked))
                if k > 0:
                    peer.writer.write(b"".join(_msg("hog", "subscribe", f"h{i}.*" if i % 2 else f"h{i}.>", f"s{i}") for i in range(sent, sent + k)))
                    sent += k
                    await peer.writer.drain()
                    continue
                bodies = await peer.frames()
                if not bodies:
                    raise RuntimeError("the server closed the hog's connection")
                acked += len(bodies)
                errors += sum(b'"error":{' in b for b in bodies)
            say(f"subscribed {time.perf_counter() - started:.1f} {errors}")
        elif command[0] == "publish":  # one at a time, acknowledged, at most `rate` a second
            seconds, rate = float(command[1]), float(command[2])
            started = time.perf_counter()
            k = 0
            while time.perf_counter() - started < seconds:
                mid = f"p{k}"
                channel = f"h{random.randrange(patterns)}.n{k}"
                peer.writer.write(_msg("hog", "publish", channel, mid, PAYLOAD, ',"ack":true'))
                while True:
                    bodies = await peer.frames()
                    if not bodies:
                        raise RuntimeError("the server closed the hog's connection")
                    if any(f'"reply_to":"{mid}"'.encode() in b for b in bodies):
                        break
                k += 1
                await asyncio.sleep(max(0.0, started + k / rate - time.perf_counter()))
            say(f"published {k} {time.perf_counter() - started:.1f}")
        elif command[0] == "close":
            peer.writer.close()
            say("closed")


# -- live: the server, the victim and the hog --------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(b"VmRSS:"))


def _start_server(tree: Path, flags: list[str]) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "ipc_server"]
    helptext = subprocess.run([*cmd, "--help"], cwd=tree, env=env, capture_output=True, text=True, timeout=60).stdout
    for flag in ("--max-subscriptions-per-connection", "--max-subscriptions", "--max-pattern-tokens-per-connection"):
        if flag in helptext and flag not in flags:  # lift the limits a checkout has
            flags = [*flags, flag, "none"]
    proc = subprocess.Popen(
        [*cmd, "--host", HOST, "--port", "0", "--log-level", "ERROR", *flags],
        cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(line.strip().rsplit(":", 1)[1])


async def live(tree: Path, flags: list[str], patterns: int, seconds: float, rate: float, publish_rate: float, idle: float) -> None:
    server, port = _start_server(tree, flags)
    hog = subprocess.Popen(
        [sys.executable, __file__, "_hog", "--port", str(port), "--patterns", str(patterns)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    loop = asyncio.get_running_loop()

    async def ask(command: str) -> list[str]:
        if command:
            hog.stdin.write(command + "\n")  # type: ignore[union-attr]
            hog.stdin.flush()  # type: ignore[union-attr]
        line = await asyncio.wait_for(loop.run_in_executor(None, hog.stdout.readline), _WAIT_S)  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the hog process ended during {command!r}")
        return line.split()

    victim = Victim(rate)
    phases: list[tuple[str, float, float]] = []
    try:
        await ask("")  # its "ready": connected
        await victim.start(port)
        await asyncio.sleep(0.5)  # connections settled
        await victim.caught_up()
        t0 = time.perf_counter()
        await asyncio.sleep(idle)
        phases.append(("idle (hog connected, no patterns)", t0, time.perf_counter()))
        rss_before = _rss_kib(server.pid)
        t0 = time.perf_counter()
        _, took, errors = await ask("subscribe")
        phases.append((f"hog subscribes {patterns:,} patterns ({took} s)", t0, time.perf_counter()))
        if int(errors):
            raise RuntimeError(f"{errors} subscriptions refused: raise the server's limits")
        rss_after = _rss_kib(server.pid)
        await victim.caught_up()
        t0 = time.perf_counter()
        _, published, took = await ask(f"publish {seconds} {publish_rate}")
        phases.append((f"hog publishes on new channels ({published} in {took} s)", t0, time.perf_counter()))
        await victim.caught_up()
        t0 = time.perf_counter()
        await ask("close")
        await asyncio.sleep(1.0)
        await victim.caught_up()
        phases.append(("hog disconnects: its patterns removed, until served again", t0, time.perf_counter()))
        await victim.stop()
    finally:
        hog.kill()
        hog.wait(10)
        server.terminate()
        server.wait(30)
    print(f"server: {tree}  patterns: {patterns:,}  victim: {rate:.0f} requests/s, open loop")
    for name, a, b in phases:
        print(f"  {name:<58} {victim.summary(a, b)}")
    print(f"  server memory per pattern (resident set size): {(rss_after - rss_before) * 1024 / patterns:.0f} bytes")


# -- tables: the pure tables of the checkout, in their own process -----------

_TABLES = r"""
import itertools, sys, time, tracemalloc
from ipc_server.topics import SubscriptionTable
from ipc_server.router import ResponderTable

def per_call(fn, channels, calls=10_000):
    it = itertools.cycle(channels)
    t0, tried = time.perf_counter(), 0
    while tried < 20 and time.perf_counter() - t0 < 0.1:  # a scan of every pattern: few calls
        fn(next(it))
        tried += 1
    calls = max(3, min(calls, int(0.2 * tried / (time.perf_counter() - t0))))
    best = float("inf")
    for _ in range(5):
        batch = [next(it) for _ in range(calls)]
        t0 = time.perf_counter()
        for c in batch:
            fn(c)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6

def tables(npat):
    subs, resp = SubscriptionTable(), ResponderTable()
    for i in range(npat):
        p = f"p{i}.*" if i % 2 else f"p{i}.>"
        subs.add(p, "hog")
        resp.add(p, "hog")
    exact = [f"e{i}.created" for i in range(20_000)]  # more than the 10,000 results cached
    for c in exact:
        subs.add(c, "app")
    resp.add("svc.add", "app")
    return subs, resp, exact

def row(npat):
    subs, resp, exact = tables(npat)
    fresh = [f"new.{i}.x" for i in range(100_000)]
    hits = [f"p{(k * 7919) % npat}.x{k}" for k in range(20_000)] if npat else ["none"]
    subs.match("e1.created")
    return [per_call(subs.match, ["e1.created"]), per_call(subs.match, exact), per_call(subs.match, fresh),
            per_call(subs.match, hits), per_call(resp.find, ["svc.add"]), per_call(resp.find, hits), per_call(resp.find, ["other.x"])]

def memory(npat):
    pats = [f"p{i}.*" if i % 2 else f"p{i}.>" for i in range(npat)]  # the strings exist before: the message's
    out = []
    for cls in (SubscriptionTable, ResponderTable):
        tracemalloc.start()
        table, base = cls(), tracemalloc.get_traced_memory()[0]
        for p in pats:
            table.add(p, "hog")
        used = tracemalloc.get_traced_memory()[0] - base
        for p in pats:
            table.remove(p, "hog")
        left = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        out.append((cls.__name__, used / npat, left / npat))
        del table
    return out

sizes = [int(x) for x in sys.argv[1].split(",")]
heads = ["exact cached", "exact uncached", "unsubscribed", "pattern uncached", "find exact", "find pattern", "find miss"]
print("per call, µs, best of 5 rounds:")
print(f"{'patterns':>10} " + " ".join(f"{h:>16}" for h in heads))
for npat in sizes:
    print(f"{npat:>10,} " + " ".join(f"{v:16.2f}" for v in row(npat)), flush=True)
for name, used, left in memory(max(sizes)):
    print(f"{name}: {used:.0f} bytes per pattern with {max(sizes):,} patterns (tracemalloc), {left:.1f} left after removing them all")
"""


def tables(tree: Path, patterns: int) -> None:
    sizes = sorted({n for n in (0, 1000, 100_000) if n < patterns} | {patterns})
    env = {**os.environ, "PYTHONPATH": str(tree)}
    print(f"tables of: {tree}")
    subprocess.run([sys.executable, "-c", _TABLES, ",".join(map(str, sizes))], cwd=tree, env=env, check=True, timeout=3600)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=("live", "tables", "_hog"))
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent, help="checkout whose server runs")
    p.add_argument("--patterns", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=10.0, help="how long the hog publishes")
    p.add_argument("--rate", type=float, default=500.0, help="the victim's requests a second")
    p.add_argument("--publish-rate", type=float, default=1000.0, help="the hog's publishes a second, at most")
    p.add_argument("--idle", type=float, default=3.0, help="seconds measured before the hog subscribes")
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("flags", nargs="*", help="server flags, after --")
    args = p.parse_args()
    if args.scenario == "_hog":
        asyncio.run(_hog(args.port, args.patterns))
    elif args.scenario == "tables":
        tables(args.tree.resolve(), args.patterns)
    else:
        asyncio.run(live(args.tree.resolve(), args.flags, args.patterns, args.seconds, args.rate, args.publish_rate, args.idle))


if __name__ == "__main__":
    main()
