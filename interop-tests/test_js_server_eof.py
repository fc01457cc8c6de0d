"""The Node client: the server's EOF ends the connection at once, even with
its send buffer full (a peer that stopped reading, then closed its side):
an end() would wait to flush what is never taken, the state staying
``connected``. The mirror of tests/test_client_server_eof.py."""

from __future__ import annotations

import asyncio
import json

from ipc_server import IPCServer
from tests.stalling_proxy import StallingProxy

from conftest import NODE_DIR, ROOT, WAIT_S


async def test_the_servers_eof_ends_a_node_clients_connection_though_its_send_buffer_is_full(node: str) -> None:
    async with IPCServer("127.0.0.1", 0) as server, StallingProxy(server.port) as proxy:
        proc = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / "server_eof.js"), str(proxy.port), cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None

        async def event() -> dict[str, object]:
            line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S * 2)  # type: ignore[union-attr]
            return json.loads(line)  # type: ignore[no-any-return]

        try:
            assert (await event())["event"] == "connected"
            proxy.stall.set()
            proc.stdin.write(b"stalled\n")
            filled = await event()
            assert filled["event"] == "filled" and filled["buffered"] > 0  # type: ignore[operator]
            proxy.eof.set()
            proc.stdin.write(b"eof\n")
            assert await event() == {"event": "state", "state": "disconnected"}  # was 'connected' for good
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
