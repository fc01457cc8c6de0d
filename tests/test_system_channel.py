"""The ``system`` channel shared as the legacy server shared it (docs/protocol.md
§8): the server answers its own actions, and any other action goes to
whoever serves exactly ``system`` in the app, over real loopback TCP."""

from __future__ import annotations

import asyncio

import pytest

from ipc_client import AlreadyServing, ConnectionPool, ErrorCode, Forbidden, IPCClient, NoResponders
from ipc_protocol import SERVER_SYSTEM_ACTIONS, is_servable

from .conftest import WAIT_S, frame


def test_only_system_itself_is_servable_among_reserved_channels() -> None:
    assert is_servable("system") and is_servable("orders.*") and is_servable(">")
    assert not any(is_servable(c) for c in ("system.x", "system.>", "$sys.services", "$sys.>"))
    assert SERVER_SYSTEM_ACTIONS == {"connect", "ping", "stats", "channels", "services", "describe", "connections"}


async def test_a_client_serving_system_answers_the_actions_the_server_does_not_have(make_client) -> None:
    worker = await make_client()
    seen: list[dict] = []

    def system(msg):
        seen.append(msg.payload)
        if msg.payload["action"] == "get_time":
            return {"time": "2026-12-05T00:00:00Z"}
        raise ValueError(f"unknown action {msg.payload['action']}")

    await worker.serve("system", system)
    caller = await make_client()
    assert await caller.request("system", {"action": "get_time"}) == {"time": "2026-12-05T00:00:00Z"}
    assert await caller.system("get_time") == {"time": "2026-12-05T00:00:00Z"}
    # The server's own actions stay the server's: the responder never sees them.
    assert await caller.system("ping") == {"status": "pong"}
    assert (await caller.system("services"))["services"] == {"system": 1}
    assert "connections" in await caller.system("stats")
    assert [p["action"] for p in seen] == ["get_time", "get_time"]
    with pytest.raises(Exception) as err:
        await caller.system("nope")
    assert err.value.code == ErrorCode.HANDLER_ERROR and "unknown action nope" in str(err.value)


async def test_without_a_system_responder_an_unknown_action_is_no_responders(make_client) -> None:
    caller = await make_client()
    with pytest.raises(NoResponders, match="'get_time'"):
        await caller.system("get_time")


async def test_system_actions_stay_within_the_app(make_client) -> None:
    worker = await make_client("app-a")
    await worker.serve("system", lambda msg: "from app-a")
    other = await make_client("app-b")
    with pytest.raises(NoResponders):
        await other.system("get_time")
    assert await (await make_client("app-a")).system("get_time") == "from app-a"


async def test_pattern_responders_and_handlers_never_receive_system_actions(server, make_client) -> None:
    @server.handler(">")
    async def everything(msg):
        return "pattern handler"

    worker = await make_client()
    await worker.serve("*", lambda msg: "pattern responder")
    caller = await make_client()
    assert await caller.request("orders", None) == "pattern handler"
    with pytest.raises(NoResponders):
        await caller.system("get_time")


async def test_an_in_process_system_handler_answers_before_responders(server, make_client) -> None:
    @server.handler("system")
    async def system(msg):
        return {"action": msg.payload["action"], "by": "server"}

    worker = await make_client()
    await worker.serve("system", lambda msg: {"by": "client"})
    caller = await make_client()
    assert await caller.system("get_time") == {"action": "get_time", "by": "server"}
    assert await caller.system("ping") == {"status": "pong"}


async def test_one_way_system_notifications_reach_the_responder(make_client) -> None:
    worker = await make_client()
    got: asyncio.Queue = asyncio.Queue()

    async def system(msg):
        got.put_nowait(msg.payload)

    await worker.serve("system", system)
    caller = await make_client()
    await caller.notify("system", {"action": "audit", "n": 1})
    assert await asyncio.wait_for(got.get(), WAIT_S) == {"action": "audit", "n": 1}


async def test_other_reserved_channels_still_cannot_be_served(server, make_client, raw) -> None:
    client = await make_client()
    offline = IPCClient("app", "127.0.0.1", server.port)  # never connected: refused all the same
    pool = ConnectionPool("app", "127.0.0.1", server.port)
    for channel in ("system.x", "$sys.services", "system.>"):
        # Forbidden, the server's answer (protocol.md §4.4), as publish() and
        # notify() raise it and Node's serve() rejects: never a ValueError.
        for c in (client, offline):
            with pytest.raises(Forbidden, match="reserved") as info:
                c.serve(channel, lambda msg: None)
            assert info.value.code == ErrorCode.FORBIDDEN
            assert channel not in c.get_connection_info()["services"]
        with pytest.raises(Forbidden, match="reserved"):
            await pool.serve(channel, lambda msg: None)  # before any member is opened
        with pytest.raises(ValueError, match="reserved"):
            server.add_handler(channel, lambda msg: None)
    assert pool.stats()["total_created"] == 0  # the pool opened no member to be told so
    await pool.close()
    peer = await raw()
    await peer.handshake()
    peer.send(frame("subscribe", "system.x", {"serve": True}, message_id="s1"))
    peer.send(frame("subscribe", "system", {"serve": True}, message_id="s2"))
    replies = {m.reply_to: m for m in [await peer.recv(), await peer.recv()]}
    assert replies["s1"].error.code == "forbidden"
    assert replies["s2"].payload == {"status": "serving"}
    with pytest.raises(Forbidden):
        await client.publish("system", {"action": "get_time"})


async def test_serving_a_channel_twice_raises_already_serving(make_client) -> None:
    client = await make_client()
    await client.serve("jobs", lambda msg: 1)
    with pytest.raises(AlreadyServing) as err:
        client.serve("jobs", lambda msg: 2)
    assert err.value.code == ErrorCode.ALREADY_SERVING and isinstance(err.value, ValueError)
    await client.unserve("jobs")
    await client.serve("jobs", lambda msg: 3)


async def test_health_check_is_a_boolean_and_health_has_the_details(server) -> None:
    client = IPCClient("app", "127.0.0.1", server.port, reconnect=False)
    assert await client.health_check() is False
    assert (await client.health())["state"] == "disconnected"
    async with client:
        assert await client.health_check() is True
        details = await client.health()
        assert details["healthy"] is True and details["latency_ms"] > 0 and details["protocol"] == 2
