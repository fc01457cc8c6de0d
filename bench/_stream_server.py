"""The server of ``bench/streams_in_process.py``: an ``IPCServer`` whose
in-process handler ``bench.local`` streams ``payload`` 100-byte items from
an ``async def`` generator that never awaits (the common case: items that
are at hand), run from the checkout given by ``--root``, so that two
checkouts can be compared.

Prints ``ipc_server listening on HOST:PORT`` first, like ``python -m
ipc_server``; stops when its stdin reaches EOF (the benchmark exited).
"""

from __future__ import annotations

import argparse
import asyncio
import sys


async def main(root: str) -> None:
    sys.path.insert(0, root)  # this checkout's server, before any other on the path
    from ipc_server import IPCServer

    item = "x" * 100
    server = IPCServer("127.0.0.1", 0)

    async def local(msg):  # type: ignore[no-untyped-def]
        for _ in range(msg.payload):
            yield item

    server.add_handler("bench.local", local)
    await server.start()
    print(f"ipc_server listening on {server.host}:{server.port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # EOF: the benchmark is gone
    await server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="the checkout whose ipc_server runs")
    asyncio.run(main(p.parse_args().root))
