"""``--metrics-port``: GET /metrics after real traffic, checked against the
exposition format (a strict reader and prometheus_client's parser), GET
/healthz through a shutdown, and bad HTTP answered, never waited on
(docs/operations.md §1, §2)."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipc_client import IPCClient
from ipc_protocol import ErrorCode, HandlerError, IPCError, NoResponders, RemoteError
from ipc_server import IPCServer, http_endpoint, metrics
from ipc_server.http_endpoint import MAX_REQUEST_BYTES

from .conftest import WAIT_S, RawPeer, frame
from .http_probe import get, http
from .prometheus_text import parse


async def _metrics_port(srv: Any) -> int:
    """The second stdout line of a server started with --metrics-port 0."""
    line = await asyncio.wait_for(asyncio.to_thread(srv.proc.stdout.readline), WAIT_S)
    assert line.startswith("ipc_server metrics on http://127.0.0.1:"), line
    return int(line.strip().rsplit(":", 1)[1].split("/")[0])


async def scrape(port: int) -> dict[str, Any]:
    reply = await get(port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse(reply.text)
    # A second opinion: the reference client library reads the same families and samples.
    theirs = {(f.name, f.type): {(s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples} for f in text_string_to_metric_families(reply.text)}
    ours = {
        (name.removesuffix("_total") if family.kind == "counter" else name, family.kind): {(n, tuple(sorted(labels)), v) for (n, labels), v in family.samples.items()}
        for name, family in families.items()
    }
    assert theirs == ours
    return families


async def test_metrics_count_real_traffic_from_python_clients(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--metrics-port", "0")
    port = await _metrics_port(srv)
    async with IPCClient("shop", "127.0.0.1", srv.port) as worker, IPCClient("shop", "127.0.0.1", srv.port) as caller, \
            IPCClient("shop", "127.0.0.1", srv.port) as sub:  # fmt: skip
        await worker.serve("orders.get", lambda m: {"id": m.payload})

        def fail(msg: Any) -> None:
            raise ValueError("no such order")

        await worker.serve("orders.fail", fail)
        got: asyncio.Queue[Any] = asyncio.Queue()
        await sub.subscribe("news.>", got.put_nowait)
        await caller.subscribe("news.>", got.put_nowait)
        for i in range(7):
            assert await caller.request("orders.get", i) == {"id": i}
        with pytest.raises(HandlerError):
            await caller.request("orders.fail", 1)
        with pytest.raises(NoResponders):
            await caller.request("nobody.home", 1)
        await worker.publish("news.eu", {"n": 1}, ack=True)
        for _ in range(2):
            await asyncio.wait_for(got.get(), WAIT_S)
        legacy = await RawPeer.open(srv.port)  # a version-1 client
        await legacy.handshake("shop", protocol=None)
        m = await scrape(port)
        assert m["ipc_connections"].value(app="shop", protocol="2") == 3
        assert m["ipc_connections"].value(app="shop", protocol="1") == 1
        await legacy.close()
    req = m["ipc_requests_total"]
    assert req.value(app="shop", channel="orders.get", outcome="ok") == 7
    assert req.value(app="shop", channel="orders.fail", outcome="handler_error") == 1
    assert req.value(app="shop", channel="nobody.home", outcome="no_responders") == 1
    duration = m["ipc_request_duration_seconds"]
    assert duration.value("_count", app="shop", channel="orders.get") == 7
    assert 0 < duration.value("_sum", app="shop", channel="orders.get") < WAIT_S
    assert duration.value("_bucket", app="shop", channel="orders.get", le="+Inf") == 7
    assert m["ipc_publishes_total"].value() == 1
    assert m["ipc_deliveries_total"].value() == 2
    msgs = m["ipc_messages_total"]
    assert msgs.value(direction="in", type="request", app="shop") == 9  # 7 + 1 + 1; connects count under "-"
    assert msgs.value(direction="out", type="request", app="shop") == 8  # forwarded to the worker
    assert msgs.value(direction="out", type="publish", app="shop") == 2
    assert msgs.value(direction="in", type="request", app="-") == 4  # the four connects
    assert m["ipc_handler_errors_total"].value() == 1
    assert m["ipc_errors_total"].value(code="no_responders") == 1
    assert m["ipc_bytes_total"].value(direction="in") > 0 and m["ipc_bytes_total"].value(direction="out") > 0
    assert m["ipc_requests_held"].value(kind="forwarded") == 0
    assert m["ipc_slow_consumers_total"].value(limit="hard") == 0
    assert m["ipc_event_loop_lag_seconds"].kind == "gauge"
    assert m["ipc_request_duration_seconds"].kind == "histogram"
    assert all(name.startswith("ipc_") for name in m)


async def test_healthz_is_200_then_503_during_the_shutdown_grace(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--metrics-port", "0", "--shutdown-grace", "10")
    port = await _metrics_port(srv)
    reply = await get(port, "/healthz")
    assert reply.status == 200 and '"status": "ok"' in reply.text
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(msg: Any) -> str:
        started.set()
        await release.wait()
        return "done"

    async with IPCClient("app", "127.0.0.1", srv.port, reconnect=False) as worker, IPCClient("app", "127.0.0.1", srv.port, reconnect=False) as caller:
        await worker.serve("slow", slow)
        pending = asyncio.ensure_future(caller.request("slow", timeout=WAIT_S * 2))
        await asyncio.wait_for(started.wait(), WAIT_S)
        held = await scrape(port)
        assert held["ipc_requests_held"].value(kind="forwarded") == 1
        srv.signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT_S
        while (reply := await get(port, "/healthz")).status == 200:  # the signal lands asynchronously
            assert time.monotonic() < deadline, "healthz never said 503"
            await asyncio.sleep(0.02)
        assert reply.status == 503 and '"status": "shutting_down"' in reply.text
        assert (await get(port, "/metrics")).status == 200  # still scraped while draining
        release.set()
        assert await asyncio.wait_for(pending, WAIT_S) == "done"
    assert await srv.wait() == 0


@pytest.fixture
async def endpoint() -> Any:
    async with IPCServer("127.0.0.1", 0, metrics_port=0) as server:
        assert server.metrics is not None and server.metrics.port
        yield server


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE /healthz HTTP/1.1\r\n\r\n", 405),
        (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"hello there\r\n\r\n", 400),
        (b"GET /metrics\r\n\r\n", 400),  # no version
        (b"GET metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS on a plaintext port
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n", 431),
        (b"GET /metrics HTTP/1.1\r\n", 400),  # the client half-closes before the blank line
    ],
)
async def test_bad_http_is_answered_with_a_status_never_waited_on(endpoint: IPCServer, raw: bytes, status: int) -> None:
    port = endpoint.metrics.port  # type: ignore[union-attr]
    if raw.endswith(b"HTTP/1.1\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), WAIT_S)
        writer.close()
        assert data.startswith(b"HTTP/1.1 400 ")
        return
    reply = await http(port, raw)
    assert reply.status == status
    if status == 405:
        assert reply.headers["allow"] == "GET, HEAD"
    assert (await get(port, "/healthz")).status == 200  # and the endpoint still serves


async def test_head_answers_headers_only_and_a_query_is_ignored(endpoint: IPCServer) -> None:
    port = endpoint.metrics.port  # type: ignore[union-attr]
    head = await get(port, "/metrics", method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0
    assert (await get(port, "/healthz?verbose=1")).status == 200


async def test_a_silent_client_gets_408_after_the_read_timeout(endpoint: IPCServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_endpoint, "READ_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.metrics.port)  # type: ignore[union-attr]
    writer.write(b"GET /metr")  # and nothing more
    data = await asyncio.wait_for(reader.read(), WAIT_S)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")


async def test_a_blocked_loop_makes_healthz_degraded(endpoint: IPCServer, monkeypatch: pytest.MonkeyPatch) -> None:
    port = endpoint.metrics.port  # type: ignore[union-attr]
    monkeypatch.setattr(metrics, "DEGRADED_LAG_S", 0.2)

    @endpoint.handler("block")
    async def block(msg: Any) -> str:
        # The point: the loop does nothing else meanwhile. A lag sample
        # spanning it sees at least 0.8 s less one interval (0.5 s).
        time.sleep(0.8)
        return "unblocked"

    async with IPCClient("app", "127.0.0.1", endpoint.port) as client:
        assert await client.request("block", timeout=WAIT_S) == "unblocked"
    reply = await get(port, "/healthz")
    assert reply.status == 503 and '"status": "degraded"' in reply.text and "event loop lagged" in reply.text


async def test_without_metrics_port_nothing_listens_and_requests_are_not_timed() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        assert server.metrics is None and server.stats.timing is None


def test_the_settings_come_from_env_toml_and_flags_like_the_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ipc_server.command import build_parser
    from ipc_server.config import load_config

    assert load_config(env={}).metrics_port is None and load_config(env={}).metrics_host == "127.0.0.1"
    assert load_config(env={"IPC_SERVER_METRICS_PORT": "9100", "IPC_SERVER_LOG_FORMAT": "json"}).metrics_port == 9100
    assert load_config(env={"IPC_SERVER_METRICS_PORT": "off"}).metrics_port is None
    with pytest.raises(ValueError, match="IPC_SERVER_METRICS_PORT: metrics_port must be 0-65535"):
        load_config(env={"IPC_SERVER_METRICS_PORT": "70000"})
    with pytest.raises(ValueError, match="IPC_SERVER_LOG_FORMAT: log_format must be one of text, json"):
        load_config(env={"IPC_SERVER_LOG_FORMAT": "xml"})
    toml = tmp_path / "ops.toml"
    toml.write_text('metrics_port = 0\nmetrics_host = "0.0.0.0"\nlog_format = "json"\n')
    config = load_config(path=toml, env={})
    assert (config.metrics_port, config.metrics_host, config.log_format) == (0, "0.0.0.0", "json")
    flags = vars(build_parser().parse_args(["--metrics-port", "off", "--log-format", "text"]))
    assert flags == {"metrics_port": None, "log_format": "text"}


def test_a_metrics_port_in_use_stops_the_cli_with_its_address() -> None:
    import socket
    import subprocess
    import sys

    from .conftest import ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "ipc_server", "--port", "0", "--metrics-port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    # The metrics endpoint's address, not the main port's (--port 0) before it.
    last = proc.stderr.splitlines()[-1]
    assert proc.returncode == 1 and last.startswith(f"ipc_server: cannot listen on the metrics endpoint 127.0.0.1:{port}: ") and "in use" in last, proc.stderr


async def test_a_metrics_port_in_use_fails_start_and_leaves_nothing_of_the_server_open() -> None:
    """Embedded, the error reaches the caller as the CLI's does, and the
    listener, the heartbeat sweep and the handler threads it had started
    are closed with it: a caller that goes on leaks no open port."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = IPCServer("127.0.0.1", 0, metrics_port=taken.getsockname()[1])
        with pytest.raises(OSError, match="metrics endpoint"):
            await server.start()
    assert server.port != 0 and server._sweeper is not None and server._sweeper.done()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)
    await server.close()  # as after any start: returns at once


