"""The metrics port's HTTP under attack and at its edges (docs/operations.md
§1): sockets that hold every slot are evicted oldest first, so /healthz is
always answered; absolute-form targets are routed by their path (RFC 9112
§3.2.2); control characters in a field value are refused (RFC 9110 §5.5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from ipc_server import IPCServer, http_endpoint
from ipc_server.http_endpoint import HttpEndpoint

from .conftest import WAIT_S
from .http_probe import get, http

CAP = 4  # MAX_CLIENTS for these tests: the rule, not the number, is what they check
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[IPCServer]:
    monkeypatch.setattr(http_endpoint, "MAX_CLIENTS", CAP)
    monkeypatch.setattr(http_endpoint, "READ_TIMEOUT_S", WAIT_S * 4)  # no 408 frees a slot during a test
    async with IPCServer("127.0.0.1", 0, metrics_port=0) as server:
        yield server


def endpoint_of(server: IPCServer) -> HttpEndpoint:
    assert server.metrics is not None and server.metrics.endpoint is not None
    return server.metrics.endpoint


async def held(endpoint: HttpEndpoint, n: int) -> None:
    """Until the endpoint holds ``n`` sockets (accepted sockets reach it a loop turn later)."""
    await _until(lambda: endpoint.clients == n)


async def idle_sockets(endpoint: HttpEndpoint, n: int, first_bytes: bytes = b"") -> list[Streams]:
    """``n`` sockets, opened one after the other (the first is the oldest),
    that send ``first_bytes`` and then nothing; returns once the endpoint
    has taken each (held, or evicted by a later one)."""
    out = []
    base = endpoint.clients + endpoint.evicted
    for i in range(1, n + 1):
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer.write(first_bytes)
        out.append((reader, writer))
        await _until(lambda: endpoint.clients + endpoint.evicted == base + i)
    return out


async def _until(pred: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not pred():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), WAIT_S)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the end, or what came before a reset."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(1 << 20), WAIT_S):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_idle_sockets_holding_every_slot_do_not_keep_healthz_out(server: IPCServer) -> None:
    """Before, 32 silent sockets made /healthz a connection reset for 5 s."""
    endpoint = endpoint_of(server)
    idle = await idle_sockets(endpoint, CAP)
    reply = await get(endpoint.port, "/healthz")  # type: ignore[arg-type]
    assert reply.status == 200 and '"status": "ok"' in reply.text
    # The oldest made room, with a word; the others still wait for their request.
    evicted = await asyncio.wait_for(idle[0][0].read(), WAIT_S)
    assert evicted.startswith(b"HTTP/1.1 503 ") and b"evicted: 4 newer connections" in evicted
    assert endpoint.evicted == server.stats.metrics_sockets_evicted == 1
    assert server.stats.snapshot()["metrics_sockets_evicted"] == 1
    await held(endpoint, CAP - 1)  # the probe is gone too
    for reader, _ in idle[1:]:
        assert not reader.at_eof()
    for _, writer in idle:
        writer.close()


async def test_a_slowloris_flood_never_holds_more_than_the_cap_and_every_probe_is_answered(server: IPCServer) -> None:
    endpoint = endpoint_of(server)
    flood = await idle_sockets(endpoint, 3 * CAP, b"G")  # a request that never ends
    assert endpoint.clients == CAP and endpoint.evicted == 2 * CAP == server.stats.metrics_sockets_evicted
    for _ in range(5):
        flood += await idle_sockets(endpoint, CAP, b"GET /metrics HTTP/1.1\r\nX-Slow: ")  # refreshed between probes
        assert (await get(endpoint.port, "/healthz")).status == 200  # type: ignore[arg-type]
        assert endpoint.clients <= CAP
    for _, writer in flood:
        writer.close()


BIG = b"x" * (32 << 20)  # more than a loopback socket's buffers take


def big_endpoint() -> HttpEndpoint:
    return HttpEndpoint({"/big": lambda: (200, "text/plain", BIG), "/healthz": lambda: (200, "application/json", b"{}")})


async def test_when_every_slot_is_being_answered_the_oldest_answer_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Peers that sent a request and never read a large answer: the
    newcomer evicts the oldest of them, its answer cut short."""
    monkeypatch.setattr(http_endpoint, "MAX_CLIENTS", 2)
    endpoint = big_endpoint()
    await endpoint.start("127.0.0.1", 0)
    try:
        peers = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
            writer.write(b"GET /big HTTP/1.1\r\n\r\n")
            peers.append((reader, writer))
        await _until(lambda: len(endpoint._answering) == 2)
        assert (await get(endpoint.port, "/healthz")).status == 200  # type: ignore[arg-type]
        assert endpoint.evicted == 1 and endpoint.clients == 1
        assert len(await read_all(peers[0][0])) < len(BIG)  # what the kernel had taken, then the end
        for _, writer in peers:
            writer.close()
    finally:
        await endpoint.close()


