"""Users identified by their client certificate under mutual TLS
(docs/security.md §3): a ``cert_subject`` user is the connection whose
verified certificate has exactly that subject, with or without ``user`` in
the connect. Throwaway certificates from trustme; the real server, the
Python client (the Node client's test is in interop-tests/test_js_users.py)."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from ipc_client import IPCClient
from ipc_protocol import Forbidden, Unauthorized
from ipc_server import IPCServer
from ipc_server.tls import peer_subject

WAIT_S = 5.0

USERS = """
[users.alice]
cert_subject = "CN=alice, OU=dev, O=shop"   # as openssl -nameopt RFC2253 prints it
apps = ["shop"]
subscribe = ["orders.>"]

[users.bob]
cert_subject = "O = shop, OU = dev, CN = bob"   # the exact reverse (openssl's default line)
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
    for cert in ("bob", "mallory"):
        with pytest.raises(Unauthorized, match=r"^\[unauthorized\] invalid user or token$"):
            await connect(cert, user="alice")


@pytest.mark.parametrize("token", [None, "guess"], ids=["no token", "a token"])
async def test_a_certificate_user_without_its_certificate_is_refused_as_an_unknown_user(setup: Any, token: str | None) -> None:
    """The name of a certificate user does not show (docs/security.md §3.2):
    without its certificate it is refused as a name nobody has, after the
    same work (with a token, one check against the decoy each)."""
    server, _, connect = setup
    verifier = server._auth.verifier
    answers = []
    for user in ("alice", "nobody"):
        failed = verifier.failed
        with pytest.raises(Unauthorized) as info:
            await connect("bob", user=user, token=token)
        answers.append((info.value.code, str(info.value), verifier.failed - failed))
    assert answers[0] == answers[1] == ("unauthorized", "[unauthorized] invalid user or token", 0 if token is None else 1)


# Organization names and how `openssl x509 -noout -subject -nameopt RFC2253`
# prints them (checked against the command below when it is installed).
SPECIAL_VALUES = [
    ("R+D", "R\\+D"),
    ('Acme "Q"', 'Acme \\"Q\\"'),
    ("a;b", "a\\;b"),
    ("<x>", "\\<x\\>"),
    ("back\\slash", "back\\\\slash"),
    ("a,b", "a\\,b"),
    ("k=v", "k=v"),
    ("#hash", "\\#hash"),
    (" lead", "\\ lead"),
    ("trail ", "trail\\ "),
    ("école", "\\C3\\A9cole"),
    ("naïve ☃", "na\\C3\\AFve \\E2\\98\\83"),
    ("tab\tx", "tab\\09x"),
    ("R\\+D", "R\\\\\\+D"),
]


