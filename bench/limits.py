"""The server's limits under load (docs/protocol.md §12), against any checkout:

    python bench/limits.py fanout  [--tree DIR] [-- server flags...]
    python bench/limits.py hotpath [--tree DIR] [--runs 3] [-- server flags...]
    python bench/limits.py prefixes [--tree DIR] [--connections 20] [-- server flags...]

``fanout``: a 200,000-message burst fanned out to 4 hand-written asyncio
subscribers that decode every message (as an application does); prints
what each received and whether it was cut as a slow consumer. The issue's
measurement: with the old 8 MiB hard cut (``-- --max-outbound-buffer
8388608``) such subscribers lost part of the burst.

``hotpath``: the per-message cost of the paths the limits sit on: 200,000
publishes fanned out to 4 subscribers (publishes/s until every subscriber
has them all) and 50,000 request/response round trips through a responder
client, 64 in flight (round trips/s). Run it on two checkouts alternately
to compare.

``prefixes``: what a length prefix alone makes the server hold
(docs/security.md, "Sizing"): ``--connections`` sockets past their
handshake, then as many that never send one, each send the prefix of a
16 MiB frame and its first 3 bytes; prints the server's RSS before and
after each group, in MiB, as JSON.

The server is ``python -m ipc_server`` from ``--tree`` (default: this
checkout) in its own process; the clients are raw sockets in this one,
framing by hand, so every checkout is measured with the same client code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
APP = "bench"
_PREFIX = struct.Struct(">I")
PAYLOAD = json.dumps({"order_id": 48213, "customer": "ACME Corp", "items": [{"sku": "A-1", "qty": 2}], "total": 99.5}, separators=(",", ":"))


def _frame(obj_json: str) -> bytes:
    body = obj_json.encode()
    return _PREFIX.pack(len(body)) + body


def _msg(mtype: str, channel: str, mid: str, payload: str = "null", extra: str = "") -> bytes:
    return _frame(
        f'{{"message_id":"{mid}","app_id":"{APP}","channel_id":"{channel}","message_type":"{mtype}",'
        f'"payload":{payload},"timestamp":0,"reply_to":null{extra}}}'
    )


class Server:
    def __init__(self, tree: Path, flags: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ipc_server", "--host", HOST, "--port", "0", "--log-level", "ERROR", *flags],
            cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def cpu_s(self) -> float:
        """CPU time (user + system) the server used so far: steadier than wall
        time on a machine that does other work too."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Peer:
    """A raw connection: frames in, frames out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = b""

    @classmethod
    async def open(cls, port: int, name: str) -> Peer:
        peer = cls(*await asyncio.open_connection(HOST, port, limit=1 << 22))
        connect = f'{{"action":"connect","protocol":2,"client":"bench","connection_id":"{name}"}}'
        peer.writer.write(_msg("request", "system", "hello", connect))
        await peer.frames()
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
                out.append(buf[i + 4 : i + 4 + n])
                i += 4 + n
            self.buf = buf[i:]
        return out

    async def subscribe(self, channel: str, serve: bool = False) -> None:
        self.writer.write(_msg("subscribe", channel, "s", '{"serve":true}' if serve else "null"))
        await self.frames()


async def _publisher(port: int, total: int, batch: int = 1000) -> float:
    pub = await Peer.open(port, "publisher")
    started = time.perf_counter()
    for start in range(0, total, batch):
        pub.writer.write(b"".join(_msg("publish", "burst", f"p{i}", f'{{"i":{i},"order":{PAYLOAD}}}') for i in range(start, min(start + batch, total))))
        await pub.writer.drain()
    pub.writer.write(_msg("request", "system", "done", '{"action":"ping"}'))
    await pub.frames()  # every publish was fanned out before the pong
    pub.writer.close()
    return time.perf_counter() - started


async def _read(sub: Peer, name: str, total: int, decode: bool) -> dict[str, object]:
    """Read the burst: each message decoded as an application would (or only counted)."""
    got, cut = 0, None
    while got < total:
        bodies = await sub.frames()
        if not bodies:
            break
        for body in bodies:
            if decode:
                msg = json.loads(body)
                if msg.get("error"):
                    cut = msg["error"]["code"]
                    continue
                got += msg["payload"]["i"] >= 0  # read as an application would
            elif b'"error":{' in body:
                cut = "slow_consumer"
            else:
                got += 1
    sub.writer.close()
    return {"name": name, "received": got, "lost": total - got, "cut": cut, "done_at": time.perf_counter()}


async def fanout(port: int, total: int, subscribers: int, decode: bool) -> tuple[float, list[dict[str, object]]]:
    subs = []
    for n in range(subscribers):
        sub = await Peer.open(port, f"sub-{n}")
        await sub.subscribe("burst")  # acknowledged: registered before the burst
        subs.append(asyncio.ensure_future(_read(sub, f"sub-{n}", total, decode)))
    started = time.perf_counter()
    await _publisher(port, total)
    results = await asyncio.wait_for(asyncio.gather(*subs), 600)
    elapsed = max(float(r["done_at"]) for r in results) - started  # type: ignore[arg-type]
    return elapsed, results


async def round_trips(port: int, total: int, window: int = 64) -> float:
    responder = await Peer.open(port, "responder")
    await responder.subscribe("echo", serve=True)

    async def serve() -> None:
        while bodies := await responder.frames():
            out = []
            for body in bodies:
                req = json.loads(body)
                out.append(_frame(json.dumps({"message_id": "r", "app_id": APP, "channel_id": "echo", "message_type": "response",
                                              "payload": req["payload"], "timestamp": 0, "reply_to": req["message_id"]})))  # fmt: skip
            responder.writer.write(b"".join(out))

    task = asyncio.ensure_future(serve())
    req = await Peer.open(port, "requester")
    started = time.perf_counter()
    sent = answered = 0
    while answered < total:
        n = min(window - (sent - answered), total - sent)
        if n > 0:
            req.writer.write(b"".join(_msg("request", "echo", f"q{sent + k}", PAYLOAD, ',"timeout_ms":30000') for k in range(n)))
            sent += n
        answered += len(await req.frames())
    elapsed = time.perf_counter() - started
    task.cancel()
    return total / elapsed


_STATS_REQUEST = _msg("request", "system", "stats", '{"action":"stats"}')


async def _bytes_in(probe: Peer) -> int:
    """The server's ``bytes_in`` (every socket's), this request's own included."""
    probe.writer.write(_STATS_REQUEST)
    return int(json.loads((await probe.frames())[0])["payload"]["bytes_in"])


