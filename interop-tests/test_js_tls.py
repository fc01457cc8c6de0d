"""The Node client over TLS against the real server (``python -m ipc_server
--tls-cert ... --tls-key ... [--tls-ca ...]``), with certificates made here
by trustme and handed to the Node agent as file paths (node/tls_files.js
reads them): server-only and mutual TLS, every refusal as
``not_connected`` naming TLS with the TLS error as ``.cause``, fast, and
final for waitOnFirstConnect; plaintext<->TLS both ways; reconnection
after a server restart; the pool and the load-balanced client."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, WAIT_S
from test_js_pool import all_ok, pool_agent  # noqa: F401 (a fixture)

import sys

sys.path.insert(0, str(ROOT))
from tests.test_tls import PKI  # noqa: E402  (the same throwaway CAs as the Python suite)
from tests.test_tls_version import CLIENT_WORDS  # noqa: E402  (the Python client's words, which Node's mirror)

FAST_MS = 3000  # "within a few seconds"
FAST = {"initialDelay": 50, "maxDelay": 200, "jitter": 0}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_args(pki: PKI, *, mutual: bool = False, cert: tuple[str, str] | None = None) -> list[str]:
    cert_file, key_file = cert or pki.server
    return ["--tls-cert", cert_file, "--tls-key", key_file, *(["--tls-ca", pki.ca] if mutual else [])]


def tls(pki: PKI, *, ca: str | None = None, client: tuple[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"caFile": ca or pki.ca, **extra}
    if client is not None:
        options["certFile"], options["keyFile"] = client
    return options


async def refused_connect(agent: Any) -> dict[str, Any]:
    """connect() settles fast with not_connected naming TLS; returns the error."""
    await agent.call("startConnect")
    done = await agent.wait_event("connectDone")
    assert done["ok"] is False, done
    assert done["elapsedMs"] < FAST_MS, done
    error = done["error"]
    assert (error["code"], error["name"]) == ("not_connected", "NotConnectedError"), error
    assert "TLS" in error["message"], error
    assert error["cause"], error
    return error


async def python_responder(py_client: Any, port: int, pki: PKI, **tls_options: Any) -> Any:
    py = await py_client(port, tls_ca=pki.ca, **tls_options)
    await py.serve("py.client.echo", lambda msg: msg.payload)
    return py


async def test_server_only_tls_requests_and_pub_sub(start_server, node_agent, py_client, pki):
    srv = await start_server(*server_args(pki))
    py = await python_responder(py_client, srv.port, pki)
    agent = await node_agent(srv.port, tls=tls(pki, servername="localhost"))
    reply = await agent.call("request", channel="py.client.echo", payload={"n": 1})
    assert reply["payload"] == {"n": 1}

    got: asyncio.Queue[Any] = asyncio.Queue()
    await py.subscribe("news.>", lambda msg: got.put_nowait(msg.payload))
    assert await agent.call("publish", channel="news.tls", payload="hello", ack=True) == {"delivered": 1}
    assert await asyncio.wait_for(got.get(), WAIT_S) == "hello"
    assert (await agent.call("info"))["state"] == "connected"


async def test_binary_payloads_cross_tls_both_ways(start_server, node_agent, py_client, pki):
    """Large binary frames over TLS, requests and streams: the server and
    the Python clients write them a window at a time, which a TLS
    transport once never resumed (tests/test_tls_binary.py)."""
    from test_js_binary import desc, pattern, spec

    srv = await start_server(*server_args(pki))
    await python_responder(py_client, srv.port, pki)
    agent = await node_agent(srv.port, tls=tls(pki, servername="localhost"))
    for size in (70_000, 3 * 1024 * 1024 + 5):
        got = await agent.call("binRequest", channel="py.client.echo", payload={"b": spec(size, 3), "n": size})
        assert got == {"b": desc(pattern(size, 3)), "n": size}
    # Streams of binary chunks, a Node producer to a Python consumer and back.
    chunk = 256 * 1024
    await agent.call("binServeStream", channel="node.file")
    consumer = await py_client(srv.port, tls_ca=pki.ca)
    items = [item async for item in consumer.stream("node.file", {"chunks": 6, "size": chunk}, window=2)]
    assert [item["data"] for item in items] == [pattern(chunk, i) for i in range(6)]

    async def chunks(msg: Any) -> Any:
        for i in range(msg.payload["chunks"]):
            yield pattern(msg.payload["size"], i)

    await consumer.serve("py.file", chunks)
    got = await agent.call("binStream", channel="py.file", payload={"chunks": 6, "size": chunk}, window=2)
    expected = hashlib.sha256(b"".join(pattern(chunk, i) for i in range(6))).hexdigest()
    assert got == {"types": ["Buffer"], "sizes": [chunk] * 6, "sha256": expected, "error": None}


async def test_mutual_tls(start_server, node_agent, py_client, pki):
    srv = await start_server(*server_args(pki, mutual=True))
    await python_responder(py_client, srv.port, pki, tls_cert=pki.client[0], tls_key=pki.client[1])
    agent = await node_agent(srv.port, tls=tls(pki, client=pki.client))
    assert (await agent.call("request", channel="py.client.echo", payload=[1]))["payload"] == [1]


async def test_a_missing_client_certificate_is_refused_fast_and_final(start_server, node_agent, py_client, pki):
    srv = await start_server(*server_args(pki, mutual=True))
    # TLS 1.3: Node's handshake completes; the server's alert is the error of the first read.
    agent = await node_agent(srv.port, connect=False, tls=tls(pki), waitOnFirstConnect=True, **FAST)
    error = await refused_connect(agent)
    assert error["cause"] == "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert "client certificate" in error["message"]
    assert agent.count("reconnecting") == 0  # final: no retry, as for a refused token
    assert (await agent.call("info"))["state"] == "disconnected"
    # The server keeps serving a client with a certificate.
    good = await node_agent(srv.port, tls=tls(pki, client=pki.client))
    assert (await good.call("system", action="ping")) is not None


@pytest.mark.parametrize(
    "case, cause",
    [
        ("wrong-ca", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
        ("system-store", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),  # tls: true, Node's CAs, which never signed a trustme certificate
        ("wrong-host", "ERR_TLS_CERT_ALTNAME_INVALID"),
        ("expired", "CERT_HAS_EXPIRED"),
        ("foreign-client", "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"),
        ("expired-client", "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED"),
    ],
)
async def test_refused_certificates_surface_as_tls_not_connected(start_server, node_agent, pki, case, cause):
    mutual = case.endswith("client")
    srv = await start_server(*server_args(pki, mutual=mutual, cert=pki.expired_server if case == "expired" else None))
    options = tls(
        pki,
        ca=pki.other_ca if case == "wrong-ca" else None,
        client={"foreign-client": pki.foreign_client, "expired-client": pki.expired_client}.get(case),
        **({"servername": "example.org"} if case == "wrong-host" else {}),
    )
    agent = await node_agent(srv.port, connect=False, tls=True if case == "system-store" else options, waitOnFirstConnect=True, **FAST)
    error = await refused_connect(agent)
    assert error["cause"] == cause
    assert agent.count("reconnecting") == 0


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_a_tls_1_1_client_is_refused_with_an_alert_and_not_retried(start_server, node_agent, pki, loop):
    """The server sends its protocol_version alert before closing (security.md
    §2): the client names it and waitOnFirstConnect stops at the first attempt."""
    srv = await start_server(*server_args(pki), "--loop", loop)
    options = tls(pki, minVersion="TLSv1", maxVersion="TLSv1.1", ciphers="DEFAULT:@SECLEVEL=0")
    agent = await node_agent(srv.port, connect=False, tls=options, waitOnFirstConnect=True, maxRetries=5, **FAST)
    error = await refused_connect(agent)
    assert error["cause"] == "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION", error
    assert "does it speak TLS" not in error["message"], error
    assert agent.count("reconnecting") == 0


NODE_CASES = {
    # case: (mutual, the Node client's tls options beyond the CA, its .cause)
    "tls_1_1": (False, {"minVersion": "TLSv1", "maxVersion": "TLSv1.1", "ciphers": "DEFAULT:@SECLEVEL=0"}, "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION"),
    "no_shared_cipher": (False, {"maxVersion": "TLSv1.2", "ciphers": "aNULL:@SECLEVEL=0"}, "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE"),
    "no_client_certificate_tls_1_2": (True, {"maxVersion": "TLSv1.2"}, "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE"),
    "no_client_certificate_tls_1_3": (True, {}, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"),
    "foreign_client_certificate": (True, {"client": "foreign"}, "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"),
}


@pytest.mark.parametrize("case", list(NODE_CASES))
async def test_the_server_s_alert_is_named_for_its_cause_in_the_python_client_s_words(start_server, node_agent, pki, case):
    """Real handshakes against the real server: the same words as the Python
    client's (tests/test_tls_version.py), tls.cert for tls_cert."""
    mutual, extra, cause = NODE_CASES[case]
    srv = await start_server(*server_args(pki, mutual=mutual))
    client = pki.foreign_client if extra.pop("client", None) == "foreign" else None
    agent = await node_agent(srv.port, connect=False, tls=tls(pki, client=client, **extra), reconnect=False)
    error = await refused_connect(agent)
    assert error["cause"] == cause, error
    words = CLIENT_WORDS[case][2].replace("tls_cert and tls_key", "tls.cert and tls.key")
    _, _, said = error["message"].partition(f"127.0.0.1:{srv.port} ")
    assert said.split(": ", 1)[1].startswith(words), error


