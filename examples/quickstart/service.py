"""Quickstart, the Python side: a service with two handlers that also
publishes a tick every half second.

    greet.hello  {"name": "Ada"}     -> {"greeting": "Hello, Ada!"}   (async handler)
    math.add     {"a": 1, "b": 2}    -> 3                              (sync handler, runs in a thread)
    ticks.<n>    {"n": n, "time": t} published once per TICK_INTERVAL_S

Run, from the repository root, each in its own terminal:

    .venv/bin/python -m ipc_server
    .venv/bin/python examples/quickstart/service.py
    node examples/quickstart/client.js

IPC_HOST / IPC_PORT select the server (default 127.0.0.1:8888);
TICK_INTERVAL_S the tick period (default 0.5). Ctrl-C stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from ipc_client import IPCClient

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
TICK_INTERVAL_S = float(os.environ.get("TICK_INTERVAL_S", "0.5"))


async def main() -> None:
    client = IPCClient("quickstart", HOST, PORT)

    @client.handler("greet.hello")
    async def hello(msg):
        return {"greeting": f"Hello, {msg.payload['name']}!"}

    def add(msg):
        return msg.payload["a"] + msg.payload["b"]

    client.serve("math.add", add)

    # connect() registers both handlers with the server before it returns.
    async with client:
        print(f"service ready on {HOST}:{PORT}: serving greet.hello, math.add; publishing ticks.<n>", flush=True)
        n = 0
        while True:
            n += 1
            await client.publish(f"ticks.{n}", {"n": n, "time": time.time()})
            await asyncio.sleep(TICK_INTERVAL_S)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
