"""The Python worker behind the upload server (upload_server.js): asked for
an upload's checksum, it pulls the upload's bytes from the Node side as a
stream of ~256 KiB chunks (docs/protocol.md §16.6), each one ``bytes``
that travelled as a raw binary attachment, and answers the SHA-256 and the
size. It holds one chunk at a time: the stream's window (8 chunks) bounds
what is in flight, so a 100 MiB upload costs it a few MiB.

    uploads.checksum  {"upload": id, "name": ...} -> {"name", "sha256", "size", "chunks"}

Run, from the repository root, each in its own terminal:

    .venv/bin/python -m ipc_server
    .venv/bin/python examples/binary-upload/checksum_worker.py
    node examples/binary-upload/upload_server.js

IPC_HOST / IPC_PORT select the bridge server (default 127.0.0.1:8888).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

from ipc_client import IPCClient

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
WINDOW = 8  # chunks in flight at most


async def main() -> None:
    client = IPCClient("uploads", HOST, PORT)

    @client.handler("uploads.checksum")
    async def checksum(msg):
        digest = hashlib.sha256()
        size = chunks = 0
        async for chunk in client.stream("uploads.chunks", {"upload": msg.payload["upload"]}, window=WINDOW):
            digest.update(chunk)
            size += len(chunk)
            chunks += 1
        return {"name": msg.payload.get("name"), "sha256": digest.hexdigest(), "size": size, "chunks": chunks}

    async with client:
        print(f"checksum worker ready on {HOST}:{PORT}: uploads.checksum", flush=True)
        await asyncio.Event().wait()  # serve until interrupted


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