async def test_error_codes_a_responder_invents_share_the_other_series(endpoint: IPCServer) -> None:
    """``ipc_errors_total`` and the ``stats`` action's ``errors`` stay
    bounded whatever codes responders answer with (docs/operations.md §1)."""
    port = endpoint.port

    def fail(msg: Any) -> None:
        raise RemoteError("refused", code=msg.payload)

    async with IPCClient("app", "127.0.0.1", port) as worker, IPCClient("app", "127.0.0.1", port) as caller:
        await worker.serve("fail", fail)
        for code in [f"custom_{i}" for i in range(40)] + ["timeout"]:
            with pytest.raises(IPCError):
                await caller.request("fail", code, timeout=WAIT_S)
        errors = (await caller.system("stats"))["errors"]
    assert errors == {"other": 40, "timeout": 1}
    samples = (await scrape(endpoint.metrics.port))["ipc_errors_total"].samples  # type: ignore[union-attr]
    codes = {dict(labels)["code"]: n for (_, labels), n in samples.items()}
    assert codes == {"other": 40, "timeout": 1} and set(codes) - {"other"} <= {str(c) for c in ErrorCode}


async def test_pongs_count_as_out_responses_and_the_servers_own_actions_are_never_timed(endpoint: IPCServer) -> None:
    """A pong answers a ping like any response (``ipc_messages_total``
    out); a refused server action, like an answered one, is no request of
    ``ipc_requests_total``, while a custom ``system`` action refused is
    (docs/operations.md §1)."""
    peer = await RawPeer.open(endpoint.port)
    try:
        await peer.handshake("shop")
        asks = [{"action": "ping"}] * 5 + [{"action": "connections", "offset": -1}, {"action": "connections", "limit": "x"}, {"action": "connect"}]
        asks.append({"action": "reindex"})  # a custom action, which nobody serves here: a request like any other
        for i, ask in enumerate(asks):
            peer.send(frame("request", "system", ask, app_id="shop", message_id=f"q{i}"))
            answer = await peer.recv_until(lambda m, i=i: m.reply_to == f"q{i}")  # type: ignore[misc]
            assert (answer.error is None) == (ask["action"] == "ping"), answer
        m = await scrape(endpoint.metrics.port)  # type: ignore[union-attr]
    finally:
        await peer.close()
    assert m["ipc_messages_total"].value(direction="out", type="response", app="shop") == 1 + 5 + 3 + 1  # the connect's reply, the pongs, the refusals
    assert {dict(labels)["outcome"]: n for (_, labels), n in m["ipc_requests_total"].samples.items()} == {"no_responders": 1}  # type: ignore[union-attr]
    assert m["ipc_request_duration_seconds"].value("_count", app="shop", channel="system") == 1  # the custom action alone


def _no_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return True
    return False


@pytest.mark.skipif(_no_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_the_printed_metrics_url_brackets_an_ipv6_host(spawn) -> None:
    srv = await spawn("-m", "ipc_server", "--port", "0", "--metrics-host", "::1", "--metrics-port", "0")
    line = (await asyncio.wait_for(asyncio.to_thread(srv.proc.stdout.readline), WAIT_S)).strip()
    url = line.removeprefix("ipc_server metrics on ")
    assert re.fullmatch(r"http://\[::1\]:\d+/metrics", url), line
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=WAIT_S) as reply:  # the URL as printed works
        assert reply.status == 200 and b"ipc_info" in reply.read()
