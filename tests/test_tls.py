"""TLS (docs/security.md §2): the core on bytes (a TLS record on a plaintext
port), the server's context and its refusals, and real TLS connections on
127.0.0.1 with throwaway CAs made by trustme: server-only and mutual TLS,
every refusal (wrong CA, wrong host name, expired, missing or foreign client
certificate, plaintext<->TLS both ways) surfacing as ``not_connected`` that
names TLS with the underlying error as ``__cause__``, within a few seconds,
while the server keeps serving everyone else, and the command line
(reconnection over TLS, the pool and the load-balanced client:
tests/test_tls_reconnection.py).

The connection tests run on asyncio and on uvloop (the server's TLS
handshake goes through ``loop.start_tls``, which the two implement apart).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from ipc_client import IPCClient
from ipc_client.tls import client_tls, refused
from ipc_protocol import ConnectionLost, FrameError, FrameTooLarge, NotConnected, encode_frame
from ipc_protocol.client_protocol import ClientProtocol
from ipc_protocol.framing import FrameDecoder, tls_record
from ipc_protocol.protocol import ProtocolState
from ipc_protocol.server_protocol import ServerProtocol
from ipc_server import IPCServer
from ipc_server.config import ServerConfig
from ipc_server.tls import handshake_timeout, peer_certificate, peer_subject, server_context

T = TypeVar("T")
FAST_S = 3.0  # "within a few seconds": every refusal, far below the 10 s connect timeout

# A TLS 1.2/1.3 ClientHello's first bytes: record type 22, version 3.1, then its length.
CLIENT_HELLO = bytes.fromhex("16030100f4010000f00303") + bytes(64)
# What a TLS server sends a plaintext client it refuses: a fatal protocol_version alert.
TLS_ALERT = bytes.fromhex("15030300020246")


# -- certificates ------------------------------------------------------------------


class PKI:
    """Throwaway CAs and certificates, as files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        ca, other = trustme.CA(organization_name="ipc-bridge tests"), trustme.CA(organization_name="someone else")
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
        self.ca = self._write("ca.pem", ca.cert_pem.bytes())
        self.other_ca = self._write("other-ca.pem", other.cert_pem.bytes())
        self.server = self._pair("server", ca.issue_cert("localhost", "127.0.0.1"))
        self.foreign_server = self._pair("foreign-server", other.issue_cert("localhost", "127.0.0.1"))
        self.expired_server = self._pair("expired-server", ca.issue_cert("localhost", "127.0.0.1", not_before=past, not_after=past + datetime.timedelta(days=1)))
        self.client = self._pair("alice", ca.issue_cert("alice@example.org", common_name="alice", organization_unit_name="payments"))
        self.foreign_client = self._pair("mallory", other.issue_cert("mallory@example.org", common_name="mallory"))
        self.expired_client = self._pair("old", ca.issue_cert("old@example.org", common_name="old", not_before=past, not_after=past + datetime.timedelta(days=1)))

    def _write(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def _pair(self, name: str, cert: trustme.LeafCert) -> tuple[str, str]:
        chain = b"".join(pem.bytes() for pem in cert.cert_chain_pems)
        return self._write(f"{name}.pem", chain), self._write(f"{name}.key", cert.private_key_pem.bytes())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    import uvloop

    return uvloop.new_event_loop


LOOPS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("uvloop", id="uvloop", marks=pytest.mark.skipif("uvloop" not in sys.modules and not __import__("importlib").util.find_spec("uvloop"), reason="uvloop not installed")),
]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[T]], T]]:
    """Runs a coroutine to completion on a fresh loop of the parametrised kind."""
    factory = None if request.param == "asyncio" else _uvloop_factory()

    def run(coro: Awaitable[T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]

    yield run


def tls_server(pki: PKI, *, mutual: bool = False, cert: tuple[str, str] | None = None, port: int = 0) -> IPCServer:
    cert_file, key_file = cert or pki.server
    server = IPCServer("127.0.0.1", port, tls_cert=cert_file, tls_key=key_file, tls_ca=pki.ca if mutual else None, shutdown_grace_s=0.2)

    @server.handler("echo")
    async def echo(msg: Any) -> Any:
        return msg.payload

    return server


async def expect_refusal(make: Callable[[], IPCClient]) -> NotConnected:
    """connect() fails fast with not_connected naming TLS; returns the error."""
    client = make()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(NotConnected) as info:
            await client.connect()
    finally:
        await client.disconnect()
    assert loop.time() - started < FAST_S
    error = info.value
    assert error.code == "not_connected"
    assert "TLS" in str(error)
    assert error.__cause__ is not None
    return error


async def still_serving(server: IPCServer, **tls: Any) -> None:
    """A well-configured client gets through after the refusals."""
    async with IPCClient("app", "127.0.0.1", server.port, reconnect=False, **tls) as good:
        assert await good.request("echo", {"ok": True}) == {"ok": True}


# -- the core, on bytes (docs/protocol.md §1.3) -------------------------------------


@pytest.mark.parametrize("split", [None, 1, 2, 3], ids=["whole", "byte-by-byte", "2+rest", "3+rest"])
def test_a_client_hello_on_a_plaintext_port_fails_the_handshake_without_a_frame(split: int | None) -> None:
    proto = ServerProtocol(server_name="test")
    chunks = [CLIENT_HELLO] if split is None else ([bytes([b]) for b in CLIENT_HELLO[:8]] if split == 1 else [CLIENT_HELLO[:split], CLIENT_HELLO[split:]])
    frames: list[bytes] = []
    for chunk in chunks:
        frames += proto.receive_data(chunk, 0.0)
        if proto.state is ProtocolState.ERROR:
            break
    assert frames == []
    assert proto.state is ProtocolState.ERROR
    assert proto.violation is not None and proto.violation.code == "bad_frame"
    assert "a TLS handshake on a plaintext port" in proto.violation.text
    assert proto.data_to_send() == []  # a TLS client could not read an error frame


def test_a_tls_alert_answering_a_plaintext_client_names_tls() -> None:
    proto = ClientProtocol("app", "c1", client="test")
    proto.connect()
    proto.data_to_send()
    assert proto.receive_data(TLS_ALERT, 0.0) == []
    assert proto.state is ProtocolState.ERROR
    assert proto.violation is not None and proto.violation.code == "bad_frame"
    assert "a TLS alert on a plaintext port" in proto.violation.text
    assert isinstance(proto.violation.error, FrameError)  # this side's own error: the peer sent no error frame


def test_only_the_first_bytes_of_a_stream_are_read_as_tls() -> None:
    connect = encode_frame(b'{"message_id":"m","app_id":"a","channel_id":"system","message_type":"request","payload":{"action":"connect"}}')
    decoder = FrameDecoder()
    assert len(decoder.feed(connect)) == 1
    with pytest.raises(FrameTooLarge):  # later, the same bytes are only a length prefix
        decoder.feed(CLIENT_HELLO)
    assert decoder.tls is False
    assert tls_record(b"\x16\x03\x05") is None and tls_record(b"\x17\x03\x03") is None and tls_record(b"\x00\x00\x00") is None
    assert tls_record(b"\x16\x03\x01") == "a TLS handshake"
    # The check costs nothing once decided: a frame split after its third byte still decodes.
    decoder = FrameDecoder()
    assert decoder.feed(connect[:3]) == [] and len(decoder.feed(connect[3:])) == 1


# -- settings ----------------------------------------------------------------------


def test_server_context_refuses_missing_mismatched_and_non_pem_files(pki: PKI, tmp_path: Path) -> None:
    cert, key = pki.server
    with pytest.raises(ValueError, match="tls_cert: no such file"):
        server_context(ServerConfig(tls_cert=str(tmp_path / "nope.pem"), tls_key=key))
    with pytest.raises(ValueError, match="does not match the certificate"):
        server_context(ServerConfig(tls_cert=cert, tls_key=pki.client[1]))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match="tls_ca .* must hold PEM CA certificates"):
        server_context(ServerConfig(tls_cert=cert, tls_key=key, tls_ca=str(junk)))
    assert server_context(ServerConfig()) is None
    context = server_context(ServerConfig(tls_cert=cert, tls_key=key, tls_ca=pki.ca))
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_the_tls_handshake_deadline_is_the_auth_or_handshake_timeout(pki: PKI) -> None:
    cert, key = pki.server
    assert handshake_timeout(ServerConfig(tls_cert=cert, tls_key=key, handshake_timeout_s=7)) == 7
    assert handshake_timeout(ServerConfig(tls_cert=cert, tls_key=key, token="t", auth_timeout_s=2)) == 2
    for name in ("handshake_timeout_s", "auth_timeout_s"):  # never unbounded: 0 is refused (tests/test_config_timeouts.py)
        with pytest.raises(ValueError, match=f"{name} must be more than 0"):
            ServerConfig(tls_cert=cert, tls_key=key, **{name: 0})


