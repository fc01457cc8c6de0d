"""A 1.1.x client that calls ``disconnect()`` then ``connect()`` on the same
object (docs/legacy.md, docs/protocol.md §3): its ``disconnect()`` closes the
socket while its receive thread is blocked in ``recv()``, so no FIN reaches
the server, and it reconnects with the same ``connection_id``. The new
connection replaces the old one, which is sent nothing more (a frame would
wake that thread, which would read on from the new socket) and is not closed
(its EOF would mark the client disconnected) until its peer closes it.

The peers are raw sockets writing the frames 1.1.2 writes (tests/v1_peer.py:
the real package is not needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipc_client import IPCClient
from ipc_server import IPCServer
from ipc_server.connection import ConnState
from ipc_server.users import hash_token

from .conftest import until
from .v1_peer import V1Peer


async def published(server: IPCServer, publisher: IPCClient, payload: Any) -> None:
    """Publish, then a round trip: whatever the publish sent has been written."""
    await publisher.publish("news", payload)
    await publisher.system("stats")


def by_id(server: IPCServer, connection_id: str) -> list[Any]:
    return sorted((c for c in server.connections if c.connection_id == connection_id), key=lambda c: c.connected_at)


async def test_a_version_1_reconnect_replaces_the_connection_it_left_open(server: IPCServer, make_client: Any) -> None:
    publisher = await make_client()
    old, reply = await V1Peer.connect(server.port, "c-1")
    assert reply["payload"]["connection_id"] == "c-1"
    await old.subscribe("news")
    await until(lambda: server.stats.subscriptions == 1)
    new, reply = await V1Peer.connect(server.port, "c-1")  # the old socket was never closed
    try:
        assert reply["payload"]["connection_id"] == "c-1"  # it was "c-1-<n>", the old connection kept and delivered to
        await new.subscribe("news")  # as 1.1.x's caller does again
        await published(server, publisher, {"n": 1})
        assert (await new.recv())["payload"] == {"n": 1}
        assert old.waiting() is None  # no byte, and no EOF: 1.1.x's old thread stays asleep
        assert new.waiting() is None  # once, not twice
        replaced, live = by_id(server, "c-1")
        assert live.state is ConnState.OPEN and set(live.subscriptions) == {"news"}
        assert replaced.state is not ConnState.OPEN and not replaced.subscriptions and not replaced.responder_for
        assert server.stats.subscriptions == 1
        rows = (await publisher.system("connections"))["connections"]
        assert [r["subscriptions"] for r in rows if r["connection_id"] == "c-1"] == [0, 1]  # the replaced one, until its peer closes it
        await old.send("news", "publish", {"n": "stale"})  # what it sends is dropped
        await published(server, publisher, {"n": 2})
        assert (await new.recv())["payload"] == {"n": 2}
    finally:
        old.close()
        await until(lambda: len(by_id(server, "c-1")) == 1)  # its peer closed it: gone
        new.close()


async def test_its_subscriptions_carry_over_as_the_1_1_2_server_kept_them(server: IPCServer, make_client: Any) -> None:
    publisher = await make_client()
    old, _ = await V1Peer.connect(server.port, "c-2")
    new = None
    try:
        await old.subscribe("news")
        await until(lambda: server.stats.subscriptions == 1)
        new, _ = await V1Peer.connect(server.port, "c-2")
        await published(server, publisher, {"n": 1})  # 1.1.x kept its handlers and does not subscribe again
        assert (await new.recv())["payload"] == {"n": 1}
        assert old.waiting() is None
    finally:
        old.close()
        if new is not None:
            new.close()


async def test_another_app_or_a_version_2_connect_does_not_replace(server: IPCServer, make_client: Any) -> None:
    publisher = await make_client()
    old, _ = await V1Peer.connect(server.port, "c-3")
    try:
        await old.subscribe("news")
        await until(lambda: server.stats.subscriptions == 1)
        other, reply = await V1Peer.connect(server.port, "c-3", app_id="other")
        other.close()
        assert reply["payload"]["connection_id"] != "c-3"
        v2, reply = await V1Peer.connect(server.port, "c-3", protocol=2)  # a version-2 collision: renamed, as ever
        v2.close()
        assert reply["payload"]["connection_id"] != "c-3"
        await published(server, publisher, {"n": 1})
        assert (await old.recv())["payload"] == {"n": 1}
    finally:
        old.close()


async def test_a_replaced_connection_counts_toward_max_connections_until_its_peer_closes_it() -> None:
    async with IPCServer("127.0.0.1", 0, max_connections=2, shutdown_grace_s=0.5) as server:
        old, _ = await V1Peer.connect(server.port, "c-4")
        new, reply = await V1Peer.connect(server.port, "c-4")
        assert reply["payload"]["connection_id"] == "c-4"
        third, reply = await V1Peer.connect(server.port, "c-5")
        third.close()
        assert reply["error"]["code"] == "too_many_connections"  # refused at accept: the version-2 error frame (§10)
        old.close()
        await until(lambda: len(server.connections) == 1)
        third, reply = await V1Peer.connect(server.port, "c-5")
        assert reply["payload"]["connection_id"] == "c-5"
        third.close()
        new.close()


async def test_never_one_users_connection_taken_by_another(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(f'[users.owner]\ntoken_hash = "{hash_token("t", log_n=4)}"\napps = ["app"]\n\n[users.anonymous]\napps = ["app"]\n')
    async with IPCServer("127.0.0.1", 0, users_file=str(path), shutdown_grace_s=0.5) as server:
        owner, reply = await V1Peer.connect(server.port, "c-6", user="owner", token="t")
        assert reply["payload"]["connection_id"] == "c-6"
        anonymous, reply = await V1Peer.connect(server.port, "c-6")
        assert reply["payload"]["connection_id"] != "c-6"
        assert [c.state for c in by_id(server, "c-6")] == [ConnState.OPEN]
        again, reply = await V1Peer.connect(server.port, "c-6", user="owner", token="t")  # the same user: replaced
        assert reply["payload"]["connection_id"] == "c-6" and owner.waiting() is None
        for peer in (owner, anonymous, again):
            peer.close()
