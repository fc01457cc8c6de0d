"""Admission limits against a hostile client (docs/protocol.md §12): silent
sockets never lock out a client that holds the token, pending handshakes
have a cap of their own, the authentication timeout, and refusals that say
why (``too_many_connections``) in the Python client."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from ipc_client import IPCClient
from ipc_protocol import NotConnected, RequestTimeout, TooManyConnections
from ipc_protocol.constants import HANDSHAKE_MAX_FRAME_SIZE
from ipc_server import IPCServer, pending_cap
from ipc_server.users import hash_token

from .conftest import WAIT_S, RawPeer, frame

TOKEN = "s3cret"


async def _open_silent(port: int, n: int) -> list[RawPeer]:
    return [await RawPeer.open(port) for _ in range(n)]


async def _wait_until(pred, timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


async def test_silent_sockets_do_not_lock_out_a_token_holder() -> None:
    """Issue 16 §4.3: 20 silent sockets took every place of max_connections
    for the handshake timeout, renewable forever."""
    async with IPCServer("127.0.0.1", 0, max_connections=5, token=TOKEN, handshake_timeout_s=30) as server:
        silent = await _open_silent(server.port, 20)  # accepted before the client: the backlog is FIFO
        client = IPCClient("app", "127.0.0.1", server.port, token=TOKEN, reconnect=False, connect_timeout=WAIT_S)
        try:
            await client.connect()
            assert await client.health_check() is True
        finally:
            await client.disconnect()
            for peer in silent:
                await peer.close()


@pytest.fixture
def silent_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket with nothing in is silent at once, not after SILENT_AFTER_S
    (1 s): the eviction's order, without waiting for sockets to age."""
    monkeypatch.setattr(pending_cap, "SILENT_AFTER_S", 0.0)


@pytest.mark.usefixtures("silent_at_once")
async def test_at_the_pending_cap_the_oldest_silent_socket_is_evicted() -> None:
    async with IPCServer("127.0.0.1", 0, max_pending_handshakes=4, token=TOKEN) as server:
        silent = await _open_silent(server.port, 10)
        await _wait_until(lambda: server.stats.handshakes_evicted == 6)
        # The six oldest were told why before the close; the four newest wait.
        for peer in silent[:6]:
            assert [m.error.code for m in await peer.closed()] == ["too_many_connections"]
        assert server.stats.handshakes_pending == 4
        # A token holder always gets in: it evicts the oldest silent socket.
        async with IPCClient("app", "127.0.0.1", server.port, token=TOKEN, reconnect=False) as client:
            assert await client.health_check() is True
        assert server.stats.handshakes_evicted == 7
        assert [m.error.code for m in await silent[6].closed()] == ["too_many_connections"]
        for peer in silent:
            await peer.close()


@pytest.mark.usefixtures("silent_at_once")
async def test_a_flood_of_silent_sockets_keeps_the_cap_and_lets_token_holders_in() -> None:
    """Sockets opened as fast as they close (the renewable lockout): the
    token holders connect every time, and no more than the cap wait."""
    async with IPCServer("127.0.0.1", 0, max_pending_handshakes=8, max_connections=4, token=TOKEN) as server:
        stop = asyncio.Event()
        flood: list[RawPeer] = []

        async def flooder() -> None:
            while not stop.is_set():
                flood.append(await RawPeer.open(server.port))
                if len(flood) > 64:
                    await flood.pop(0).close()

        task = asyncio.ensure_future(flooder())
        try:
            await _wait_until(lambda: server.stats.handshakes_evicted > 8)
            for _ in range(4):
                client = IPCClient("app", "127.0.0.1", server.port, token=TOKEN, reconnect=False)
                await client.connect()
                assert await client.health_check() is True
                await client.disconnect()
                assert server.stats.handshakes_pending <= 8
        finally:
            stop.set()
            await task
            for peer in flood:
                await peer.close()


