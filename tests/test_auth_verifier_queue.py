"""The token checks' queue under a flood (docs/security.md §1, §3.2): one
address's checks cannot delay another's by more than one check per turn
(round robin over networks, then over their addresses), an address past
its bound is refused at once, a check whose socket is gone never runs,
and one whose turn comes with less time left than a check takes is
refused busy, not run. Real server and connections, from 127.0.0.1, .2,
.3 and 127.0.1.x (all loopback on Linux); the check is held by the test
and let go one at a time, so the order is asserted, never a time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer
from ipc_server.users import hash_token, verify_token
from ipc_server.verifier import Verifier, VerifierBusy, address_of, network_of

from .conftest import RawPeer, frame, until

WAIT_S = 5.0
USERS = f'[users.alice]\ntoken_hash = "{hash_token("alice-token", log_n=4)}"\napps = ["shop"]\n'
FLOOD, OTHER = "127.0.0.2", "127.0.0.3"


class Gate:
    """The verifier's check, each held until the test lets one go: the
    tokens in the order their checks started."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._started: asyncio.Queue[str] = asyncio.Queue()
        self._go = threading.Semaphore(0)
        self._loop = asyncio.get_running_loop()

    def __call__(self, token: str, stored: str) -> bool:
        self._loop.call_soon_threadsafe(self._start, token)
        return self._go.acquire(timeout=4 * WAIT_S) and verify_token(token, stored)

    def _start(self, token: str) -> None:
        self.order.append(token)
        self._started.put_nowait(token)

    async def next(self) -> str:
        return await asyncio.wait_for(self._started.get(), WAIT_S)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._go.release()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start a server whose verifier has one worker, at most 4 checks per address, and the gate."""
    started: list[tuple[IPCServer, Gate]] = []
    peers: list[RawPeer] = []
    path = tmp_path / "users.toml"
    path.write_text(USERS)

    async def start(auth_timeout_s: float = 4 * WAIT_S, **options: Any) -> tuple[IPCServer, Gate, Verifier, Callable[..., Any]]:
        server = IPCServer("127.0.0.1", 0, users_file=str(path), auth_timeout_s=auth_timeout_s, shutdown_grace_s=0.5)
        await server.start()
        gate = Gate()
        verifier = server._auth.verifier = Verifier(workers=1, max_queued_per_peer=4, check=gate, **options)  # type: ignore[union-attr]
        started.append((server, gate))

        async def connect(source: str, token: str) -> RawPeer:
            """A connect with an unknown user and ``token`` from ``source``."""
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))
            peer = RawPeer(reader, writer)
            peers.append(peer)
            payload = {"action": "connect", "connection_id": token, "protocol": 2, "user": "x" + token, "token": token}
            peer.send(frame("request", "system", payload, app_id="shop", message_id="hello"))
            return peer

        return server, gate, verifier, connect

    yield start
    for peer in peers:
        await peer.close()
    for server, gate in started:
        gate.release(100)
        await server.close()


async def test_addresses_take_turns_and_one_past_its_bound_is_refused_at_once(setup: Any) -> None:
    server, gate, verifier, connect = await setup()
    flood = [await connect(FLOOD, "a0")]
    assert await gate.next() == "a0"  # running: the worker is busy
    for token in ("a1", "a2", "a3"):
        flood.append(await connect(FLOOD, token))
        await until(lambda: verifier.held(FLOOD) == len(flood))
    # The flood's address holds 4 checks, its bound: the next is refused at once, not queued.
    refused = await (await connect(FLOOD, "a4")).recv()
    assert refused.error is not None and refused.error.code == "too_many_connections"
    assert "4 credential checks from 127.0.0.2 already waiting" in refused.error.message
    # A client with credentials from another address is queued, behind one check of the flood.
    alice = IPCClient("shop", "127.0.0.1", server.port, user="alice", token="alice-token", reconnect=False, connect_timeout=2 * WAIT_S)
    connecting = asyncio.ensure_future(alice.connect())
    await until(lambda: verifier.held("127.0.0.1") == 1)
    other = await connect(OTHER, "b0")
    await until(lambda: verifier.held(OTHER) == 1)
    for _ in range(5):
        gate.release()
        await gate.next()
    assert gate.order == ["a0", "a1", "alice-token", "b0", "a2", "a3"]
    gate.release()
    await asyncio.wait_for(connecting, WAIT_S)
    assert await alice.request("system", {"action": "ping"}) == {"status": "pong"}
    await alice.disconnect()
    for peer in (*flood, other):
        answer = await peer.recv()
        assert answer.error is not None and (answer.error.code, answer.error.message) == ("unauthorized", "invalid user or token")
    assert verifier.dropped == 0


async def test_a_check_whose_socket_closed_never_runs(setup: Any) -> None:
    server, gate, verifier, connect = await setup()
    await connect(FLOOD, "a0")
    assert await gate.next() == "a0"
    gone = await connect(FLOOD, "a1")
    await until(lambda: verifier.held(FLOOD) == 2)
    await gone.close()
    await until(lambda: verifier.dropped == 1)  # out of the queue as the server sees the close
    assert verifier.held(FLOOD) == 1
    await connect(OTHER, "b0")
    await until(lambda: verifier.held(OTHER) == 1)
    gate.release()
    assert await gate.next() == "b0"
    gate.release()
    await until(lambda: verifier.held(OTHER) == 0)
    assert gate.order == ["a0", "b0"]


async def test_a_check_past_the_auth_timeout_never_runs(setup: Any) -> None:
    server, gate, verifier, connect = await setup(auth_timeout_s=0.5)
    await connect(FLOOD, "a0")
    assert await gate.next() == "a0"
    late = await connect(OTHER, "b0")
    await until(lambda: verifier.held(OTHER) == 1)
    answers = await late.closed()  # the auth timeout, while the worker is held
    assert [(m.error.code if m.error else None) for m in answers] == ["timeout"]
    await until(lambda: verifier.dropped == 1)
    gate.release()
    await until(lambda: verifier.held(FLOOD) == 0)
    assert gate.order == ["a0"] and verifier.held(OTHER) == 0


async def test_a_check_whose_turn_comes_with_less_time_left_than_a_check_takes_is_refused_not_run() -> None:
    """The verifier's own clock, moved by hand: a check takes 1.5 s (measured
    on p0), p1's turn comes 0.5 s before its deadline, p2's 2.5 s before."""
    now = [0.0]
    gate = Gate()
    verifier = Verifier(workers=1, check=gate, clock=lambda: now[0])
    stored = hash_token("t", log_n=4)
    futures = [verifier.start(verifier.key(u, stored, "t"), u, stored, peer=u, within_s=within) for u, within in (("p0", 10.0), ("p1", 2.0), ("p2", 4.0))]
    assert await gate.next() == "p0"
    now[0] = 1.5
    gate.release()
    assert await gate.next() == "p2"
    gate.release()
    assert await asyncio.wait_for(futures[2], WAIT_S) is False  # "t" is not "p2"
    with pytest.raises(VerifierBusy, match=r"its turn came 0.500 s before its deadline, a check takes about 1.500 s"):
        futures[1].result()
    assert verifier.dropped == verifier.late == 1 and gate.order == ["p0", "p2"]
    verifier.close()


async def test_a_connect_whose_check_cannot_finish_in_time_is_refused_at_once(setup: Any) -> None:
    """A 2 s auth timeout, a check made to take 1.2 s (the verifier's clock):
    a connect queued at 0 s is answered `too_many_connections` when its turn
    comes at 1.2 s, never run; one queued at 1.2 s has the time, and runs."""
    now = [0.0]
    server, gate, verifier, connect = await setup(auth_timeout_s=2.0, clock=lambda: now[0])
    await connect(FLOOD, "a0")
    assert await gate.next() == "a0"
    late = await connect(OTHER, "b0")
    await until(lambda: verifier.held(OTHER) == 1)
    now[0] = 1.2
    alice = IPCClient("shop", "127.0.0.1", server.port, user="alice", token="alice-token", reconnect=False, connect_timeout=WAIT_S)
    connecting = asyncio.ensure_future(alice.connect())
    await until(lambda: verifier.held("127.0.0.1") == 1)
    gate.release()
    answer = await late.recv(timeout=1.0)  # well before its auth timeout (2 s)
    assert answer.error is not None and answer.error.code == "too_many_connections"
    assert answer.error.message.startswith("the server is busy checking credentials (its turn came 0.")
    assert await gate.next() == "alice-token"
    gate.release()
    await asyncio.wait_for(connecting, WAIT_S)
    await alice.disconnect()
    assert gate.order == ["a0", "alice-token"] and verifier.late == 1


async def test_many_addresses_of_one_network_share_its_turn(setup: Any) -> None:
    """Six addresses of 127.0.1.0/24, one check each, then alice from
    127.0.0.0/24: she waits for one of them, not for all six."""
    server, gate, verifier, connect = await setup()
    await connect("127.0.1.1", "a0")
    assert await gate.next() == "a0"
    for i in range(1, 6):
        await connect(f"127.0.1.{i + 1}", f"a{i}")
        await until(lambda: verifier.held(f"127.0.1.{i + 1}") == 1)
    alice = IPCClient("shop", "127.0.0.1", server.port, user="alice", token="alice-token", reconnect=False, connect_timeout=2 * WAIT_S)
    connecting = asyncio.ensure_future(alice.connect())
    await until(lambda: verifier.held("127.0.0.1") == 1)
    for _ in range(2):
        gate.release()
        await gate.next()
    assert gate.order == ["a0", "a1", "alice-token"]
    gate.release()
    await asyncio.wait_for(connecting, WAIT_S)
    await alice.disconnect()


async def test_a_flood_from_many_addresses_of_one_network_does_not_lock_out_another(tmp_path: Path) -> None:
    """The real check at the default scrypt cost, one thread, the 2 s auth
    timeout: 100 sockets from 100 addresses of 127.0.1.0/24 hold checks
    with wrong tokens (4-10 s of checks, when each address got a turn of
    its own); honest users from 127.0.0.1 still connect, one by one."""
    token = "honest-token"
    stored = hash_token(token)
    path = tmp_path / "users.toml"
    path.write_text("".join(f'[users.honest{i}]\ntoken_hash = "{stored}"\napps = ["shop"]\n' for i in range(3)))
    server = IPCServer("127.0.0.1", 0, users_file=str(path), auth_timeout_s=2.0, shutdown_grace_s=0.5)
    await server.start()
    verifier = server._auth.verifier = Verifier(workers=1)  # type: ignore[union-attr]
    flood: list[RawPeer] = []
    try:
        for i in range(100):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(f"127.0.1.{i + 1}", 0))
            flood.append(RawPeer(reader, writer))
            payload = {"action": "connect", "connection_id": f"f{i}", "protocol": 2, "user": f"mallory{i}", "token": "wrong" * 4}
            flood[-1].send(frame("request", "system", payload, app_id="shop", message_id="hello"))
        await until(lambda: verifier.held("127.0.1.100") == 1)
        for i in range(3):
            client = IPCClient("shop", "127.0.0.1", server.port, user=f"honest{i}", token=token, reconnect=False, connect_timeout=WAIT_S)
            await client.connect()  # fails `not_connected (timeout)` if it waited for the flood's 100 checks
            await client.disconnect()
    finally:
        for peer in flood:
            await peer.close()
        await server.close()


def test_checks_are_queued_by_ip_address_and_ipv6_by_its_64_and_take_turns_by_network() -> None:
    assert address_of(("10.0.0.7", 51312)) == "10.0.0.7"
    assert address_of(("2001:db8:1:2:aaaa::1", 443, 0, 0)) == address_of(("2001:db8:1:2:bbbb::9", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert address_of(("2001:db8:1:3::1", 443, 0, 0)) == "2001:db8:1:3::/64"
    assert address_of(("::ffff:10.0.0.7", 443, 0, 0)) == "10.0.0.7"
    assert address_of(("fe80::1%eth0", 443, 0, 2)) == "fe80::/64"
    assert address_of(None) == ""
    assert network_of("10.0.0.7") == network_of("10.0.0.200") == "10.0.0.0/24"
    assert network_of("2001:db8:1:2::/64") == network_of("2001:db8:1:3::/64") == "2001:db8:1::/48"
    assert network_of("2001:db8:2:2::/64") == "2001:db8:2::/48"
    assert network_of("/tmp/ipc.sock") == "/tmp/ipc.sock" and network_of("") == ""