def test_client_tls_options_are_checked_at_construction(pki: PKI, tmp_path: Path) -> None:
    assert client_tls(None) is None and client_tls(False) is None
    with pytest.raises(ValueError, match="tls_ca need TLS"):
        IPCClient("app", tls=False, tls_ca=pki.ca)
    with pytest.raises(ValueError, match="load tls_ca into it"):
        IPCClient("app", tls=ssl.create_default_context(), tls_ca=pki.ca)
    with pytest.raises(ValueError, match="tls_key needs tls_cert"):
        IPCClient("app", tls_ca=pki.ca, tls_key=pki.client[1])
    with pytest.raises(ValueError, match="tls_ca: no such file"):
        IPCClient("app", tls_ca=str(tmp_path / "nope.pem"))
    with pytest.raises(TypeError):
        IPCClient("app", tls="yes")  # type: ignore[arg-type]
    options = client_tls(None, ca=pki.ca, server_hostname="localhost")  # any tls_* turns TLS on
    assert options is not None and options.server_hostname == "localhost"
    assert options.context.check_hostname and options.context.verify_mode is ssl.CERT_REQUIRED


# -- connections -------------------------------------------------------------------


def test_server_only_tls_round_trip_and_pub_sub(pki: PKI, run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with tls_server(pki) as server:
            async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca) as a, IPCClient("app", "localhost", server.port, tls_ca=pki.ca) as b:
                assert await a.request("echo", {"n": 1}) == {"n": 1}
                got: asyncio.Queue[Any] = asyncio.Queue()
                await b.subscribe("news.*", lambda msg: got.put_nowait(msg.payload))
                assert await a.publish("news.today", "hello", ack=True) == 1
                assert await asyncio.wait_for(got.get(), FAST_S) == "hello"
                (conn, *_) = server.connections
                assert peer_subject(conn.transport) is None  # no client certificate is asked for

    run(main())


