"""A client given one host name with several addresses, whose node dies
(docs/cluster.md §5, "a node dies: its own clients"): ``localhost`` resolving
to both 127.0.0.1 and ::1, node ``v4`` on 127.0.0.1:P and node ``v6`` on
[::1]:P (the same port), joined through a real nats-server. The node the
client is on is SIGKILLed; the client's next attempt resolves the name again
and tries each address, reaches the other node, and restores its
subscriptions and registrations there.

The machine must resolve ``localhost`` to both addresses (most do:
``::1 localhost`` in /etc/hosts). Where it does not, the tests skip, and the
last test runs them (and the Node client's twin in
interop-tests/test_js_cluster_failover.py) again in a child pytest with its
own view of /etc/hosts that adds ``::1 localhost``: a private mount
namespace (``unshare -m``), so the machine's file is never touched. Where
that is not allowed either, it skips and says why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ConnectionLost
from ipc_server import IPCServer

from .nats_support import ROOT, NatsServer, NodeProcess, nats, until  # noqa: F401 - the fixture

pytest.importorskip("nats")

WAIT_S = 10.0
NAME = "localhost"
ADDRESSES = {"v4": "127.0.0.1", "v6": "::1"}
IN_VIEW = "IPCB_TEST_HOSTS_VIEW"  # set in the child run that has its own /etc/hosts


def no_ipv6_loopback() -> str | None:
    """Why ::1 cannot be bound here, or None."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 loopback on this machine ({exc})"
    return None


def name_has_both_loopbacks() -> str | None:
    """Why the tests cannot run here, or None: ``localhost`` must resolve to
    127.0.0.1 and ::1, and ::1 must be bindable."""
    if reason := no_ipv6_loopback():
        return reason
    found = {info[4][0] for info in socket.getaddrinfo(NAME, None, type=socket.SOCK_STREAM)}
    if not set(ADDRESSES.values()) <= found:
        return f"{NAME!r} resolves to {sorted(found)} here, not to both 127.0.0.1 and ::1 (test_the_name_tests_in_a_private_view_of_etc_hosts runs it with '::1 {NAME}' added)"
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
def two_addresses() -> None:
    """Skips, saying why, unless ``localhost`` is 127.0.0.1 and ::1 here."""
    reason = name_has_both_loopbacks()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
async def dual_nodes(two_addresses: None, nats: NatsServer) -> AsyncIterator[DualNodes]:  # noqa: F811
    nodes = await DualNodes(nats.url).start()
    yield nodes
    await nodes.stop()


class BlackHole:
    """A listener on ``host`` whose accept queue is full: a further connect to
    it is never answered (the kernel drops its SYN), as when a node's host is gone."""

    def __init__(self, host: str) -> None:
        self.listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.listener.bind((host, 0))
        self.listener.listen(0)
        self.port = int(self.listener.getsockname()[1])
        self.queued: list[socket.socket] = []
        while len(self.queued) < 64:
            sock = socket.socket(self.listener.family)
            sock.setblocking(False)
            self.queued.append(sock)
            sock.connect_ex((host, self.port))
            if not select.select([], [sock], [], 0.5)[1]:  # a loopback handshake that did not complete: the queue is full
                return
        self.close()
        raise RuntimeError(f"the accept queue of {host}:{self.port} did not fill")

    def close(self) -> None:
        for sock in [*self.queued, self.listener]:
            sock.close()


@pytest.fixture
async def silent_first_address(two_addresses: None) -> AsyncIterator[int]:
    """A port P: the name's first address at P never answers, a server listens on its other address at P."""
    first = first_address()
    other = next(a for a in ADDRESSES.values() if a != first)
    for attempt in range(5):
        hole = BlackHole(first)
        server = IPCServer(other, hole.port)
        try:
            await server.start()
        except OSError:  # the port is taken on the other address
            hole.close()
            if attempt == 4:
                raise
            continue
        try:
            yield hole.port
        finally:
            await server.close()
            hole.close()
        return


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


async def test_a_client_of_a_name_with_two_addresses_connects_through_the_second_when_the_first_never_answers(
    silent_first_address: int,
) -> None:
    # the next address is tried after ADDRESS_ATTEMPT_DELAY_S, not after connect_timeout (when the attempt failed whole)
    async with connected(NAME, silent_first_address, connect_timeout=WAIT_S) as client:
        assert (await client.system("ping"))["status"] == "pong"


def private_view(hosts: Path) -> tuple[str, ...] | None:
    """The ``unshare`` command that gives a child its own mount of ``hosts`` on
    /etc/hosts (as root, or in a user namespace), or None where neither is allowed."""
    for unshare in (("unshare", "-m"), ("unshare", "-rm")):
        try:
            probe = subprocess.run(
                [*unshare, "sh", "-c", 'mount --bind "$0" /etc/hosts && getent ahosts "$1"', str(hosts), NAME],
                capture_output=True, text=True, timeout=WAIT_S,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0 and "::1" in probe.stdout:
            return unshare
    return None


async def test_the_name_tests_in_a_private_view_of_etc_hosts(tmp_path: Path) -> None:
    if os.environ.get(IN_VIEW):
        pytest.skip("this is the run in the private view")
    if reason := no_ipv6_loopback():
        pytest.skip(reason)
    if name_has_both_loopbacks() is None:
        pytest.skip(f"{NAME!r} resolves to both addresses here: the tests above ran as they are")
    hosts = tmp_path / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n::1 {NAME}\n")
    unshare = private_view(hosts)
    if unshare is None:
        pytest.skip(f"{NAME!r} resolves to 127.0.0.1 only here, and no private mount namespace (unshare -m) can add ::1")
    tests = [__file__, str(ROOT / "interop-tests" / "test_js_cluster_failover.py")]
    proc = await asyncio.create_subprocess_exec(
        *unshare, "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
        sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:randomly", "-p", "no:cacheprovider", "-k", "two_addresses", *tests,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT, env={**os.environ, IN_VIEW: "1"},
        start_new_session=True,
    )  # fmt: skip
    try:
        output = (await asyncio.wait_for(proc.communicate(), 20 * WAIT_S))[0].decode(errors="replace")
    finally:
        if proc.returncode is None:  # the child run and the nats-server and nodes it started
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert proc.returncode == 0, output[-6000:]
    assert "PASSED tests/test_cluster_dns_failover.py::test_a_client_of_a_name_with_two_addresses" in output, output[-6000:]
    assert "test_a_node_client_of_a_name_with_two_addresses" in output, output[-6000:]  # passed, or skipped without Node