async def test_a_peer_past_the_write_timeout_leaves_no_answer_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the socket was closed gracefully: its transport kept the rest
    of the answer in memory, outside the cap, for as long as the peer did not read."""
    monkeypatch.setattr(http_endpoint, "WRITE_TIMEOUT_S", 0.2)
    endpoint = big_endpoint()
    await endpoint.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer.write(b"GET /big HTTP/1.1\r\n\r\n")
        await held(endpoint, 1)
        await held(endpoint, 0)  # the write timed out
        assert len(await read_all(reader)) < len(BIG)  # aborted: not the whole answer, late
        writer.close()
    finally:
        await endpoint.close()


async def test_closing_with_a_socket_still_reading_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """Python 3.11's stream callback called a cancelled task's exception(): a traceback at every close."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    endpoint = HttpEndpoint({})
    await endpoint.start("127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    await held(endpoint, 1)
    await endpoint.close()
    await asyncio.sleep(0.05)
    writer.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"http://127.0.0.1:9108/metrics", 200),
        (b"HTTP://localhost/healthz?verbose=1", 200),
        (b"https://example.test:443/healthz", 200),  # the host is not checked: a proxy's request, or our name for us
        (b"http://127.0.0.1:9108", 404),  # path "/"
        (b"http://127.0.0.1:9108?x", 404),
        (b"http://127.0.0.1:9108/nothing", 404),
        (b"ftp://127.0.0.1/metrics", 400),
        (b"*", 400),
    ],
)
async def test_an_absolute_form_target_is_routed_by_its_path(server: IPCServer, target: bytes, status: int) -> None:
    """RFC 9112 §3.2.2: a server MUST accept the absolute form (400 before)."""
    reply = await http(endpoint_of(server).port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # type: ignore[arg-type]
    assert reply.status == status, reply.text
    if status == 200 and target.endswith(b"/metrics"):
        assert "ipc_info{" in reply.text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX: \x01\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX: a\x1bb\r\n\r\n", 400),
        (b"GET /health\x00z HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX: a\tb c\r\n\r\n", 200),  # tabs and spaces are fine
        (b"GET /healthz HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n", 200),  # obs-text: bytes past 0x7f are accepted
        (b"GET /healthz HTTP/1.1\r\nX:\r\n\r\n", 200),  # an empty value
    ],
)
async def test_a_control_character_in_a_field_value_or_the_target_is_400(server: IPCServer, raw: bytes, status: int) -> None:
    """RFC 9110 §5.5: a field value is visible characters, spaces and tabs (NUL was accepted)."""
    assert (await http(endpoint_of(server).port, raw)).status == status  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /healthz HTTP/1.1\nHost: x\n\n", 200),
        (b"GET /healthz HTTP/1.1\r\nHost: x\n\r\n", 200),  # mixed
        (b"GET /healthz HTTP/1.0\n\n", 200),
        (b"HEAD /metrics HTTP/1.1\nHost: x\n\n", 200),
        (b"GET /healthz HTTP/1.1\nX: a\rb\n\n", 400),  # a CR inside a line is still a control character
        (b"GET /nope HTTP/1.1\n\n", 404),
        (b"\nGET /healthz HTTP/1.1\n\n", 400),  # an empty head, as with CRLF
    ],
)
async def test_request_lines_ending_in_a_bare_lf_are_read(server: IPCServer, raw: bytes, status: int) -> None:
    """RFC 9112 §2.2: a recipient may take a bare LF as a line's end; the
    endpoint did not see the head end and answered 408 after 5 s."""
    reply = await http(endpoint_of(server).port, raw, timeout=WAIT_S)  # type: ignore[arg-type]
    assert reply.status == status, reply.text


