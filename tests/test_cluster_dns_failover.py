"""A client given one host name with several addresses, whose node dies
(docs/cluster.md §5, "a node dies: its own clients"): ``localhost`` resolving
to both 127.0.0.1 and ::1, node ``v4`` on 127.0.0.1:P and node ``v6`` on
[::1]:P (the same port), joined through a real nats-server. The node the
client is on is SIGKILLed; the client's next attempt resolves the name again
and tries each address, reaches the other node, and restores its
subscriptions and registrations there.

The machine must resolve ``localhost`` to both addresses (most do:
``::1 localhost`` in /etc/hosts); where it does not, the tests skip and say
so. To run them there without touching the machine's file, give them a
private one: ``unshare -m sh -c 'mount --bind my-hosts /etc/hosts && pytest ...'``.
The Node client's twin is interop-tests/test_js_cluster_failover.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost

from .nats_support import NatsServer, NodeProcess, nats, until  # noqa: F401 - the fixture

pytest.importorskip("nats")

WAIT_S = 10.0
NAME = "localhost"
ADDRESSES = {"v4": "127.0.0.1", "v6": "::1"}


def name_has_both_loopbacks() -> str | None:
    """Why the tests cannot run here, or None: ``localhost`` must resolve to
    127.0.0.1 and ::1, and ::1 must be bindable."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 loopback on this machine ({exc})"
    found = {info[4][0] for info in socket.getaddrinfo(NAME, None, type=socket.SOCK_STREAM)}
    if not set(ADDRESSES.values()) <= found:
        return f"{NAME!r} resolves to {sorted(found)} here, not to both 127.0.0.1 and ::1 (add '::1 {NAME}' to /etc/hosts)"
    return None


def first_address() -> str:
    """The address a client of the name tries first (the resolver's order)."""
    return str(socket.getaddrinfo(NAME, None, type=socket.SOCK_STREAM)[0][4][0])


def dual_stack_port() -> int:
    """A port free on both 127.0.0.1 and ::1 now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6) as v6, socket.socket() as v4:
            v6.bind(("::1", 0))
            port = int(v6.getsockname()[1])
            try:
                v4.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


class DualNodes:
    """Node ``v4`` on 127.0.0.1:P and node ``v6`` on [::1]:P, in their own processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = 0
        self.nodes: dict[str, NodeProcess] = {}

    async def start(self) -> DualNodes:
        for attempt in range(5):  # another process may take the port between the check and the bind
            self.port = dual_stack_port()
            try:
                for name, host in ADDRESSES.items():
                    self.nodes[name] = await self._node(name, host)
                return self
            except RuntimeError:
                await self.stop()
                if attempt == 4:
                    raise
        return self

    async def _node(self, name: str, host: str) -> NodeProcess:
        argv = [sys.executable, "-m", "ipc_server", "--host", host, "--port", str(self.port), "--log-level", "WARNING"]
        return await NodeProcess([*argv, "--cluster", self.url, "--node-name", name]).start()

    def other(self, name: str) -> str:
        return next(n for n in self.nodes if n != name)

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()
        self.nodes = {}


@pytest.fixture
async def dual_nodes(nats: NatsServer) -> AsyncIterator[DualNodes]:  # noqa: F811
    reason = name_has_both_loopbacks()
    if reason is not None:
        pytest.skip(reason)
    nodes = await DualNodes(nats.url).start()
    yield nodes
    await nodes.stop()


async def node_of(client: IPCClient) -> str:
    """The name of the node the client is connected to (its ``stats``)."""
    return str((await client.system("stats"))["cluster"]["node"])


@contextlib.asynccontextmanager
async def connected(host: str, port: int, **kwargs: Any) -> AsyncIterator[IPCClient]:
    client = IPCClient("app", host, port, **kwargs)
    await asyncio.wait_for(client.connect(), WAIT_S)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.disconnect(), WAIT_S)


async def test_a_client_of_a_name_with_two_addresses_moves_to_the_other_node_when_its_node_is_killed(dual_nodes: DualNodes) -> None:
    async with connected(NAME, dual_nodes.port, initial_delay=0.05, max_delay=0.2) as client:
        first = await node_of(client)
        assert ADDRESSES[first] == first_address()  # so the kill leaves the name's first address dead
        survivor = dual_nodes.other(first)
        async with connected(ADDRESSES[survivor], dual_nodes.port) as observer:
            got: list[Any] = []
            await client.subscribe("news.*", lambda msg: got.append(msg.payload))
            await client.serve("named.echo", lambda msg: {"by": "named", "payload": msg.payload})
            release, holding = asyncio.Event(), asyncio.Event()

            async def held(msg: Any) -> Any:
                holding.set()
                await release.wait()
                return msg.payload

            await observer.serve("observer.held", held)
            await observer.serve("observer.echo", lambda msg: msg.payload)
            # across the two nodes before the kill
            assert await observer.request("named.echo", 1) == {"by": "named", "payload": 1}
            await observer.publish("news.before", "before")
            await until(lambda: got == ["before"], "the publish before the kill")
            in_flight = asyncio.ensure_future(client.request("observer.held", "held", timeout=30))
            await asyncio.wait_for(holding.wait(), WAIT_S)
            reconnected = asyncio.Event()
            client.on("reconnected", lambda _info: reconnected.set())

            await dual_nodes.nodes[first].kill()
            with pytest.raises(ConnectionLost):  # it may have run: never resent without a key (docs/resilience.md §3)
                await asyncio.wait_for(in_flight, WAIT_S)
            await asyncio.wait_for(reconnected.wait(), WAIT_S)  # subscriptions and registrations restored first
            release.set()
            assert await node_of(client) == survivor
            # registrations are in effect on the survivor; requests through it succeed
            assert await observer.request("named.echo", 2) == {"by": "named", "payload": 2}
            assert await client.request("observer.echo", 3) == 3
            await observer.publish("news.after", "after")
            await until(lambda: got == ["before", "after"], "the publish after the kill")