async def test_auth_timeout_replaces_the_handshake_timeout_when_credentials_are_required() -> None:
    async with IPCServer("127.0.0.1", 0, token=TOKEN, auth_timeout_s=0.2, handshake_timeout_s=30) as server:
        peer = await RawPeer.open(server.port)
        started = asyncio.get_running_loop().time()
        got = await peer.closed()
        assert [(m.error.code, m.error.message) for m in got] == [("timeout", "no valid connect within the auth timeout (0.2 s)")]
        assert asyncio.get_running_loop().time() - started < 5
        assert server.stats.errors["timeout"] == 1
        await peer.close()


async def test_without_auth_the_handshake_timeout_applies() -> None:
    async with IPCServer("127.0.0.1", 0, auth_timeout_s=0.01, handshake_timeout_s=0.3) as server:
        peer = await RawPeer.open(server.port)
        with pytest.raises(TimeoutError):
            await peer.recv(timeout=0.15)  # the auth timeout is not the one in force
        assert [(m.error.code, m.error.message) for m in await peer.closed()] == [("timeout", "no valid connect within the handshake timeout (0.3 s)")]
        await peer.close()


async def test_a_connect_whose_token_is_still_checked_at_the_auth_timeout_is_told_so(tmp_path: Path) -> None:
    """The connect came in time; its token's hash (cost 16: some 200 ms) did
    not finish within the auth timeout (0.05 s). The answer says that, in
    reply to the connect, and the clients pass the server's words on: they
    said "no valid connect" (server), "no handshake reply" (Python) and "no
    handshake ... within 5000 ms" after some 100 ms (Node)."""
    users = tmp_path / "users.toml"
    users.write_text(f'[users.slow]\ntoken_hash = "{hash_token("slow-token", log_n=16)}"\napps = ["app"]\n')
    text = "the credential check did not finish within the auth timeout (0.05 s)"
    async with IPCServer("127.0.0.1", 0, users_file=str(users), auth_timeout_s=0.05) as server:
        peer = await RawPeer.open(server.port)
        peer.send(frame("request", "system", {"action": "connect", "protocol": 2, "user": "slow", "token": "slow-token"}, app_id="app", message_id="hello"))
        assert [(m.reply_to, m.error.code, m.error.message) for m in await peer.closed()] == [("hello", "timeout", text)]
        await peer.close()
        client = IPCClient("app", "127.0.0.1", server.port, user="slow", token="slow-token", reconnect=False, connect_timeout=WAIT_S)
        with pytest.raises(NotConnected) as info:
            await client.connect()
        assert str(info.value) == f"cannot connect to 127.0.0.1:{server.port}: the server refused the connect (timeout): {text}"
        assert isinstance(info.value.__cause__, RequestTimeout) and str(info.value.__cause__) == text


async def test_max_connections_refusal_is_a_typed_error_frame() -> None:
    async with IPCServer("127.0.0.1", 0, max_connections=2) as server:
        peers = [await RawPeer.open(server.port) for _ in range(2)]
        for p in peers:
            await p.handshake()
        extra = await RawPeer.open(server.port)
        got = await extra.closed()
        assert [(m.error.code, m.channel_id) for m in got] == [("too_many_connections", "system")]
        assert server.stats.errors["too_many_connections"] == 1
        for p in [*peers, extra]:
            await p.close()


async def test_a_connect_that_arrives_when_the_server_filled_up_is_refused_with_its_id() -> None:
    """A socket admitted while there was room, whose connect comes after the
    last place was taken: refused in answer to its connect."""
    async with IPCServer("127.0.0.1", 0, max_connections=1) as server:
        late = await RawPeer.open(server.port)
        await _wait_until(lambda: server.stats.handshakes_pending == 1)
        first = await RawPeer.open(server.port)
        await first.handshake()
        reply = await late.handshake()
        assert reply.error.code == "too_many_connections" and reply.reply_to == "hello"
        assert await late.closed() == []
        for p in (first, late):
            await p.close()