async def test_a_head_over_the_limit_in_short_lines_is_431(server: IPCServer) -> None:
    raw = b"GET /healthz HTTP/1.1\r\n" + b"X: aaaaaaaa\r\n" * 1000 + b"\r\n"
    assert (await http(endpoint_of(server).port, raw)).status == 431  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [256 << 10, 4 << 20])
async def test_a_client_that_sends_a_huge_head_whole_then_reads_gets_its_431(server: IPCServer, size: int) -> None:
    """As curl and urllib send: the whole head, then read. The endpoint
    closed with the rest unread, the kernel sent a reset, and the client
    never read its 431 (5 of 5 at 256 KiB, 1 MiB, 4 MiB)."""
    raw = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    reply = await http(endpoint_of(server).port, raw)  # type: ignore[arg-type]
    assert reply.status == 431 and "over 8192 bytes" in reply.text


async def test_a_lingering_socket_counts_against_the_cap_and_is_evicted_first(server: IPCServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_endpoint, "LINGER_S", WAIT_S * 4)
    endpoint = endpoint_of(server)
    refused = await idle_sockets(endpoint, 1, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n")  # answered 431, then silent
    await _until(lambda: len(endpoint._lingering) == 1)
    assert endpoint.clients == 1
    reading = await idle_sockets(endpoint, CAP - 1)  # every slot taken: the refused one among them
    assert endpoint.clients == CAP and endpoint.evicted == 0
    assert (await get(endpoint.port, "/healthz")).status == 200  # type: ignore[arg-type]
    assert endpoint.evicted == 1 and not endpoint._lingering  # the answered one went, not a socket still to be answered
    assert (await read_all(refused[0][0])).startswith(b"HTTP/1.1 431 ")
    for reader, _ in reading:
        assert not reader.at_eof()
    for _, writer in refused + reading:
        writer.close()


@pytest.mark.parametrize("bound", ["LINGER_S", "LINGER_BYTES"])
async def test_lingering_ends_at_its_time_or_size_bound(server: IPCServer, monkeypatch: pytest.MonkeyPatch, bound: str) -> None:
    """A refused peer that stays silent is held LINGER_S at most; one that
    goes on sending is read while the lingering sockets' budget lasts
    (LINGER_BYTES a second between them all), then closed."""
    monkeypatch.setattr(http_endpoint, "LINGER_S", 0.2 if bound == "LINGER_S" else WAIT_S * 4)
    monkeypatch.setattr(http_endpoint, "LINGER_BYTES", 1 << 20)
    endpoint = endpoint_of(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n")
    await _until(lambda: len(endpoint._lingering) == 1)
    if bound == "LINGER_BYTES":
        sent = 0
        with pytest.raises(ConnectionError):  # the endpoint closes once it has read its bound
            while sent < 64 << 20:
                writer.write(b"a" * (64 << 10))
                await asyncio.wait_for(writer.drain(), WAIT_S)
                sent += 64 << 10
        assert sent < 64 << 20
    await held(endpoint, 0)
    writer.close()
