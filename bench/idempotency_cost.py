"""What idempotency keys cost the server (docs/protocol.md §6.6), against any checkout:

    python bench/idempotency_cost.py [--tree DIR] [--round-trips 30000] [--runs 3] [-- server flags...]

Server CPU per request/response round trip through a responder (raw
sockets, 64 in flight, as ``bench/limits.py hotpath``) for four kinds of
request: no headers (the hot path), headers without a key (a
``traceparent``: the server looks for a key and finds none), a new key on
every request (each runs once and its answer is kept), and one key on
every request after the first (each answered from the window: the
responder never sees it). Run it with ``--tree`` on the checkout before
a change to compare the first two rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from limits import APP, PAYLOAD, Peer, Server, _frame, _msg  # noqa: E402

KINDS = ("no headers", "headers, no key", "a new key each", "one key, stored")


def _extra(kind: str, i: int) -> str:
    if kind == "no headers":
        return ',"timeout_ms":30000'
    if kind == "headers, no key":
        return f',"headers":{{"traceparent":"00-{i:032x}-{i:016x}-01"}},"timeout_ms":30000'
    key = f"k{i}" if kind == "a new key each" else "k"
    return f',"headers":{{"idempotency-key":"{key}"}},"timeout_ms":30000'


async def round_trips(port: int, total: int, kind: str, window: int = 64) -> tuple[float, int]:
    """Round trips per second, and how many the responder answered."""
    responder = await Peer.open(port, "responder")
    await responder.subscribe("echo", serve=True)
    served = 0

    async def serve() -> None:
        nonlocal served
        while bodies := await responder.frames():
            out = []
            for body in bodies:
                req = json.loads(body)
                out.append(_frame(json.dumps({"message_id": "r", "app_id": APP, "channel_id": "echo", "message_type": "response",
                                              "payload": req["payload"], "timestamp": 0, "reply_to": req["message_id"]})))  # fmt: skip
            served += len(bodies)
            responder.writer.write(b"".join(out))

    task = asyncio.ensure_future(serve())
    req = await Peer.open(port, "requester")
    if kind == "one key, stored":  # the first one runs and is kept
        req.writer.write(_msg("request", "echo", "warm", PAYLOAD, _extra(kind, 0)))
        await req.frames()
    started = time.perf_counter()
    sent = answered = 0
    while answered < total:
        n = min(window - (sent - answered), total - sent)
        if n > 0:
            req.writer.write(b"".join(_msg("request", "echo", f"q{sent + k}", PAYLOAD, _extra(kind, sent + k)) for k in range(n)))
            sent += n
        answered += len(await req.frames())
    elapsed = time.perf_counter() - started
    task.cancel()
    return total / elapsed, served


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent, help="checkout whose server runs")
    p.add_argument("--round-trips", type=int, default=30_000)
    p.add_argument("--runs", type=int, default=3)
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    cpu_us: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(args.runs):
        for kind in KINDS:  # alternating, so every kind sees the same machine
            server = Server(args.tree.resolve(), flags)
            try:
                before = server.cpu_s()
                rate, served = asyncio.run(round_trips(server.port, args.round_trips, kind))
                cpu_us[kind].append((server.cpu_s() - before) / args.round_trips * 1e6)
                print(json.dumps({"kind": kind, "round_trips_per_s": round(rate), "responder_served": served}), file=sys.stderr)
            finally:
                server.stop()
    print("| request | server CPU per round trip (median of runs) |\n|---|---|")
    for kind in KINDS:
        print(f"| {kind} | {statistics.median(cpu_us[kind]):.1f} us |")


if __name__ == "__main__":
    main()
