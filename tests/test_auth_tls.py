"""Users identified by their client certificate under mutual TLS
(docs/security.md §3): a ``cert_subject`` user is the connection whose
verified certificate has exactly that subject, with or without ``user`` in
the connect. Throwaway certificates from trustme; the real server, the
Python client (the Node client's test is in interop-tests/test_js_users.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from ipc_client import IPCClient
from ipc_protocol import Forbidden, Unauthorized
from ipc_server import IPCServer

WAIT_S = 5.0

USERS = """
[users.alice]
cert_subject = "CN=alice, O=shop, OU=dev"
apps = ["shop"]
subscribe = ["orders.>"]

[users.bob]
cert_subject = "CN=bob,O=shop,OU=dev"
apps = ["shop"]
publish = ["orders.>"]
"""


class PKI:
    """A CA, the server's certificate, and client certificates by name."""

    def __init__(self, root: Path) -> None:
        ca = trustme.CA(organization_name="ipc-bridge auth tests")
        self.root = root
        self.ca = self._write("ca.pem", ca.cert_pem.bytes())
        server = ca.issue_cert("localhost", "127.0.0.1")
        self.server_cert, self.server_key = self._pair("server", server)
        self.clients = {
            name: self._pair(name, ca.issue_cert(f"{name}@example.org", common_name=name, organization_name="shop", organization_unit_name="dev"))
            for name in ("alice", "bob", "mallory")
        }

    def _write(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def _pair(self, name: str, cert: trustme.LeafCert) -> tuple[str, str]:
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return self._write(f"{name}.pem", chain), self._write(f"{name}.key", cert.private_key_pem.bytes())


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[IPCServer, PKI, Any]]:
    pki = PKI(tmp_path)
    users = tmp_path / "users.toml"
    users.write_text(USERS)
    server = IPCServer("127.0.0.1", 0, users_file=str(users), tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=pki.ca, shutdown_grace_s=0.5)
    await server.start()
    clients: list[IPCClient] = []

    async def connect(name: str, **kwargs: Any) -> IPCClient:
        cert, key = pki.clients[name]
        client = IPCClient("shop", "localhost", server.port, tls_ca=pki.ca, tls_cert=cert, tls_key=key, reconnect=False, connect_timeout=WAIT_S, **kwargs)
        clients.append(client)
        await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    yield server, pki, connect
    for client in clients:
        await client.disconnect()
    await server.close()


async def test_the_certificate_subject_is_the_user(setup: Any) -> None:
    server, _, connect = setup
    alice = await connect("alice")  # no user named: the certificate says who
    await alice.subscribe("orders.>", lambda m: None)
    with pytest.raises(Forbidden, match="user 'alice' may not publish on 'orders.new'"):
        await alice.publish("orders.new", 1, ack=True)
    bob = await connect("bob", user="bob")  # naming the user is fine too
    assert await bob.publish("orders.new", 1, ack=True) == 1


async def test_a_certificate_is_not_another_users_credential(setup: Any) -> None:
    server, _, connect = setup
    with pytest.raises(Unauthorized, match="credentials required"):
        await connect("mallory")  # a valid certificate, but no user has its subject
    with pytest.raises(Unauthorized, match="user 'alice' needs its client certificate"):
        await connect("bob", user="alice")
    with pytest.raises(Unauthorized, match="user 'alice' needs its client certificate"):
        await connect("mallory", user="alice")
