"""The reference server: a minimal ``asyncio.Protocol`` server speaking the
bridge's framing (4-byte big-endian length + JSON body), the yardstick our
server's figures are divided by.

It does only what the benchmark's workloads need, the cheapest way asyncio
allows: the version-2 handshake, ``ping``, requests answered by echoing the
payload, ``subscribe`` (exact channels) with its ack, ``publish``
forwarded as the same bytes to every subscriber, and responders (``serve``,
exact channels, the last to register): a request for a served channel is
forwarded as the same bytes, its answer relayed by ``reply_to`` to whoever
sent a request with that id last (the floor of a relay: no per-requester
ids, deadlines or limits). Everything it writes in
answer to one read batch goes out in one ``write`` per connection
(coalesced), with TCP_NODELAY. No validation, limits, timeouts, patterns
or heartbeat sweep: it is a floor, not a product.

    python bench/_minimal_server.py [--host H] [--port P] [--loop asyncio|uvloop]

Prints ``ipc_server listening on HOST:PORT`` first, like ``python -m
ipc_server``; stops on SIGINT/SIGTERM or when its stdin reaches EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import time
from typing import Any

from _common import loop_factory, on_stop  # first: it also puts the checkout on sys.path

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads
_HEADER = 4


class Hub:
    """Subscriptions shared by every connection: channel -> connections."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[Conn]] = {}
        self.responders: dict[str, Conn] = {}
        self.waiting: dict[str, Conn] = {}  # a forwarded request's message_id -> its requester
        self.ids = itertools.count(1)


class Conn(asyncio.Protocol):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # frames to write after this read batch
        self.channels: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        for channel in self.channels:
            subs = self.hub.subscribers.get(channel)
            if subs and self in subs:
                subs.remove(self)
        for channel in [c for c, r in self.hub.responders.items() if r is self]:
            del self.hub.responders[channel]
        self.transport = None

    def _reply(self, msg: dict[str, Any], payload: Any) -> None:
        body = _dumps(
            {
                "message_id": f"s{next(self.hub.ids)}",
                "app_id": msg["app_id"],
                "channel_id": msg["channel_id"],
                "message_type": "response",
                "payload": payload,
                "timestamp": time.time(),
                "reply_to": msg["message_id"],
            }
        ).encode()
        self.pending.append(len(body).to_bytes(_HEADER, "big") + body)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        touched: list[Conn] = [self]
        pos, end = 0, len(buf)
        while end - pos >= _HEADER:
            size = int.from_bytes(buf[pos : pos + _HEADER], "big")
            stop = pos + _HEADER + size
            if stop > end:
                break
            frame = bytes(buf[pos:stop])
            pos = stop
            msg = _loads(frame[_HEADER:])
            kind = msg["message_type"]
            if kind == "publish":
                for sub in self.hub.subscribers.get(msg["channel_id"], ()):
                    if not sub.pending:
                        touched.append(sub)
                    sub.pending.append(frame)  # forwarded unchanged
                if msg.get("ack"):
                    self._reply(msg, {"status": "published", "delivered": len(self.hub.subscribers.get(msg["channel_id"], ()))})
            elif kind == "request" and msg["channel_id"] in self.hub.responders:
                responder = self.hub.responders[msg["channel_id"]]
                self.hub.waiting[msg["message_id"]] = self
                if not responder.pending:
                    touched.append(responder)
                responder.pending.append(frame)  # forwarded unchanged
            elif kind == "response":
                requester = self.hub.waiting.pop(msg.get("reply_to"), None)
                if requester is not None:
                    if not requester.pending:
                        touched.append(requester)
                    requester.pending.append(frame)  # relayed unchanged
            elif kind == "request":
                payload = msg.get("payload")
                if msg["channel_id"] == "system" and isinstance(payload, dict):
                    action = payload.get("action")
                    if action == "connect":
                        payload = {
                            "status": "connected",
                            "connection_id": payload.get("connection_id") or f"c{next(self.hub.ids)}",
                            "protocol": 2,
                            "server": "minimal/1",
                            "heartbeat_interval_ms": 0,
                            "max_frame_size": 16 * 1024 * 1024,
                        }
                    elif action == "ping":
                        payload = {"status": "pong"}
                self._reply(msg, payload)
            elif kind in ("subscribe", "unsubscribe") and isinstance(msg.get("payload"), dict) and msg["payload"].get("serve"):
                if kind == "subscribe":
                    self.hub.responders[msg["channel_id"]] = self
                elif self.hub.responders.get(msg["channel_id"]) is self:
                    del self.hub.responders[msg["channel_id"]]
                self._reply(msg, {"status": "serving" if kind == "subscribe" else "unserved"})
            elif kind == "subscribe":
                channel = msg["channel_id"]
                if channel not in self.channels:
                    self.channels.add(channel)
                    self.hub.subscribers.setdefault(channel, []).append(self)
                self._reply(msg, {"status": "subscribed"})
            elif kind == "unsubscribe":
                channel = msg["channel_id"]
                if channel in self.channels:
                    self.channels.discard(channel)
                    self.hub.subscribers[channel].remove(self)
                self._reply(msg, {"status": "unsubscribed"})
            # notifications: nothing to do
        if pos:
            del buf[:pos]
        for conn in touched:  # one write per connection per read batch
            if conn.pending:
                if conn.transport is not None:
                    conn.transport.write(b"".join(conn.pending) if len(conn.pending) > 1 else conn.pending[0])
                conn.pending = []


async def serve(host: str, port: int) -> None:
    hub = Hub()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(hub), host, port)
    done = asyncio.Event()
    on_stop(loop, done.set)
    bound = server.sockets[0].getsockname()
    print(f"ipc_server listening on {bound[0]}:{bound[1]}", flush=True)
    await done.wait()
    server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="minimal asyncio.Protocol reference server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args()
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(args.host, args.port))