async def test_python_client_raises_too_many_connections_and_retries_it_with_backoff() -> None:
    async with IPCServer("127.0.0.1", 0, max_connections=1) as server:
        holder = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
        await holder.connect()
        refused = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
        with pytest.raises(TooManyConnections) as info:
            await refused.connect()
        assert info.value.code == "too_many_connections"
        await refused.disconnect()

        waiting = IPCClient("app", "127.0.0.1", server.port, wait_on_first_connect=True, initial_delay=0.02, max_delay=0.05)
        attempts: list[int] = []
        waiting.on("reconnecting", lambda info: attempts.append(info["attempt"]))
        task = asyncio.ensure_future(waiting.connect())
        await _wait_until(lambda: len(attempts) >= 3)  # refused, retried with backoff
        assert not task.done()
        await holder.disconnect()
        assert await asyncio.wait_for(task, WAIT_S) is True
        assert await waiting.health_check() is True
        await waiting.disconnect()


async def test_python_client_gives_up_with_not_connected_caused_by_the_refusal() -> None:
    async with IPCServer("127.0.0.1", 0, max_connections=1) as server:
        async with IPCClient("app", "127.0.0.1", server.port, reconnect=False):
            c = IPCClient("app", "127.0.0.1", server.port, wait_on_first_connect=True, max_retries=2, initial_delay=0.01)
            with pytest.raises(NotConnected) as info:
                await c.connect()
            assert isinstance(info.value.__cause__, TooManyConnections)
            await c.disconnect()


@pytest.mark.parametrize("rounds", [40])
async def test_the_refusal_arrives_however_the_race_goes(rounds: int) -> None:
    """The refusal is written at once, before the client's connect may have
    arrived: the client still reads it, every time."""
    async with IPCServer("127.0.0.1", 0, max_connections=1) as server:
        async with IPCClient("app", "127.0.0.1", server.port, reconnect=False):
            for _ in range(rounds):
                c = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
                with pytest.raises(TooManyConnections):
                    await c.connect()
                await c.disconnect()



async def test_sockets_before_their_handshake_hold_at_most_the_handshake_limit() -> None:
    """Issue: 128 sockets that each sent 15 MiB of a 16 MiB "connect" made
    the server hold ~2 GB. Before its connect is accepted a socket's frame
    is at most 64 KiB (docs/protocol.md §3 item 11), checked on the prefix:
    a larger one is ``too_large`` and closed, and what the pending sockets
    hold, frame bytes in their decoders, stays under that limit each."""
    async with IPCServer("127.0.0.1", 0, token=TOKEN) as server:
        announce = (16 * 1024 * 1024 - 8).to_bytes(4, "big") + b"{"
        floods = await _open_silent(server.port, 8)
        for peer in floods:
            peer.send_raw(announce)
        blasts = await _open_silent(server.port, 8)  # a megabyte behind it: the server reads none of it
        for peer in blasts:
            peer.send_raw(announce + b" " * (1024 * 1024))
        nearly = await _open_silent(server.port, 4)  # 60 KiB of a 64 KiB frame: allowed, held
        for peer in nearly:
            peer.send_raw(HANDSHAKE_MAX_FRAME_SIZE.to_bytes(4, "big") + b"{" + b" " * (60 * 1024))
        for peer in floods:
            got = await peer.closed()
            assert [m.error.code for m in got if m.error is not None] == ["too_large"]
        for peer in blasts:
            with contextlib.suppress(ConnectionError):  # closed with its bytes unread: maybe a reset
                await peer.closed()
        connections = server._admission.connections
        await _wait_until(lambda: len(connections) == 4 and sum(c.protocol._decoder.buffered for c in connections) >= 4 * 60 * 1024)
        assert all(c.protocol._decoder.buffered <= HANDSHAKE_MAX_FRAME_SIZE + 4 for c in connections)
        client = IPCClient("app", "127.0.0.1", server.port, token=TOKEN, reconnect=False, connect_timeout=WAIT_S)
        try:
            await client.connect()
            assert await client.health_check() is True
        finally:
            await client.disconnect()
        for peer in (*floods, *blasts, *nearly):
            await peer.close()
