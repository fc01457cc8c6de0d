"""``describe`` on a cluster node (docs/cluster.md §4, docs/typed-contracts.md
§4, docs/protocol.md §8) through a real nats-server: every node's channels
with the schemas the node serving them publishes, this node's where it
serves one too, a page of each node's table as ``services`` pages, the
users-file filter on the other nodes' channels, and a node that does not
answer left out within the bound."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from ipc_client import IPCClient
from ipc_protocol.contracts import ANY_SCHEMA
from ipc_server import IPCServer
from ipc_server.users import hash_token

from .nats_support import NatsServer, clients, nats, nodes, until  # noqa: F401 - fixtures
from .test_cluster_members import raw_member

pytest.importorskip("nats")

Nodes = Callable[..., Awaitable[IPCServer]]
Clients = Callable[..., Awaitable[IPCClient]]


class Order(BaseModel):
    sku: str
    qty: int


def order(o: Order) -> int:
    return o.qty


def as_text(s: str) -> str:
    return s


def as_number(n: int) -> int:
    return n


async def joined(*servers: IPCServer) -> None:
    names = {s.cluster.name for s in servers}
    await until(lambda: all(set(s.cluster.members.alive()) == names - {s.cluster.name} for s in servers), "every node hears the others")


async def test_describe_on_one_node_lists_the_channels_of_every_node_with_their_schemas(nodes: Nodes, clients: Clients) -> None:
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    b.add_handler("b.inproc", order)
    await b.cluster.confirmed()
    on_a, on_b, on_c = await clients(a.port), await clients(b.port), await clients(c.port)
    await on_b.serve("b.pyresp", order)
    await on_b.serve("b.plain", lambda msg: None)  # untyped: anything
    # One channel on every node, each with schemas of its own.
    await on_a.serve("both.x", as_text)
    await on_b.serve("both.x", as_number)
    await on_c.serve("both.x", order)
    await on_c.serve("c.only", as_text)
    await joined(a, b, c)
    caller = await clients(a.port)

    on_b_itself = (await (await clients(b.port)).system("describe"))["channels"]
    described = await caller.system("describe")
    channels = described["channels"]
    assert sorted(channels) == ["b.inproc", "b.plain", "b.pyresp", "both.x", "c.only"]
    assert described["missing"] == [] and "total" not in described  # every table fits the default page
    for channel in ("b.inproc", "b.pyresp", "b.plain"):  # as b publishes them
        assert channels[channel] == on_b_itself[channel], channel
    assert channels["b.inproc"]["request"]["title"] == "Order"
    assert channels["b.plain"] == {"request": ANY_SCHEMA, "response": ANY_SCHEMA}
    assert channels["c.only"]["request"] == {"type": "string"}
    assert channels["both.x"]["request"] == {"type": "string"}  # a's own: a request made on a runs there
    from_c = (await (await clients(c.port)).system("describe"))["channels"]
    assert from_c["both.x"]["request"]["title"] == "Order"  # c's own there
    assert from_c["b.pyresp"] == on_b_itself["b.pyresp"] and from_c["c.only"]["request"] == {"type": "string"}
    await on_a.unserve("both.x")  # served on b and c only: the first of them by name, b
    assert (await caller.system("describe"))["channels"]["both.x"]["request"] == {"type": "integer"}


async def test_describe_pages_each_nodes_table_as_services_does(nodes: Nodes, clients: Clients) -> None:
    a, b = await nodes("a"), await nodes("b")
    on_a, on_b = await clients(a.port), await clients(b.port)
    await on_a.serve("a.one", as_text)
    for name in ("b.one", "b.two", "b.three"):
        await on_b.serve(name, as_number)
    await joined(a, b)
    caller = await clients(a.port)

    first = await caller.system("describe", params={"limit": 2})
    services = await caller.system("services", params={"limit": 2})
    assert sorted(first["channels"]) == sorted(services["services"]) == ["a.one", "b.one", "b.two"]
    assert (first["total"], first["offset"], first["limit"]) == (services["total"], 0, 2) == (3, 0, 2)
    second = await caller.system("describe", params={"offset": 2, "limit": 2})
    assert sorted(second["channels"]) == ["b.three"] and second["channels"]["b.three"]["request"] == {"type": "integer"}
    assert (second["total"], second["offset"]) == (3, 2)
    assert "nodes" not in first  # each channel's schemas once


ALICE = hash_token("alice-token", log_n=4)
BOB = hash_token("bob-token", log_n=4)
USERS = f"""
[users.alice]
token_hash = "{ALICE}"
apps = ["shop"]
serve = []
request = {{ allow = [">"], deny = ["admin.>"] }}

