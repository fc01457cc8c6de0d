"""The server's EOF ends the client's connection at once, even when the
client's send buffer is full: a close would wait to flush what a peer
that stopped reading never takes, and the loss would go unseen (the state
stayed ``connected``, every call waited its timeout). Real server, behind a
proxy that stops reading the client and then half-closes towards it."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from ipc_client import IPCClient
from ipc_server import IPCServer

from .conftest import WAIT_S, until


async def test_the_servers_eof_ends_the_connection_though_the_send_buffer_is_full() -> None:
    stall, eof = asyncio.Event(), asyncio.Event()
    pumps: list[asyncio.Task[None]] = []

    async def link(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # A fixed receive buffer: the kernel's autotuning would otherwise take what the client sends.
        client_w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", server.port)

        async def up() -> None:  # client -> server, until stalled: then never read again
            while not stall.is_set():
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(client_r.read(65536), 0.05)
                    if not data:
                        return
                    server_w.write(data)
            await asyncio.Event().wait()

        async def down() -> None:  # server -> client, then a FIN towards the client
            while not eof.is_set():
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(server_r.read(65536), 0.05)
                    if not data:
                        break
                    client_w.write(data)
            client_w.write_eof()
            await asyncio.Event().wait()

        pumps.extend([asyncio.ensure_future(up()), asyncio.ensure_future(down())])

    async with IPCServer("127.0.0.1", 0) as server:
        proxy = await asyncio.start_server(link, "127.0.0.1", 0)
        client = IPCClient("app", "127.0.0.1", proxy.sockets[0].getsockname()[1], heartbeat_interval=None, reconnect=False)
        try:
            await client.connect()
            stall.set()
            conn = client._link.conn
            for _ in range(200):  # fill what the kernels take, then asyncio's buffer past its high-water mark
                if conn.writing_paused:
                    break
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.publish("fill", "x" * 1_000_000), 0.2)
            sizes = [-1]
            for _ in range(100):  # until the kernels take no more: what is left stays in asyncio's buffer
                sizes.append(conn.transport.get_write_buffer_size())
                if sizes[-5:] == [sizes[-1]] * 5:
                    break
                await asyncio.sleep(0.05)  # pacing a poll, not a wait for an outcome
            assert conn.writing_paused and sizes[-1] > 0
            eof.set()
            await until(lambda: client.state.value == "disconnected", WAIT_S)  # was connected for good
        finally:
            for pump in pumps:
                pump.cancel()
            await client.disconnect()
            proxy.close()
