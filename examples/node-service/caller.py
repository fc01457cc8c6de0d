"""Python calling the Node service of service.js: two successful calls, then
an error thrown in Node arriving here as a typed `HandlerError` carrying the
Node error's name in `.remote_type`.

Run, from the repository root, each in its own terminal:

    .venv/bin/python -m ipc_server
    node examples/node-service/service.js
    .venv/bin/python examples/node-service/caller.py

IPC_HOST / IPC_PORT select the server (default 127.0.0.1:8888).
"""

from __future__ import annotations

import asyncio
import os

from ipc_client import HandlerError, IPCClient, NoResponders, NotConnected

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))


async def main() -> None:
    async with IPCClient("inventory-demo", HOST, PORT, request_timeout=5) as client:
        try:
            print("lookup ->", await client.request("inventory.lookup", {"sku": "A-1"}))
        except NoResponders:
            raise SystemExit("nobody serves inventory.lookup: is examples/node-service/service.js running?") from None
        print("reserve ->", await client.request("inventory.reserve", {"sku": "A-1", "qty": 2}))

        for payload in ({"sku": "A-1", "qty": 100}, {"sku": "Z-9", "qty": 1}):
            try:
                await client.request("inventory.reserve", payload)
            except HandlerError as e:
                print(f"HandlerError code={e.code} remote_type={e.remote_type} message={e.message!r}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except NotConnected as e:
        raise SystemExit(f"{e}: start the server first (.venv/bin/python -m ipc_server)") from None
