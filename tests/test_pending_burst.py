"""The pending-handshake cap (docs/protocol.md §12.1) against bursts of
honest clients and floods of silent sockets: a restart's reconnections
arrive together, each connect right behind its TCP connect, and none may be
evicted for the others; silent sockets are evicted first, so however fast
they come they never delay a client with a connect. On asyncio and uvloop."""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import encode_frame
from ipc_server import IPCServer
from ipc_server.pending_cap import HARD_BOUND_FACTOR

from .conftest import WAIT_S, RawPeer, frame

LOOPS = pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])


def _run(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_name == "uvloop":
        pytest.importorskip("uvloop").run(main())
    else:
        asyncio.run(main())


async def _until(pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


async def _connect_at_once(port: int) -> str:
    """A raw client that sends its connect as soon as it is connected."""
    peer = await RawPeer.open(port)
    try:
        reply = await peer.handshake()
        return "ok" if reply.error is None else reply.error.code
    except EOFError:
        return "closed"
    finally:
        await peer.close()


def _connect_frame() -> bytes:
    import json

    return encode_frame(json.dumps(frame("request", "system", {"action": "connect", "connection_id": "raw", "protocol": 2}, message_id="hello")).encode())


async def _outcome(sock: socket.socket) -> str:
    """The server's answer to a socket made by hand: ok, or the error code."""
    reader, writer = await asyncio.open_connection(sock=sock)
    peer = RawPeer(reader, writer)
    try:
        reply = await peer.recv()
        return "ok" if reply.error is None else reply.error.code
    except EOFError:
        return "closed"
    finally:
        await peer.close()


def _queued(port: int, sends: list[bytes]) -> list[socket.socket]:
    """Sockets connected and written before the server's loop runs again
    (nothing here awaits): asyncio accepts them in one batch, in this order,
    before it reads any of them, as it does a burst. (uvloop reads each
    socket before it makes the next one's connection: none waits unread.)"""
    made = []
    for data in sends:
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        if data:
            sock.sendall(data)
        made.append(sock)
    return made


@LOOPS
def test_a_burst_over_the_pending_cap_is_admitted_whole(loop_name: str) -> None:
    """200 clients at once over the default cap of 128: before, the 72
    accepted last evicted the first 72 although their connects had come."""

    async def main() -> None:
        async with IPCServer("127.0.0.1", 0) as server:
            assert server.config.max_pending_handshakes == 128
            outcomes = await asyncio.wait_for(asyncio.gather(*(_connect_at_once(server.port) for _ in range(200))), WAIT_S * 2)
            assert outcomes.count("ok") == 200, collections.Counter(outcomes)
            assert server.stats.handshakes_evicted == 0

    _run(loop_name, main)


def test_a_partial_frame_is_evicted_before_a_complete_connect() -> None:
    """Cap 1, sockets in one batch, the last at the hard bound: the one that
    sent half a connect goes, not the oldest two, whose connects are
    complete and waiting unread (before: the oldest went, one per socket)."""

    async def main() -> None:
        async with IPCServer("127.0.0.1", 0, max_pending_handshakes=1, handshake_timeout_s=30) as server:
            hello = _connect_frame()
            sends = [hello, hello, hello[: len(hello) // 2]] + [hello] * (HARD_BOUND_FACTOR - 2)
            outcomes = await asyncio.wait_for(asyncio.gather(*(_outcome(s) for s in _queued(server.port, sends))), WAIT_S * 2)
            assert outcomes == ["ok", "ok", "too_many_connections"] + ["ok"] * (HARD_BOUND_FACTOR - 2)
            assert server.stats.handshakes_evicted == 1

    _run("asyncio", main)


def test_past_the_hard_bound_of_complete_connects_the_oldest_goes() -> None:
    """Every connect in: the cap (2) is exceeded up to HARD_BOUND_FACTOR
    times itself; each socket past that evicts the oldest."""

    async def main() -> None:
        async with IPCServer("127.0.0.1", 0, max_pending_handshakes=2, handshake_timeout_s=30) as server:
            bound = HARD_BOUND_FACTOR * 2
            socks = _queued(server.port, [_connect_frame()] * (bound + 2))
            outcomes = await asyncio.wait_for(asyncio.gather(*(_outcome(s) for s in socks)), WAIT_S * 2)
            assert outcomes == ["too_many_connections"] * 2 + ["ok"] * bound
            assert server.stats.handshakes_evicted == 2

    _run("asyncio", main)


def test_a_queued_burst_past_the_hard_bound_is_read_as_it_is_accepted() -> None:
    """600 sockets, each with its connect, queued before the server looks:
    asyncio accepted all of them at once (its batch was the listen
    backlog, 1,024) before reading any, and the 88 past the hard bound
    (512) evicted the oldest; accepted 100 a wakeup, each batch is read
    before the next one's connections are made."""

    async def main() -> None:
        async with IPCServer("127.0.0.1", 0, handshake_timeout_s=30) as server:
            socks = _queued(server.port, [_connect_frame()] * 600)
            outcomes = await asyncio.wait_for(asyncio.gather(*(_outcome(s) for s in socks)), WAIT_S * 3)
            assert outcomes.count("ok") == 600, collections.Counter(outcomes)
            assert server.stats.handshakes_evicted == 0

    _run("asyncio", main)


_FLOOD = """
import socket, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
kept, n, start = [], 0, time.monotonic()
print("ready", flush=True)
while time.monotonic() - start < seconds:
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    kept.append(sock)
    n += 1
    if len(kept) > 600:  # long evicted: let them go
        kept.pop(0).close()
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
print(n, flush=True)
"""


async def _flood(port: int, rate: float, seconds: float) -> asyncio.subprocess.Process:
    """Silent sockets from another process, ``rate`` a second, never
    written to (as a slow-loris attacker's), for ``seconds``."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _FLOOD, str(port), str(rate), str(seconds), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT_S):
        assert await proc.stdout.readline() == b"ready\n"
    return proc


@LOOPS
def test_silent_sockets_never_delay_an_honest_client(loop_name: str) -> None:
    """130 silent sockets hold the default cap of 128, then more come at
    400/s: a client with a connect gets in at once every time, the silent
    ones evicted for it and for the flood. Before, the
    server stopped accepting until a pending socket was 1 s old, and the
    flood filled the listen backlog ahead of the client: 2.7-4.1 s."""

    async def main() -> None:
        async with IPCServer("127.0.0.1", 0, handshake_timeout_s=60) as server:
            loop = asyncio.get_running_loop()
            silent = [await RawPeer.open(server.port) for _ in range(130)]
            flood: asyncio.subprocess.Process | None = None
            try:
                await _until(lambda: server.stats.handshakes_pending >= 128)
                took: list[float] = []

                async def honest() -> None:
                    started = loop.time()
                    async with IPCClient("app", "127.0.0.1", server.port, reconnect=False, connect_timeout=WAIT_S) as client:
                        took.append(loop.time() - started)
                        assert await client.health_check() is True

                await honest()
                assert took[0] < 0.5, took  # the cap held by silent sockets younger than SILENT_AFTER_S: kept over it
                flood = await _flood(server.port, 400, 2.0)
                flood_read = asyncio.ensure_future(flood.communicate())
                while not flood_read.done():
                    await honest()
                async with asyncio.timeout(WAIT_S):
                    opened = int((await flood_read)[0])
                assert opened > 500, opened  # the flood came
                assert len(took) > 5, took
                # 1-2 ms each on an idle machine; the bound leaves room for a loaded one.
                assert max(took) < 0.5, took
                assert server.stats.handshakes_evicted > 300  # silent ones, making room
                assert server.stats.handshakes_pending <= HARD_BOUND_FACTOR * 128
            finally:
                if flood is not None and flood.returncode is None:
                    flood.kill()
                    await flood.wait()
                for peer in silent:
                    await peer.close()

    _run(loop_name, main)


def test_the_decoder_tells_whether_unread_bytes_complete_its_frame() -> None:
    """What the pending cap asks of a connection's decoder: the bytes it
    holds plus those waiting (``head`` their first 4) make a whole frame."""
    from ipc_protocol import FrameDecoder

    body = encode_frame(b'{"x": 1}')  # 4 + 8 bytes
    fresh = FrameDecoder(None)
    assert fresh.completes(len(body), body[:4]) and not fresh.completes(len(body) - 1, body[:4])
    assert not fresh.completes(3, body[:3])
    split_prefix = FrameDecoder(None)
    assert split_prefix.feed(body[:2]) == []
    assert split_prefix.completes(len(body) - 2, body[2:6]) and not split_prefix.completes(len(body) - 3, body[2:6])
    held_body = FrameDecoder(None)
    assert held_body.feed(body[:7]) == []
    assert held_body.completes(len(body) - 7, body[7:11]) and not held_body.completes(len(body) - 8, body[7:11])
