"""What TLS costs (docs/security.md §2): connect time and request/response
round trips per second, with TLS off and on, our Python client against our
server in its own process, on each server loop.

    python bench/tls_cost.py                  # both loops when uvloop is installed (about 1 min)
    python bench/tls_cost.py --quick          # one short round per side
    python bench/tls_cost.py --loop asyncio --json bench/results/tls.json

- **connect**: ``IPCClient.connect()`` to connected, one after another
  (TCP, the TLS handshake when on, the bridge handshake), then
  ``disconnect()``; median and p90 of each side's samples, and the CPU
  time the server and the client spent per connect (connect and
  disconnect), which a busy machine disturbs far less than the wall clock.
- **round trips/s**: 64 requests in flight on one connection, answered by
  the server's in-process ``echo`` handler (``bench.py``'s ``rr``
  workload), with the server's CPU per round trip.

TLS is server-only TLS 1.3 with a throwaway ECDSA certificate (trustme,
the test dependency); the figures with mutual TLS differ by the client's
certificate in the handshake only. The two sides are measured in
alternating rounds (plain, TLS, TLS, plain...) so both see the same
stretch of the machine's drift (bench/README.md, "Interleaved rounds").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import HOST, PAYLOAD, Children, cpu_ns, have_module, loop_factory, on_stop, self_cpu_ns  # first: puts the checkout on sys.path

from ipc_client import IPCClient

IN_FLIGHT = 64


# -- the server process ------------------------------------------------------------


async def serve(cert: str | None, key: str | None) -> None:
    from ipc_server import IPCServer

    server = IPCServer(HOST, 0, tls_cert=cert, tls_key=key)

    async def echo(msg: Any) -> Any:
        return msg.payload

    server.add_handler("echo", echo)
    await server.start()
    loop = asyncio.get_running_loop()
    on_stop(loop, lambda: loop.create_task(server.close(grace_s=1.0)))
    print(f"ipc_server listening on {server.host}:{server.port}", flush=True)
    await server.serve_forever()


# -- measurements ------------------------------------------------------------------


_contexts: dict[str, ssl.SSLContext] = {}


def client(port: int, ca: str | None) -> IPCClient:
    """A client; over TLS with one context per CA, as an application that
    reconnects keeps its client's (building one is not a connect's cost)."""
    if ca is None:
        return IPCClient("bench", HOST, port, reconnect=False)
    context = _contexts.get(ca) or _contexts.setdefault(ca, ssl.create_default_context(cafile=ca))
    return IPCClient("bench", "localhost", port, tls=context, reconnect=False)


async def connect_times(port: int, ca: str | None, count: int) -> list[float]:
    """Seconds from connect() to connected, ``count`` times one after another."""
    samples = []
    for _ in range(count):
        c = client(port, ca)
        started = time.perf_counter()
        await c.connect()
        samples.append(time.perf_counter() - started)
        await c.disconnect()
    return samples


async def round_trips(port: int, ca: str | None, server_pid: int, warmup_s: float, window_s: float) -> dict[str, float]:
    """Round trips/s with ``IN_FLIGHT`` requests in flight, and server CPU per round trip."""
    async with client(port, ca) as c:
        done = 0
        stop_at = 0.0

        async def requester() -> None:
            nonlocal done
            loop = asyncio.get_running_loop()
            while loop.time() < stop_at:
                await c.request("echo", PAYLOAD)
                done += 1

        loop = asyncio.get_running_loop()
        stop_at = loop.time() + warmup_s + window_s
        workers = [asyncio.ensure_future(requester()) for _ in range(IN_FLIGHT)]
        await asyncio.sleep(warmup_s)
        start_done, start_cpu, start_t = done, cpu_ns(server_pid), time.perf_counter()
        await asyncio.sleep(window_s)
        n, cpu, elapsed = done - start_done, cpu_ns(server_pid) - start_cpu, time.perf_counter() - start_t
        await asyncio.gather(*workers)
    return {"rate": n / elapsed, "server_cpu_us": cpu / max(n, 1) / 1000}


def measure_round(loop_name: str, tls: tuple[str, str, str] | None, args: argparse.Namespace) -> dict[str, Any]:
    """One round of one side: a fresh server, connects, then round trips."""
    with Children() as children:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", "--loop", loop_name]
        if tls is not None:
            argv += ["--cert", tls[0], "--key", tls[1]]
        server = children._start("server", argv)
        port = int(server.expect("ipc_server listening on ").rsplit(":", 1)[1])
        ca = tls[2] if tls is not None else None

        async def main() -> dict[str, Any]:
            await connect_times(port, ca, 10)  # warm-up
            server_cpu, client_cpu = cpu_ns(server.pid), self_cpu_ns()
            connects = await connect_times(port, ca, args.connects)
            cpu = {"server_cpu_ms_per_connect": (cpu_ns(server.pid) - server_cpu) / len(connects) / 1e6, "client_cpu_ms_per_connect": (self_cpu_ns() - client_cpu) / len(connects) / 1e6}
            rt = await round_trips(port, ca, server.pid, args.warmup, args.window)
            return {"connects": connects, **cpu, **rt}

        with asyncio.Runner() as runner:
            return runner.run(main())


def pki(directory: Path) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = [directory / "server.pem", directory / "server.key", directory / "ca.pem"]
    cert.cert_chain_pems[0].write_to_path(str(paths[0]))
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    loops = ["asyncio", "uvloop"] if args.loop == "auto" and have_module("uvloop") else ["asyncio" if args.loop == "auto" else args.loop]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tls = pki(Path(tmp))
        for loop_name in loops:
            sides: dict[str, list[dict[str, Any]]] = {"plain": [], "tls": []}
            order = ["plain", "tls", "tls", "plain"] * ((args.rounds + 1) // 2)
            for side in order[: 2 * args.rounds]:
                print(f"{loop_name} {side} round {len(sides[side]) + 1}", file=sys.stderr)
                sides[side].append(measure_round(loop_name, tls if side == "tls" else None, args))
            results[loop_name] = {
                side: {
                    "connect_ms_p50": 1000 * statistics.median([s for r in rounds for s in r["connects"]]),
                    "connect_ms_p90": 1000 * pct([s for r in rounds for s in r["connects"]], 0.9),
                    "server_cpu_ms_per_connect": statistics.median(r["server_cpu_ms_per_connect"] for r in rounds),
                    "client_cpu_ms_per_connect": statistics.median(r["client_cpu_ms_per_connect"] for r in rounds),
                    "round_trips_per_s": statistics.median(r["rate"] for r in rounds),
                    "server_cpu_us_per_rt": statistics.median(r["server_cpu_us"] for r in rounds),
                    "rounds": [round(r["rate"]) for r in rounds],
                }
                for side, rounds in sides.items()
            }
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| server loop | | connect p50 | connect p90 | CPU / connect: server, client | round trips/s | server CPU / round trip |",
        "|---|---|---|---|---|---|---|",
    ]
    for loop_name, sides in results.items():
        plain, tls = sides["plain"], sides["tls"]
        for name, side in (("plain", plain), ("TLS", tls)):
            lines.append(
                f"| {loop_name} | {name} | {side['connect_ms_p50']:.2f} ms | {side['connect_ms_p90']:.2f} ms"
                f" | {side['server_cpu_ms_per_connect']:.2f} ms, {side['client_cpu_ms_per_connect']:.2f} ms"
                f" | {side['round_trips_per_s']:,.0f} | {side['server_cpu_us_per_rt']:.1f} µs |"
            )
        lines.append(
            f"| {loop_name} | TLS / plain | {tls['connect_ms_p50'] / plain['connect_ms_p50']:.2f}× | {tls['connect_ms_p90'] / plain['connect_ms_p90']:.2f}×"
            f" | {tls['server_cpu_ms_per_connect'] / plain['server_cpu_ms_per_connect']:.2f}×, {tls['client_cpu_ms_per_connect'] / plain['client_cpu_ms_per_connect']:.2f}×"
            f" | {tls['round_trips_per_s'] / plain['round_trips_per_s']:.2f}× | {tls['server_cpu_us_per_rt'] / plain['server_cpu_us_per_rt']:.2f}× |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description="TLS cost: connect time and round trips/s, TLS off vs on")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="server loop(s); auto: both when uvloop is installed")
    p.add_argument("--quick", action="store_true", help="one short round per side")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cert", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            runner.run(serve(args.cert, args.key))
        return 0
    args.rounds, args.connects, args.warmup, args.window = (1, 100, 0.2, 0.6) if args.quick else (4, 300, 1.0, 1.5)
    results = run(args)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