async def prefixes(server: Server, connections: int) -> dict[str, float]:
    """The server's RSS as open sockets, then sockets before their
    handshake, each send a 16 MiB prefix and 3 bytes of the frame; read
    once the server's ``bytes_in`` says it has read them all."""
    announce = _PREFIX.pack(16 * 1024 * 1024) + b'{"x'
    probe = await Peer.open(server.port, "probe")
    rss = {"before": round(server.rss_mib(), 1)}
    writers = []
    for group in ("open", "before_handshake"):
        group_writers = []
        for n in range(connections):
            if group == "open":
                group_writers.append((await Peer.open(server.port, f"prefix-{n}")).writer)
            else:
                group_writers.append((await asyncio.open_connection(HOST, server.port))[1])
        since, asked = await _bytes_in(probe), 0
        for writer in group_writers:
            writer.write(announce)
            await writer.drain()
        while (await _bytes_in(probe)) - since - (asked := asked + 1) * len(_STATS_REQUEST) < len(announce) * connections:
            await asyncio.sleep(0.01)
        rss[f"after_{connections}_{group}"] = round(server.rss_mib(), 1)
        writers += group_writers
    for writer in (*writers, probe.writer):
        writer.close()
    return rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=("fanout", "hotpath", "prefixes"))
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent, help="checkout whose server runs")
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--subscribers", type=int, default=4)
    p.add_argument("--round-trips", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--connections", type=int, default=20, help="prefixes: sockets in each group")
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.flags = flags  # for the server, after --
    for run in range(args.runs):
        server = Server(args.tree.resolve(), args.flags)
        try:
            if args.scenario == "prefixes":
                print(json.dumps({"run": run + 1, "rss_mib": asyncio.run(prefixes(server, args.connections))}))
            elif args.scenario == "fanout":
                elapsed, results = asyncio.run(fanout(server.port, args.messages, args.subscribers, decode=True))
                for r in results:
                    print(f"{r['name']}: received {r['received']:,} lost {r['lost']:,} cut={r['cut']}")
                print(f"run {run + 1}: {args.messages:,} x {args.subscribers} in {elapsed:.2f} s")
            else:
                cpu = server.cpu_s()
                elapsed, results = asyncio.run(fanout(server.port, args.messages, args.subscribers, decode=False))
                cpu_pub, cpu = server.cpu_s() - cpu, server.cpu_s()
                lost = sum(int(r["lost"]) for r in results)  # type: ignore[call-overload]
                rt = asyncio.run(round_trips(server.port, args.round_trips))
                cpu_rt = server.cpu_s() - cpu
                print(json.dumps({
                    "run": run + 1, "publishes_per_s": round(args.messages / elapsed), "lost": lost, "round_trips_per_s": round(rt),
                    "server_cpu_us_per_publish": round(cpu_pub / args.messages * 1e6, 2),
                    "server_cpu_us_per_round_trip": round(cpu_rt / args.round_trips * 1e6, 2),
                }))  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
