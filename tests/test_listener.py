"""``port=0`` on a host that resolves to several addresses (``localhost``:
``::1`` and ``127.0.0.1`` on most systems): every address listens on the
one port the server reports (README "The server": "0 picks a free port").
The name's resolution is made up here (this machine's /etc/hosts may list
one address), the sockets and clients are real."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_client.balancer import parse_server
from ipc_server import IPCServer, listener

from .conftest import WAIT_S

NAME = "dual.ipc-bridge.test"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


@pytest.fixture(autouse=True)
def dual_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """NAME resolves to ::1, then 127.0.0.1, as localhost does on most systems."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        if host != NAME:
            return real(host, port, family, type, proto, flags)
        both = ((socket.AF_INET6, ("::1", int(port or 0), 0, 0)), (socket.AF_INET, ("127.0.0.1", int(port or 0))))
        return [(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address) for fam, address in both if family in (0, fam)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


async def _reachable(server: IPCServer) -> None:
    """Both addresses, on the port the server reports."""
    assert {s.getsockname()[1] for s in server._listener.sockets} == {server.port}  # type: ignore[union-attr]
    assert sorted(s.getsockname()[0] for s in server._listener.sockets) == ["127.0.0.1", "::1"]  # type: ignore[union-attr]
    for host in ("::1", "127.0.0.1"):
        client = IPCClient("app", host, server.port, reconnect=False, connect_timeout=WAIT_S)
        await client.connect()
        await client.disconnect()


async def test_port_0_binds_every_address_of_the_host_on_one_port() -> None:
    """Each address had a free port of its own: a client of ::1 on the reported port found nothing."""
    async with IPCServer(NAME, 0) as server:
        await _reachable(server)


async def test_a_port_taken_on_another_address_is_given_up_for_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        chosen: list[int] = []

        def free_port(family: int, address: tuple[Any, ...]) -> int:  # the first port picked is the busy one
            chosen.append(busy if not chosen else real(family, address))
            return chosen[-1]

        real = listener.free_port
        monkeypatch.setattr(listener, "free_port", free_port)
        async with IPCServer(NAME, 0) as server:
            assert server.port != busy and len(chosen) == 2
            await _reachable(server)


async def test_the_metrics_port_0_is_one_port_for_every_address_too() -> None:
    async with IPCServer("127.0.0.1", 0, metrics_port=0, metrics_host=NAME) as server:
        assert server.metrics is not None
        port = server.metrics.port
        sockets = server.metrics.endpoint._server.sockets  # type: ignore[union-attr]
        assert {s.getsockname()[1] for s in sockets} == {port} and len(sockets) == 2
        for host in ("::1", "127.0.0.1"):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT_S)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.readline(), WAIT_S)).startswith(b"HTTP/1.1 200")
            writer.close()
            await writer.wait_closed()


async def test_the_first_line_brackets_an_ipv6_host(spawn: Any) -> None:
    """``[::1]:PORT``, as the logs, the metrics line and ``connections`` write it, and as clients parse it."""
    server = await spawn("-m", "ipc_server", "--host", "::1", "--port", "0")
    assert server.first_line == f"ipc_server listening on [::1]:{server.port}"
    address = parse_server(server.first_line.rpartition(" ")[2])
    async with IPCClient("listener", address.host, address.port, reconnect=False) as client:
        assert await asyncio.wait_for(client.request("system", {"action": "ping"}), WAIT_S) == {"status": "pong"}
