"""A fault-injection TCP proxy for tests: it sits between a client and a real
server on 127.0.0.1 and breaks the path on command.

Faults: cut every connection, black-hole (stop forwarding without closing,
as a dead host or a pulled cable looks to TCP), added latency, closing a
connection in the middle of a frame, closing the next connection right
after the server's Nth answer on it (or sending it a frame that is not
JSON there, in the same write), refusing new connections (server
down), and pointing new connections at another upstream.

Usage::

    proxy = await FaultProxy("127.0.0.1", server.port).start()
    client = IPCClient("app", "127.0.0.1", proxy.port)
    proxy.blackhole(True)
    ...
    await proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

__all__ = ["FaultProxy"]

_CHUNK = 65536


class _Link:
    """One proxied connection: a client side and an upstream side."""

    def __init__(self, proxy: FaultProxy, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client_r = client_r
        self.client_w = client_w
        self.upstream_w: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.close_after_answers, proxy._close_after_answers = proxy._close_after_answers, 0
        self.garble, proxy._garble = proxy._garble, False
        self._from_server = b""

    async def run(self, host: str, port: int) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(host, port)
        except OSError:
            self.abort()
            return
        self.upstream_w = up_w
        self.tasks = [
            asyncio.ensure_future(self._pump(self.client_r, up_w, upstream=True)),
            asyncio.ensure_future(self._pump(up_r, self.client_w, upstream=False)),
        ]
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        self.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        proxy = self.proxy
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await proxy._flowing.wait()  # a black hole holds the bytes forever
                if proxy.latency_s > 0:
                    await asyncio.sleep(proxy.latency_s)
                if not upstream and self.close_after_answers:
                    if self._last_answer(data, writer):
                        return
                    await writer.drain()
                    continue
                if not upstream and proxy._cut_mid_frame:
                    proxy._cut_mid_frame = False
                    writer.write(data[: max(1, len(data) // 2)] if len(data) > 1 else data)
                    await writer.drain()
                    proxy.mid_frame_cuts += 1
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    def _last_answer(self, data: bytes, writer: asyncio.StreamWriter) -> bool:
        """Forwards whole frames; after the awaited answer, closes (the frame and the FIN in one step)."""
        self._from_server += data
        while len(self._from_server) >= 4:
            end = 4 + int.from_bytes(self._from_server[:4], "big")
            if len(self._from_server) < end:
                return False
            frame, self._from_server = self._from_server[:end], self._from_server[end:]
            writer.write(frame)
            if frame[4:5] == b"{" and json.loads(frame[4:]).get("message_type") == "response":
                self.close_after_answers -= 1
                if self.close_after_answers == 0:
                    if self.garble:  # read with the answer: the client aborts after waking its caller
                        writer.write(b"\x00\x00\x00\x01x")
                        return False
                    writer.close()
                    return True
        return False

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        for w in (self.client_w, self.upstream_w):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self.proxy._links.discard(self)


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self.latency_s = 0.0
        self.accepted = 0
        self.mid_frame_cuts = 0
        self._refusing = False
        self._cut_mid_frame = False
        self._close_after_answers = 0
        self._garble = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        link = _Link(self, reader, writer)
        self._links.add(link)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await link.run(*self.upstream)
        finally:
            if task is not None:
                self._tasks.discard(task)

    # -- faults ------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        return len(self._links)

    def cut(self) -> None:
        """Close every current connection, both sides, at once (RST)."""
        for link in list(self._links):
            link.abort()

    def blackhole(self, on: bool = True) -> None:
        """Stop (or resume) forwarding in both directions without closing anything."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk, in both directions, by ``seconds``."""
        self.latency_s = max(0.0, seconds)

    def close_mid_frame(self) -> None:
        """Forward only the first half of the next server-to-client chunk, then close."""
        self._cut_mid_frame = True

    def close_after_answers(self, count: int) -> None:
        """The next connection closes right after the server's ``count``-th
        response on it (1: the handshake's reply), sent in the same step."""
        self._close_after_answers = count

    def garble_after_answers(self, count: int) -> None:
        """As :meth:`close_after_answers`, but a frame that is not JSON
        follows that response in the same write instead of the FIN."""
        self._close_after_answers = count
        self._garble = True

    def refuse(self, on: bool = True) -> None:
        """Close new connections as soon as they are accepted (the server looks down)."""
        self._refusing = on

    def retarget(self, host: str, port: int) -> None:
        """Send new connections to another upstream; current ones stay."""
        self.upstream = (host, port)

    async def close(self) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