def test_a_tls_connection_ends_without_an_asyncio_warning(pki: PKI, run: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """The client takes the server's EOF for the end (it aborts); over TLS a
    protocol returning True from eof_received() made asyncio warn at every
    close, the client's own and the server's."""

    async def main() -> None:
        async with tls_server(pki) as server:
            async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca) as client:
                assert await client.request("echo", 1) == 1
            kept = IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False)
            await kept.connect()
            lost = asyncio.Event()
            kept.on("disconnected", lambda *_: lost.set())
            for conn in server.connections:
                conn.close("test")
            await asyncio.wait_for(lost.wait(), FAST_S)
            await kept.disconnect()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(main())
    assert not [r for r in caplog.records if "eof_received" in r.getMessage()]


def test_mutual_tls_exposes_the_client_certificate_subject(pki: PKI, run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with tls_server(pki, mutual=True) as server:
            cert, key = pki.client
            async with IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, tls_cert=cert, tls_key=key) as client:
                assert await client.request("echo", [1, 2]) == [1, 2]
                (conn,) = server.connections
                subject = peer_subject(conn.transport)
                assert subject is not None and subject.startswith("CN=alice,OU=payments,O=")
                certificate = peer_certificate(conn.transport)
                assert certificate is not None and ("email", "alice@example.org") in certificate["subjectAltName"]

    run(main())


def test_a_missing_client_certificate_under_mutual_tls_is_refused_fast_and_final(pki: PKI, run: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        caplog.set_level(logging.INFO, logger="ipc_server.tls")
        async with tls_server(pki, mutual=True) as server:
            # TLS 1.3: the client's own handshake completes; the server's alert arrives on the first read.
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False))
            assert isinstance(error.__cause__, ssl.SSLError) and "CERTIFICATE_REQUIRED" in str(error.__cause__)
            assert "client certificate" in str(error)
            # Final: wait_on_first_connect stops at once instead of retrying.
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, wait_on_first_connect=True, initial_delay=0.01))
            assert refused(error)
            await still_serving(server, tls_ca=pki.ca, tls_cert=pki.client[0], tls_key=pki.client[1])
        assert any("TLS handshake with 127.0.0.1:" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)

    run(main())


@pytest.mark.parametrize("which", ["foreign", "expired"])
def test_a_refused_client_certificate_surfaces_as_tls_not_connected(pki: PKI, run: Callable[..., Any], which: str) -> None:
    async def main() -> None:
        cert, key = pki.foreign_client if which == "foreign" else pki.expired_client
        async with tls_server(pki, mutual=True) as server:
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, tls_cert=cert, tls_key=key, reconnect=False))
            assert isinstance(error.__cause__, ssl.SSLError) and "ALERT" in str(error.__cause__)
            assert refused(error)
            await still_serving(server, tls_ca=pki.ca, tls_cert=pki.client[0], tls_key=pki.client[1])

    run(main())


