"""Client processes of the benchmark.

``responder PORT``
    one ``IPCClient`` serving ``echo`` (requests then take two hops through
    the server: requester -> server -> responder -> server -> requester).

``subscribers PORT N COUNTERS``
    N ``IPCClient`` connections subscribed to the fan-out channel. Each
    counts what it receives into slot i of the file COUNTERS (mapped in
    memory, little-endian uint64), so the publisher sees progress without
    any extra traffic through the server.

Prints ``ready`` once registered/subscribed (or ``error ...`` if that
failed); stops on SIGTERM/SIGINT or when stdin reaches EOF (the benchmark
exited), so it never outlives the run.
"""

from __future__ import annotations

import argparse
import asyncio
import mmap
import os
import struct
import sys

# _common first: it puts the checkout on sys.path.
from _common import APP_ID, ECHO_CHANNEL, FANOUT_CHANNEL, HOST, on_stop

from ipc_client import IPCClient


def _stop_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    on_stop(loop, done.set)
    return done


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


async def subscribers(port: int, n: int, counters_path: str) -> None:
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
    s = sub.add_parser("subscribers")
    s.add_argument("port", type=int)
    s.add_argument("n", type=int)
    s.add_argument("counters")
    args = p.parse_args()
    try:
        if args.mode == "responder":
            asyncio.run(responder(args.port))
        else:
            asyncio.run(subscribers(args.port, args.n, args.counters))
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