[users.bob]
token_hash = "{BOB}"
apps = ["shop"]
serve = [">"]
request = [">"]
"""


async def test_with_users_describe_shows_the_other_nodes_channels_the_caller_may_request(nodes: Nodes, tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text(USERS)
    a, b = await nodes("a", users_file=str(users)), await nodes("b", users_file=str(users))
    b.add_handler("admin.reset", as_text, app_id="shop")  # alice: request denies admin.>
    b.add_handler("orders.count", order, app_id="shop")
    await b.cluster.confirmed()
    made: list[IPCClient] = []

    async def connect(node: IPCServer, user: str) -> IPCClient:
        client = IPCClient("shop", "127.0.0.1", node.port, user=user, token=f"{user}-token", reconnect=False)
        made.append(client)
        await client.connect()
        return client

    try:
        worker = await connect(b, "bob")
        await worker.serve("admin.tools.*", as_number)
        await worker.serve("inventory.*", as_number)
        await joined(a, b)
        alice, bob = await connect(a, "alice"), await connect(a, "bob")
        assert sorted((await alice.system("describe"))["channels"]) == ["inventory.*", "orders.count"]
        assert sorted((await bob.system("describe"))["channels"]) == ["admin.reset", "admin.tools.*", "inventory.*", "orders.count"]
        page = await alice.system("describe", params={"limit": 1})  # a page: its entries alice may request
        assert page["total"] == 4 and set(page["channels"]) <= {"inventory.*", "orders.count"}
    finally:
        for client in made:
            await client.disconnect()


async def test_a_node_that_does_not_answer_is_left_out_within_the_bound(nats: NatsServer, nodes: Nodes, clients: Clients) -> None:  # noqa: F811
    a = await nodes("a")
    own = await clients(a.port)
    await own.serve("a.one", as_text)
    async with raw_member(nats, "quiet", "quiet~00000000", answers=False):
        await until(lambda: a.cluster.members.alive() == ["quiet"], "a hears the silent member")
        started = time.monotonic()
        described = await own.system("describe")
        waited = time.monotonic() - started
    assert described["missing"] == ["quiet"] and sorted(described["channels"]) == ["a.one"]
    assert waited < 3.0  # the 1 s bound of every cluster-wide answer, not the request's timeout
    assert isinstance(described["channels"]["a.one"], dict) and described["channels"]["a.one"]["request"] == {"type": "string"}


async def test_a_page_over_nats_max_payload_leaves_its_node_out_and_a_smaller_one_fits(tmp_path: Path, clients: Clients) -> None:  # noqa: F811
    from .nats_support import nats_server_binary

    binary = nats_server_binary()
    if binary is None:
        pytest.skip("no nats-server")
    config = tmp_path / "nats.conf"
    config.write_text("max_payload: 16384\n")
    small = await NatsServer(binary, str(config)).start()
    started: list[IPCServer] = []
    try:
        for name in ("a", "b"):
            node = IPCServer("127.0.0.1", 0, cluster=(small.url,), node_name=name, shutdown_grace_s=0.5, no_responders_grace_s=0)
            await node.start()
            started.append(node)
        a, b = started
        for i in range(128):  # ~230 bytes each: a page of 128 is over 16 KiB, one of 16 is not
            b.add_handler(f"b.typed.{i}", order)
        await b.cluster.confirmed()
        await joined(a, b)
        caller = await clients(a.port)
        whole = await caller.system("describe")
        assert whole["missing"] == ["b"] and whole["channels"] == {}
        page = await caller.system("describe", params={"limit": 16})
        assert page["missing"] == [] and len(page["channels"]) == 16 and page["total"] == 128
    finally:
        for node in started:
            await node.close()
        await small.stop()
