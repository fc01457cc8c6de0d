"""The server's EOF ends the client's connection at once, even when the
client's send buffer is full: a close would wait to flush what a peer
that stopped reading never takes, and the loss would go unseen (the state
stayed ``connected``, every call waited its timeout). Real server, behind a
proxy that stops reading the client and then half-closes towards it;
interop-tests/test_js_server_eof.py has the Node client's mirror."""

from __future__ import annotations

import asyncio
import contextlib

from ipc_client import IPCClient
from ipc_server import IPCServer

from .conftest import WAIT_S, until
from .stalling_proxy import StallingProxy


async def test_the_servers_eof_ends_the_connection_though_the_send_buffer_is_full() -> None:
    async with IPCServer("127.0.0.1", 0) as server, StallingProxy(server.port) as proxy:
        client = IPCClient("app", "127.0.0.1", proxy.port, heartbeat_interval=None, reconnect=False)
        try:
            await client.connect()
            proxy.stall.set()
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
            proxy.eof.set()
            await until(lambda: client.state.value == "disconnected", WAIT_S)  # was connected for good
        finally:
            await client.disconnect()
