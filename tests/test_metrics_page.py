"""What a /metrics page costs the server whatever clients name things and
however many scrape it (docs/operations.md §1): label values are capped,
scrapes share one rendered page, an answer is written in chunks as the
socket drains, and a HEAD error is headers only (RFC 9110 §9.3.2)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from ipc_client import IPCClient
from ipc_protocol import NoResponders
from ipc_server import IPCServer, http_endpoint, metrics
from ipc_server.exposition import label_value
from ipc_server.http_endpoint import CHUNK_BYTES, MAX_REQUEST_BYTES, SEND_BUFFER_BYTES, HttpEndpoint

from .conftest import WAIT_S
from .http_probe import get
from .prometheus_text import parse

MAX_LABEL_BYTES = 128  # documented (docs/operations.md §1), written here so the test reads as the rule
LONG_APP = "€" * 250 + "app"  # 253 characters, 753 bytes (the limit is 256 characters)


@pytest.fixture
async def server() -> AsyncIterator[IPCServer]:
    async with IPCServer("127.0.0.1", 0, metrics_port=0) as server:
        assert server.metrics is not None and server.metrics.port
        yield server


def long_channel(i: int) -> str:
    return ("€" * 250 + "." + "€" * 250 + f".{i:09d}")[:512]  # the longest a channel may be, 1.5 KB


async def test_long_app_and_channel_names_keep_every_line_short_and_their_series_apart(server: IPCServer) -> None:
    """Before, each of a series' 19 lines carried both names whole: 2.3 KB
    a line here, and 500 such series made a 23 MB page."""
    async with IPCClient(LONG_APP, "127.0.0.1", server.port) as client:
        for i in range(10):
            with pytest.raises(NoResponders):
                await client.request(long_channel(i), None, timeout=WAIT_S)
    reply = await get(server.metrics.port, "/metrics")  # type: ignore[union-attr, arg-type]
    assert reply.status == 200
    assert max(len(line) for line in reply.body.split(b"\n")) < 3 * MAX_LABEL_BYTES
    requests = parse(reply.text)["ipc_requests_total"].matching(outcome="no_responders")
    assert len(requests) == 10 and all(value == 1 for _, value in requests)  # ten channels, ten series
    for labels, _ in requests:
        assert len(labels["app"].encode()) <= MAX_LABEL_BYTES and len(labels["channel"].encode()) <= MAX_LABEL_BYTES
        assert labels["app"].startswith("€" * 39) and "\ufffd" not in labels["app"] + labels["channel"]


async def test_an_app_named_as_a_long_apps_cut_label_keeps_its_own_series(server: IPCServer) -> None:
    """Before, a value of up to 128 bytes was written whole and a cut one
    was 128 bytes: an app named what another's long id is cut to had its
    connections and requests summed into the other's series."""
    long_app = "victim-" + "a" * 200
    mimic = label_value(long_app)
    async with IPCClient(long_app, "127.0.0.1", server.port) as victim, IPCClient(mimic, "127.0.0.1", server.port):
        for _ in range(3):
            await victim.request("system", {"action": "ping"}, timeout=WAIT_S)
        reply = await get(server.metrics.port, "/metrics")  # type: ignore[union-attr, arg-type]
    connections = parse(reply.text)["ipc_connections"].matching()
    by_app = {labels["app"]: value for labels, value in connections if "victim" in labels["app"]}
    assert len(by_app) == 2 and all(value == 1 for value in by_app.values())


