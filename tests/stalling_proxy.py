"""A proxy in front of the real server that, on cue, stops reading what the
client sends and then half-closes towards it: the client's send buffer
stays full while the server's EOF arrives (tests of the client's EOF)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

__all__ = ["StallingProxy"]


class StallingProxy:
    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.stall, self.eof = asyncio.Event(), asyncio.Event()
        self._pumps: list[asyncio.Task[None]] = []
        self._proxy: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> StallingProxy:
        self._proxy = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._proxy.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pump in self._pumps:
            pump.cancel()
        assert self._proxy is not None
        self._proxy.close()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # A fixed receive buffer: the kernel's autotuning would otherwise take what the client sends.
        client_w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.server_port)

        async def up() -> None:  # client -> server until stalled, then never read again
            while not self.stall.is_set():
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(client_r.read(65536), 0.05)
                    if not data:
                        return
                    server_w.write(data)
            await asyncio.Event().wait()

        async def down() -> None:  # server -> client, then a FIN towards the client
            while not self.eof.is_set():
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(server_r.read(65536), 0.05)
                    if not data:
                        break
                    client_w.write(data)
            client_w.write_eof()
            await asyncio.Event().wait()

        self._pumps += [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
