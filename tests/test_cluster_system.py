"""Requests on ``system`` across cluster nodes through a real nats-server
(docs/cluster.md §2, §3; docs/protocol.md §8): an action that is not the
server's own reaches a client registered for exactly ``system`` on another
node, or an in-process ``system`` handler there; the server's own actions
stay with the requester's node, and a pattern never gets one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message, NoResponders
from ipc_server import IPCServer

from .nats_support import NatsServer, clients, nats, nodes, until  # noqa: F401 - fixtures

pytest.importorskip("nats")

Nodes = Callable[..., Awaitable[IPCServer]]
Clients = Callable[..., Awaitable[IPCClient]]


async def two_nodes(nodes: Nodes) -> tuple[IPCServer, IPCServer]:
    return await nodes("a"), await nodes("b")


async def test_a_system_responder_on_another_node_gets_the_actions_that_are_not_the_servers(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    caller, worker, everything = await clients(a.port), await clients(b.port), await clients(b.port)
    seen: list[Any] = []

    def system(msg: Message) -> Any:
        seen.append(msg.payload)
        return {"time": "2026-12-05T00:00:00Z"}

    await worker.serve("system", system)
    await everything.serve(">", lambda msg: "a pattern never gets system")
    assert await caller.request("system", {"action": "get_time"}) == {"time": "2026-12-05T00:00:00Z"}
    assert (await caller.system("ping"))["status"] == "pong"  # the server's own action: a's, never the responder's
    assert seen == [{"action": "get_time"}]
    await caller.notify("system", {"action": "audit"})
    await until(lambda: len(seen) == 2, "the notification on b")
    await worker.unserve("system")
    with pytest.raises(NoResponders):  # only the '>' pattern is left on b: it never gets system
        await caller.request("system", {"action": "get_time"})


async def test_an_in_process_system_handler_on_another_node_answers(nodes: Nodes, clients: Clients) -> None:
    a, b = await two_nodes(nodes)
    b.add_handler("system", lambda msg: {"node": "b", "action": msg.payload["action"]})
    await b.cluster.confirmed()
    caller = await clients(a.port)
    assert await caller.request("system", {"action": "whoami"}) == {"node": "b", "action": "whoami"}
    assert (await caller.system("ping"))["status"] == "pong"