async def test_concurrent_scrapes_share_one_render(server: IPCServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, each of N scrapes rendered the page anew, back to back on the loop."""
    assert server.metrics is not None
    monkeypatch.setattr(metrics, "RENDER_INTERVAL_S", 3600.0)  # every scrape below is within it, however slow the machine
    renders = []
    render = server.metrics.render

    def counted() -> bytes:
        renders.append(1)
        return render()

    monkeypatch.setattr(server.metrics, "render", counted)
    replies = await asyncio.gather(*(get(server.metrics.port, "/metrics") for _ in range(16)))  # type: ignore[arg-type]
    assert len(renders) == 1
    assert {reply.body for reply in replies} == {replies[0].body} and replies[0].status == 200
    assert server.metrics.scrape()[2] is server.metrics.scrape()[2]  # one bytes object, not copies


async def test_a_page_older_than_the_interval_is_rendered_again(server: IPCServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "RENDER_INTERVAL_S", 0.0)
    port = server.metrics.port  # type: ignore[union-attr]
    before = parse((await get(port, "/metrics")).text)["ipc_connections_accepted_total"].value()  # type: ignore[arg-type]
    async with IPCClient("late", "127.0.0.1", server.port):
        after = parse((await get(port, "/metrics")).text)["ipc_connections_accepted_total"].value()  # type: ignore[arg-type]
    assert after == before + 1


BIG = bytes(range(256)) * (128 << 10)  # 32 MB, more than a loopback socket's buffers take


async def _until(pred: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not pred():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), WAIT_S)


async def test_a_peer_that_does_not_read_holds_about_two_chunks_not_the_page() -> None:
    """Before, the transport copied all the kernel did not take into the
    socket's own buffer: a 23 MB page to 128 such peers took 2.8 GB."""
    endpoint = HttpEndpoint({"/big": lambda: (200, "application/octet-stream", BIG)})
    await endpoint.start("127.0.0.1", 0)
    try:
        silent = socket.create_connection(("127.0.0.1", endpoint.port))  # type: ignore[arg-type]
        silent.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        await _until(lambda: len(endpoint._answering) == 1)
        writer = next(iter(endpoint._answering.values()))
        await _until(lambda: writer.transport.get_write_buffer_size() > 0)  # the kernel's buffers are full
        assert writer.transport.get_write_buffer_size() <= 2 * CHUNK_BYTES
        assert writer.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 2 * SEND_BUFFER_BYTES
        reader, other = await asyncio.open_connection("127.0.0.1", endpoint.port)  # a peer that reads gets it all
        other.write(b"GET /big HTTP/1.1\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), WAIT_S * 4)
        other.close()
        assert data.endswith(b"\r\n\r\n" + BIG) and f"Content-Length: {len(BIG)}\r\n".encode() in data
        silent.close()
    finally:
        await endpoint.close()


async def _exchange(port: int, raw: bytes, *, half_close: bool = False) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        if half_close:
            writer.write_eof()
        data = await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"HEAD /nothing HTTP/1.1\r\n\r\n", 404),
        (b"HEAD /metrics HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"HEAD /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"HEAD /metrics HTTP/2.0\r\n\r\n", 505),
        (b"HEAD /metrics HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n", 431),
        (b"HEAD /metrics HTTP/1.1\r\n", 400),  # half-closed before the blank line
        (b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n", 408),  # and nothing more
    ],
)
async def test_a_head_answered_an_error_gets_its_headers_only(
    server: IPCServer, monkeypatch: pytest.MonkeyPatch, raw: bytes, status: int
) -> None:
    """Before, HEAD /nothing was answered the 404's 33-byte text, which a
    client reads as the start of the next answer (RFC 9110 §9.3.2)."""
    monkeypatch.setattr(http_endpoint, "READ_TIMEOUT_S", 0.2 if status == 408 else WAIT_S)
    port = server.metrics.port  # type: ignore[union-attr]
    got, headers, body = await _exchange(port, raw, half_close=status == 400 and raw.endswith(b"1.1\r\n"))  # type: ignore[arg-type]
    assert (got, body) == (status, b"")
    assert int(headers["content-length"]) > 0  # the length a GET's body would have
    got, headers, body = await _exchange(port, b"GET" + raw[4:], half_close=status == 400 and raw.endswith(b"1.1\r\n"))  # type: ignore[arg-type]
    assert got == status and len(body) == int(headers["content-length"]) > 0