async def test_a_cert_subject_copied_from_openssl_matches_whatever_its_values_hold(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server_pem = tmp_path / "server.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    users, certs = [], []
    for i, (value, escaped) in enumerate(SPECIAL_VALUES):
        pem = tmp_path / f"u{i}.pem"
        ca.issue_cert(f"u{i}@example.org", common_name=f"u{i}", organization_name=value, organization_unit_name="dev").private_key_and_cert_chain_pem.write_to_path(str(pem))
        subject = f"CN=u{i},OU=dev,O={escaped}"
        if shutil.which("openssl"):
            printed = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-subject", "-nameopt", "RFC2253"], capture_output=True, text=True, timeout=WAIT_S)
            assert printed.stdout.removesuffix("\n") == f"subject={subject}"
        users.append(f"[users.u{i}]\ncert_subject = {json.dumps(subject)}\napps = [\"shop\"]\n")
        certs.append((pem, subject))
    # Literally R\+D: openssl prints it R\\\+D; it must not pass for the R+D user (u0).
    impostor = tmp_path / "impostor.pem"
    ca.issue_cert("x@example.org", common_name="u0", organization_name="R\\+D", organization_unit_name="dev").private_key_and_cert_chain_pem.write_to_path(str(impostor))
    path = tmp_path / "users.toml"
    path.write_text("\n".join(users[:-1]))  # the last (R\+D literally) has no user: the impostor's subject is nobody's
    async with IPCServer("127.0.0.1", 0, users_file=str(path), tls_cert=str(server_pem), tls_key=str(server_pem), tls_ca=str(ca_path)) as server:

        def client(pem: Path, **kwargs: Any) -> IPCClient:
            return IPCClient("shop", "localhost", server.port, tls_ca=str(ca_path), tls_cert=str(pem), reconnect=False, connect_timeout=WAIT_S, **kwargs)

        for i, (pem, subject) in enumerate(certs[:-1]):
            async with client(pem) as c:  # no user named: the certificate says who
                with pytest.raises(Forbidden, match=f"user 'u{i}' may not publish"):
                    await c.publish("x", 1, ack=True)
                assert subject in {peer_subject(conn.transport) for conn in server.connections}  # rendered as openssl does
        for name in (None, "u0"):
            with pytest.raises(Unauthorized, match="credentials required" if name is None else "invalid user or token"):
                await asyncio.wait_for(client(impostor, user=name).connect(), WAIT_S)


async def test_a_certificate_with_its_dc_values_reordered_is_not_the_user(tmp_path: Path) -> None:
    """A CA that signs for several teams: example.com's svc and a certificate
    for com.example's svc (the same attributes, DC values reordered) are two
    subjects, so the second never passes for the first; and a reload that
    reorders the user's cert_subject disconnects its connection."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from cryptography.x509.oid import NameOID

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject

    def issue(name: str, *dcs: str) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([*(x509.NameAttribute(NameOID.DOMAIN_COMPONENT, dc) for dc in dcs), x509.NameAttribute(NameOID.COMMON_NAME, "svc")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca._private_key, hashes.SHA256())
        )  # fmt: skip
        path = tmp_path / f"{name}.pem"
        path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) + cert.public_bytes(Encoding.PEM))
        return str(path)

    example, swapped = issue("example", "com", "example"), issue("swapped", "example", "com")  # X.500 order: DC=com first is example.com
    if shutil.which("openssl"):
        printed = subprocess.run(["openssl", "x509", "-in", example, "-noout", "-subject", "-nameopt", "RFC2253"], capture_output=True, text=True, timeout=WAIT_S)
        assert printed.stdout == "subject=CN=svc,DC=example,DC=com\n"
    users = tmp_path / "users.toml"
    users.write_text('[users.svc]\ncert_subject = "CN=svc,DC=example,DC=com"\napps = ["shop"]\npublish = [">"]\n')
    server_pem, ca_pem = str(tmp_path / "server.pem"), str(tmp_path / "ca.pem")
    async with IPCServer("127.0.0.1", 0, users_file=str(users), tls_cert=server_pem, tls_key=server_pem, tls_ca=ca_pem, shutdown_grace_s=0.5) as server:

        def client(pem: str, **kwargs: Any) -> IPCClient:
            return IPCClient("shop", "localhost", server.port, tls_ca=ca_pem, tls_cert=pem, reconnect=False, connect_timeout=WAIT_S, **kwargs)

        for name in (None, "svc"):
            with pytest.raises(Unauthorized, match="credentials required" if name is None else "invalid user or token"):
                await asyncio.wait_for(client(swapped, user=name).connect(), WAIT_S)
        async with client(example) as svc:
            assert await svc.publish("x", 1, ack=True) == 0
            gone = asyncio.Event()
            svc.on("disconnected", lambda *_: gone.set())
            users.write_text('[users.svc]\ncert_subject = "CN=svc,DC=com,DC=example"\napps = ["shop"]\npublish = [">"]\n')
            assert (await server.reload_users())["disconnected"] == 1  # another subject: the credential changed
            await asyncio.wait_for(gone.wait(), WAIT_S)
        async with client(swapped) as now_svc:  # the certificate the file now names
            assert await now_svc.publish("x", 1, ack=True) == 0
