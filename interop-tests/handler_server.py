"""The real server with in-process handlers, for the Node -> Python tests.

Runs ``ipc_server.IPCServer`` (the same class ``python -m ipc_server`` runs)
with a few handlers registered, and prints the same first stdout line as the
CLI, ``ipc_server listening on HOST:PORT``, so the fixtures treat both alike.
Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
from typing import Any

from ipc_protocol import Message
from ipc_server import IPCServer
from ipc_server.logs import peer_text


def register(server: IPCServer) -> None:
    @server.handler("py.echo")
    async def echo(msg: Message) -> Any:
        return msg.payload

    @server.handler("py.add")
    async def add(msg: Message) -> Any:
        return msg.payload["a"] + msg.payload["b"]

    @server.handler("py.fail")
    async def fail(msg: Message) -> Any:
        raise ValueError(msg.payload if isinstance(msg.payload, str) else "bad value")

    @server.handler("py.key_error")
    def key_error(msg: Message) -> Any:  # a sync handler: runs in a worker thread
        return {}["missing"]

    @server.handler("py.slow")
    async def slow(msg: Message) -> Any:
        await asyncio.sleep(float(msg.payload))
        return "done"

    @server.handler("py.meta")
    async def meta(msg: Message) -> Any:
        return {"channel": msg.channel_id, "timeout_ms": msg.timeout_ms, "headers": msg.headers, "by": "python"}

    @server.handler("py.digest")
    async def digest(msg: Message) -> Any:
        text = json.dumps(msg.payload, ensure_ascii=False, separators=(",", ":"))
        return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "length": len(msg.payload) if isinstance(msg.payload, str) else None}

    @server.handler("py.pattern.*")
    async def pattern(msg: Message) -> Any:
        return msg.channel_id

    # Streams and cancellation (docs/protocol.md §15).
    @server.handler("py.count")
    async def count(msg: Message) -> Any:
        for i in range(msg.payload):
            yield i

    @server.handler("py.sync_count")
    def sync_count(msg: Message) -> Any:  # a sync generator: next() in a worker thread
        yield from range(msg.payload)

    @server.handler("py.stream_fail")
    async def stream_fail(msg: Message) -> Any:
        yield "before"
        raise LookupError("mid-stream")

    cancelled: list[str] = []

    @server.handler("py.cancellable")
    async def cancellable(msg: Message) -> Any:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(msg.message_id)
            raise

    @server.handler("py.cancelled")
    async def cancelled_count(msg: Message) -> Any:
        return len(cancelled)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--heartbeat-interval", type=float, default=None)
    p.add_argument("--max-frame-size", type=int, default=None)
    args = p.parse_args()
    overrides: dict[str, Any] = {"shutdown_grace_s": 0.5}
    if args.heartbeat_interval is not None:
        overrides["heartbeat_interval_s"] = args.heartbeat_interval
    if args.max_frame_size is not None:
        overrides["max_frame_size"] = args.max_frame_size
    async with IPCServer(args.host, args.port, **overrides) as server:
        register(server)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.close()))
        print(f"ipc_server listening on {peer_text((server.host, server.port))}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