async def test_a_plaintext_client_on_a_tls_port_fails_fast(start_server, node_agent, pki):
    srv = await start_server(*server_args(pki))
    agent = await node_agent(srv.port, connect=False, reconnect=False)
    error = await refused_connect(agent)
    assert "TLS port" in error["message"]


async def test_a_tls_client_on_a_plaintext_port_fails_fast(start_server, node_agent, py_client, pki):
    srv = await start_server()
    agent = await node_agent(srv.port, connect=False, tls=tls(pki), reconnect=False)
    error = await refused_connect(agent)
    assert error["cause"] == "ECONNRESET" and "does it speak TLS" in error["message"]
    plain = await py_client(srv.port)  # the server keeps serving
    assert (await plain.system("stats"))["errors"].get("bad_frame") == 1


async def test_reconnection_over_tls_after_a_server_restart(start_server, node_agent, pki):
    port = free_port()
    srv = await start_server(*server_args(pki, mutual=True), port=port)
    agent = await node_agent(port, tls=tls(pki, client=pki.client), **FAST)
    assert await agent.call("healthCheck") is True
    await srv.kill()
    await agent.wait_event("disconnected")
    await start_server(*server_args(pki, mutual=True), port=port)
    await agent.wait_event("reconnected")
    assert await agent.call("healthCheck") is True


