"""Client processes of the benchmark.

``responder PORT [--kind ours|nats]``
    one ``IPCClient`` serving ``echo`` (requests then take two hops through
    the server: requester -> server -> responder -> server -> requester);
    ``--kind nats``: a nats-py client subscribed to ``echo`` that answers
    each request, the same role against nats-server.

``subscribers PORT N COUNTERS [--kind ours|minimal|nats]``
    N ``IPCClient`` connections (or minimal clients, or nats-py connections) subscribed to the
    fan-out channel. Each counts what it receives into slot i of the file
    COUNTERS (mapped in memory, little-endian uint64), so the publisher sees
    progress without any extra traffic through the server.

The nats-py clients decode and encode the JSON payload in every role, as an
application exchanging objects over NATS would (our clients do the same).

Prints ``ready`` once registered/subscribed (or ``error ...`` if that
failed); stops on SIGTERM/SIGINT or when stdin reaches EOF (the benchmark
exited), so it never outlives the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import struct
import sys

# _common first: it puts the checkout on sys.path.
from _common import APP_ID, ECHO_CHANNEL, FANOUT_CHANNEL, HOST, on_stop
from _minimal_client import MinimalClient

from ipc_client import IPCClient


def _stop_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    on_stop(loop, done.set)
    return done


async def _nats(port: int):  # type: ignore[no-untyped-def]
    import nats  # the optional 'bench' extra

    return await nats.connect(f"nats://{HOST}:{port}", allow_reconnect=False, no_echo=True)


async def nats_responder(port: int) -> None:
    done = _stop_event()
    nc = await _nats(port)
    dumps, loads = json.dumps, json.loads

    async def echo(msg):  # type: ignore[no-untyped-def]
        await msg.respond(dumps(loads(msg.data), separators=(",", ":")).encode())

    await nc.subscribe(ECHO_CHANNEL, cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    await nc.close()


async def responder(port: int) -> None:
    done = _stop_event()
    client = IPCClient(APP_ID, HOST, port, reconnect=False)
    await client.connect()

    async def echo(msg):  # type: ignore[no-untyped-def]
        return msg.payload

    await client.serve(ECHO_CHANNEL, echo)
    print("ready", flush=True)
    await done.wait()
    await client.disconnect()


async def subscribers(port: int, n: int, counters_path: str, kind: str = "ours") -> None:
    done = _stop_event()
    fd = os.open(counters_path, os.O_RDWR)
    mm = mmap.mmap(fd, 8 * n)
    os.close(fd)
    pack = struct.pack_into
    clients: list[IPCClient] = []

    def make_handler(slot: int):  # type: ignore[no-untyped-def]
        count = 0
        offset = 8 * slot

        def on_message(msg) -> None:  # type: ignore[no-untyped-def]
            nonlocal count
            count += 1
            pack("<Q", mm, offset, count)

        return on_message

    if kind == "nats":
        loads = json.loads
        conns = []
        for i in range(n):
            on_message = make_handler(i)

            async def cb(msg, on_message=on_message):  # type: ignore[no-untyped-def]
                on_message(loads(msg.data))

            nc = await _nats(port)
            await nc.subscribe(FANOUT_CHANNEL, cb=cb)
            await nc.flush()
            conns.append(nc)
        print("ready", flush=True)
        await done.wait()
        for nc in conns:
            await nc.close()
        mm.close()
        return
    if kind == "minimal":
        minimal = []
        for i in range(n):
            mc = await MinimalClient.open(HOST, port, APP_ID)
            await mc.subscribe(FANOUT_CHANNEL, make_handler(i))
            minimal.append(mc)
        print("ready", flush=True)
        await done.wait()
        for mc in minimal:
            await mc.close()
        mm.close()
        return
    for i in range(n):
        client = IPCClient(APP_ID, HOST, port, reconnect=False)
        await client.connect()
        await client.subscribe(FANOUT_CHANNEL, make_handler(i))
        clients.append(client)
    print("ready", flush=True)
    await done.wait()
    for client in clients:
        await client.disconnect()
    mm.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("responder")
    r.add_argument("port", type=int)
    r.add_argument("--kind", choices=("ours", "nats"), default="ours")
    s = sub.add_parser("subscribers")
    s.add_argument("port", type=int)
    s.add_argument("n", type=int)
    s.add_argument("counters")
    s.add_argument("--kind", choices=("ours", "minimal", "nats"), default="ours")
    args = p.parse_args()
    try:
        if args.mode == "responder":
            asyncio.run(nats_responder(args.port) if args.kind == "nats" else responder(args.port))
        else:
            asyncio.run(subscribers(args.port, args.n, args.counters, args.kind))
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
