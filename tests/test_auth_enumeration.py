"""No user enumeration (docs/security.md §3.2): a connect naming a user
whose credential is missing or wrong is answered as one naming nobody, the
same code and text, after the same work: no check without a token, one
scrypt with the same parameters with one. The decoy an unknown name's
token is hashed against has the users file's parameters, made again on a
reload. Real server, real clients; the checks are recorded, never timed
(the certificate users' cases are in test_auth_tls.py)."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import RemoteError
from ipc_server import IPCServer
from ipc_server.decoy import decoy_hash, decoy_parameters
from ipc_server.users import hash_token, parse_users, verify_token
from ipc_server.verifier import Verifier

WAIT_S = 5.0


def token_user(name: str, log_n: int, r: int = 8) -> str:
    return f'[users.{name}]\ntoken_hash = "{hash_token(name + "-token", log_n=log_n, r=r)}"\napps = ["shop"]\n'


def parameters(stored: str) -> str:
    """``ln=4,r=8,p=1``: what a check against ``stored`` costs."""
    return stored.split("$")[2]


class Checks:
    """The verifier's check, recording the hash each token was checked against."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    def __call__(self, token: str, stored: str) -> bool:
        self.stored.append(stored)
        return verify_token(token, stored)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Callable[..., Any], Path]]:
    servers: list[IPCServer] = []
    path = tmp_path / "users.toml"

    async def start(text: str) -> tuple[IPCServer, Checks]:
        path.write_text(text)
        server = IPCServer("127.0.0.1", 0, users_file=str(path), shutdown_grace_s=0.5)
        await server.start()
        servers.append(server)
        checks = Checks()
        server._auth.verifier = Verifier(check=checks)  # type: ignore[union-attr]
        return server, checks

    yield start, path
    for server in servers:
        await server.close()


async def refusal(server: IPCServer, **credentials: Any) -> RemoteError:
    client = IPCClient("shop", "127.0.0.1", server.port, reconnect=False, connect_timeout=WAIT_S, **credentials)
    with pytest.raises(RemoteError) as info:
        await asyncio.wait_for(client.connect(), WAIT_S)
    await client.disconnect()
    return info.value


@pytest.mark.parametrize("token", [None, "guess"], ids=["no token", "a wrong token"])
async def test_a_known_user_is_refused_as_an_unknown_one_after_the_same_work(setup: Any, token: str | None) -> None:
    start, _ = setup
    server, checks = await start(token_user("alice", 4) + token_user("bob", 4))
    known = await refusal(server, user="alice", token=token)
    known_checks = list(checks.stored)
    unknown = await refusal(server, user="mallory", token=token)
    unknown_checks = checks.stored[len(known_checks) :]
    assert (type(known), known.code, str(known)) == (type(unknown), unknown.code, str(unknown))
    assert str(known) == "[unauthorized] invalid user or token"
    # The same work: nothing without a token; with one, one scrypt each, with the same parameters.
    assert len(known_checks) == len(unknown_checks) == (0 if token is None else 1)
    assert [parameters(s) for s in known_checks] == [parameters(s) for s in unknown_checks]


def users_of(text: str) -> Any:
    return parse_users(tomllib.loads(text))


def test_the_decoy_has_the_parameters_most_of_the_users_hashes_have() -> None:
    assert decoy_parameters(users_of(token_user("a", 5) + token_user("b", 5))) == (5, 8, 1)
    assert decoy_parameters(users_of(token_user("a", 4) + token_user("b", 4) + token_user("c", 6))) == (4, 8, 1)
    assert decoy_parameters(users_of(token_user("a", 4) + token_user("b", 6))) == (6, 8, 1)  # a tie: the costlier
    assert decoy_parameters(users_of(token_user("a", 4, r=16) + token_user("b", 5, r=4))) == (4, 16, 1)
    # No token users: hash-token's default (a certificate user's name with a token is checked against it).
    no_tokens = '[users.anonymous]\napps = ["public"]\n[users.dash]\ncert_subject = "CN=dash"\napps = ["*"]\n'
    assert decoy_parameters(users_of(no_tokens)) == (14, 8, 1)
    users = users_of(token_user("a", 7))
    decoy = decoy_hash(users)
    assert parameters(decoy) == "ln=7,r=8,p=1" and decoy != decoy_hash(users)  # a fresh salt each time
    assert not verify_token("a-token", decoy)


async def test_the_decoy_follows_the_users_file_across_a_reload(setup: Any) -> None:
    start, path = setup
    server, checks = await start(token_user("alice", 5))
    assert parameters(server._auth.decoy) == "ln=5,r=8,p=1"
    await refusal(server, user="mallory", token="guess")
    path.write_text(token_user("alice", 6) + token_user("bob", 6))
    await server.reload_users()
    assert parameters(server._auth.decoy) == "ln=6,r=8,p=1"
    await refusal(server, user="mallory", token="guess")
    await refusal(server, user="alice", token="guess")
    assert [parameters(s) for s in checks.stored] == ["ln=5,r=8,p=1", "ln=6,r=8,p=1", "ln=6,r=8,p=1"]