async def test_the_pool_and_the_load_balanced_client_pass_tls_through(start_server, pool_agent, py_client, pki):  # noqa: F811
    one = await start_server(*server_args(pki, mutual=True))
    two = await start_server(*server_args(pki, mutual=True))
    for srv in (one, two):
        await python_responder(py_client, srv.port, pki, tls_cert=pki.client[0], tls_key=pki.client[1])
    options = {"tls": tls(pki, client=pki.client)}
    pool = await pool_agent(port=one.port, minConnections=1, maxConnections=3, **options)
    await pool.call("start")
    all_ok(await pool.call("burst", channel="py.client.echo", count=60, timeoutMs=5000), 60)
    balanced = await pool_agent("balanced", servers=[f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"], **options)
    await balanced.call("start")
    all_ok(await balanced.call("burst", channel="py.client.echo", count=60, timeoutMs=5000), 60)


async def test_the_load_balanced_client_s_start_names_tls_with_the_tls_error_as_its_cause(start_server, pool_agent, pki):  # noqa: F811
    # security.md §2.2 through start() (resilience.md §8), as the Python client: the first server's words, the TLS error as cause.
    srv = await start_server(*server_args(pki, cert=pki.foreign_server))
    balanced = await pool_agent("balanced", servers=[f"127.0.0.1:{srv.port}"], tls=tls(pki))
    error = await balanced.call_error("start")
    assert error["message"].startswith(f"no server could be reached: TLS handshake with 127.0.0.1:{srv.port} failed: the server's certificate was refused"), error
    assert error["cause"] == "UNABLE_TO_VERIFY_LEAF_SIGNATURE", error
