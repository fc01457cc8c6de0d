"""One of several identical Python workers answering `work.square`. Start as
many as you like: the bridge server sends each request to one of them (the
least busy, round robin), so they share the load without knowing about each
other.

Run, from the repository root, each in its own terminal:

    .venv/bin/python -m ipc_server
    .venv/bin/python examples/python-workers/worker.py w1
    .venv/bin/python examples/python-workers/worker.py w2
    .venv/bin/python examples/python-workers/worker.py w3
    node examples/python-workers/api.js

While api.js runs, stop a worker:
- Ctrl-C drains it: it stops taking requests, finishes the ones it holds, exits;
- `kill -9` makes it vanish: the requests it held fail with `responder_lost`
  (they may have run, so nobody resends them); every other request goes to
  the remaining workers.

The argument names the worker (default worker-<pid>). IPC_HOST / IPC_PORT
select the server (default 127.0.0.1:8888); WORK_S is the time one request
takes (default 0.05).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from ipc_client import IPCClient

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
WORK_S = float(os.environ.get("WORK_S", "0.05"))
CHANNEL = "work.square"


async def main(name: str) -> None:
    client = IPCClient("workers-demo", HOST, PORT)
    in_flight = 0
    handled = 0
    idle = asyncio.Event()
    idle.set()

    @client.handler(CHANNEL)
    async def square(msg):
        nonlocal in_flight, handled
        in_flight += 1
        idle.clear()
        try:
            await asyncio.sleep(WORK_S)  # stands for real work
            n = msg.payload["n"]
            return {"worker": name, "n": n, "square": n * n}
        finally:
            in_flight -= 1
            handled += 1
            if in_flight == 0:
                idle.set()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with client:
        print(f"worker {name} ready, connection {client.connection_id}", flush=True)
        await stop.wait()
        # Drain: once the server has dropped this responder it routes new
        # requests to the other workers; the ones already here are finished.
        await client.unserve(CHANNEL)
        await idle.wait()
        print(f"worker {name} drained after {handled} requests", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else f"worker-{os.getpid()}"))
