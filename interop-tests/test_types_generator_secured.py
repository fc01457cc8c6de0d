"""``ipc-bridge-types`` (js-client/bin/ipc-bridge-types.js) against a real
server that asks for a user and for TLS (docs/typed-contracts.md §5):
``--user``, ``--token-file`` and ``--tls``, ``--tls-ca``, ``--tls-cert``,
``--tls-key``, ``--tls-server-hostname``, the flags of ``python -m
ipc_server stats``, reach the client; what is missing is the server's
refusal, exit status 1. Certificates: tests/test_tls.py's throwaway ones."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, WAIT_S
from ipc_server.users import hash_token

sys.path.insert(0, str(ROOT))
from tests.test_tls import PKI  # noqa: E402

GENERATOR = ROOT / "js-client" / "bin" / "ipc-bridge-types.js"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


async def generate(node: str, *args: str) -> tuple[int, str]:
    """Runs the generator; its exit status and standard error."""
    proc = await asyncio.create_subprocess_exec(node, str(GENERATOR), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_server_with_a_users_file_over_mutual_tls(start_server: Any, node: str, pki: PKI, tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'[users.alice]\ntoken_hash = "{hash_token("alice-token", log_n=4)}"\napps = ["shop"]\nrequest = [">"]\n')
    token_file = tmp_path / "alice.token"
    token_file.write_text("alice-token\n")
    server = await start_server("--users", str(users), "--tls-cert", pki.server[0], "--tls-key", pki.server[1], "--tls-ca", pki.ca)
    live = ["--port", str(server.port), "--app", "shop", "--timeout", "5000"]
    client_cert = ["--tls-cert", pki.client[0], "--tls-key", pki.client[1]]
    out = tmp_path / "shop-api.d.ts"

    status, err = await generate(node, *live, "--user", "alice", "--token-file", str(token_file), "--tls-ca", pki.ca, *client_cert, "--out", str(out))
    assert status == 0, err
    assert "channels written" in err and "interface ShopApi" in out.read_text()
    # the same with the token on the command line, and the name the certificate carries given
    args = [*live, "--user", "alice", "--token", "alice-token", "--tls-ca", pki.ca, *client_cert]
    status, err = await generate(node, *args, "--tls-server-hostname", "localhost", "--out", str(out))
    assert status == 0, err
    both = tmp_path / "alice-both.pem"  # one file with the certificate and its key: --tls-key left out
    both.write_text(Path(pki.client[0]).read_text() + Path(pki.client[1]).read_text())
    status, err = await generate(node, *live, "--user", "alice", "--token-file", str(token_file), "--tls-ca", pki.ca, "--tls-cert", str(both), "--out", str(out))
    assert status == 0, err

    refused = {
        "no user": [*live, "--token-file", str(token_file), "--tls-ca", pki.ca, *client_cert],
        "no TLS": [*live, "--user", "alice", "--token-file", str(token_file)],
        "no client certificate": [*live, "--user", "alice", "--token-file", str(token_file), "--tls-ca", pki.ca],
        "another name": [*args, "--tls-server-hostname", "elsewhere.example"],
    }
    for case, argv in refused.items():
        status, err = await generate(node, *argv)
        assert status == 1 and "ipc-bridge-types: [" in err, (case, err)
    assert "unauthorized" in (await generate(node, *refused["no user"]))[1]


async def test_bad_tls_and_token_flags_are_usage_errors(node: str, pki: PKI, tmp_path: Path) -> None:
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    for argv, text in [
        (["--tls-key", pki.client[1]], "--tls-key needs --tls-cert"),
        (["--token", "t", "--token-file", str(empty)], "not both"),
        (["--token-file", str(empty)], "is empty"),
    ]:
        status, err = await generate(node, "--app", "shop", "--port", "1", *argv)
        assert status == 2 and text in err, (argv, err)