@pytest.mark.parametrize("case", ["wrong-ca", "system-store", "wrong-host", "expired"])
def test_a_refused_server_certificate_surfaces_as_tls_not_connected(pki: PKI, run: Callable[..., Any], case: str) -> None:
    async def main() -> None:
        async with tls_server(pki, cert=pki.expired_server if case == "expired" else None) as server:
            options: dict[str, Any] = {"tls_ca": pki.other_ca if case == "wrong-ca" else pki.ca}
            if case == "system-store":  # tls=True: the system's CAs, which never signed a trustme certificate
                options = {"tls": True}
            if case == "wrong-host":
                options["tls_server_hostname"] = "example.org"
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, reconnect=False, wait_on_first_connect=True, **options))
            cause = error.__cause__
            assert isinstance(cause, ssl.SSLCertVerificationError)
            expected = {"wrong-host": "Hostname mismatch", "expired": "certificate has expired"}.get(case, "unable to get local issuer certificate")
            assert expected in cause.verify_message and expected in str(error)
            assert refused(error)  # so wait_on_first_connect gave up at once
            if case != "expired":
                await still_serving(server, tls_ca=pki.ca)

    run(main())


def test_a_plaintext_client_on_a_tls_port_fails_fast_naming_tls(pki: PKI, run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with tls_server(pki) as server:
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, reconnect=False))
            assert isinstance(error.__cause__, ConnectionLost)
            assert "TLS port" in str(error)
            await still_serving(server, tls_ca=pki.ca)

    run(main())


def test_a_tls_client_on_a_plaintext_port_fails_fast_and_the_server_logs_it(pki: PKI, run: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        caplog.set_level(logging.INFO, logger="ipc_server.connection")
        async with IPCServer("127.0.0.1", 0) as server:
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", server.port, tls_ca=pki.ca, reconnect=False))
            assert isinstance(error.__cause__, (ConnectionResetError, ssl.SSLError))
            assert "does it speak TLS" in str(error)
            assert server.stats.snapshot()["errors"].get("bad_frame") == 1
            async with IPCClient("app", "127.0.0.1", server.port, reconnect=False) as plain:
                assert await plain.system("ping") is not None
        assert any("a TLS handshake on a plaintext port" in r.getMessage() for r in caplog.records)

    run(main())


@pytest.mark.parametrize("waiting", [False, True], ids=["once", "wait_on_first_connect"])
def test_a_tls_alert_answering_a_plaintext_client_is_final_and_names_tls(run: Callable[..., Any], waiting: bool) -> None:
    """Another TLS server answers the connect with a fatal alert (security.md
    §2.2): FrameError as the cause, and one attempt even when waiting."""

    async def main() -> None:
        attempts = 0

        async def answer_in_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal attempts
            attempts += 1
            await asyncio.wait_for(reader.read(1), FAST_S)  # the connect's first bytes
            writer.write(TLS_ALERT)
            await writer.drain()
            writer.close()

        alerting = await asyncio.start_server(answer_in_tls, "127.0.0.1", 0)
        port = alerting.sockets[0].getsockname()[1]
        options: dict[str, Any] = {"wait_on_first_connect": True, "max_retries": 5, "initial_delay": 0.01, "max_delay": 0.02} if waiting else {"reconnect": False}
        try:
            error = await expect_refusal(lambda: IPCClient("app", "127.0.0.1", port, **options))
        finally:
            alerting.close()
            await alerting.wait_closed()
        assert str(error).startswith(f"127.0.0.1:{port} answered in TLS and this client has TLS off (set tls): a TLS alert")
        assert isinstance(error.__cause__, FrameError) and error.__cause__.code == "bad_frame"
        assert refused(error) and attempts == 1

    run(main())


# -- the command line --------------------------------------------------------------


async def test_the_cli_serves_tls_and_refuses_a_key_that_does_not_match(pki: PKI, spawn: Callable[..., Any]) -> None:
    cert, key = pki.server
    srv = await spawn("-m", "ipc_server", "--port", "0", "--tls-cert", cert, "--tls-key", key, "--tls-ca", pki.ca)
    client_cert, client_key = pki.client
    async with IPCClient("app", "localhost", srv.port, tls_ca=pki.ca, tls_cert=client_cert, tls_key=client_key, reconnect=False) as client:
        assert (await client.system("stats"))["connections"] == 1

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ipc_server", "--port", "0", "--tls-cert", cert, "--tls-key", client_key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"invalid configuration: tls_key" in stderr and b"does not match" in stderr


def test_the_tls_cost_bench_runs(tmp_path: Path) -> None:
    """bench/tls_cost.py end to end (figures are never asserted: speed lives in bench/)."""
    import json
    import subprocess

    out = tmp_path / "tls.json"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "bench" / "tls_cost.py"), "--quick", "--loop", "asyncio", "--json", str(out)],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| asyncio | TLS / plain |" in proc.stdout
    figures = json.loads(out.read_text())["asyncio"]
    assert figures["tls"]["round_trips_per_s"] > 0 and figures["plain"]["connect_ms_p50"] > 0
