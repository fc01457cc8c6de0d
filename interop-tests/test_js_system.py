"""The shared `system` channel across languages (docs/protocol.md §8): the
server answers its own actions; any other action goes to whoever serves
`system` in the app, a Node client or a Python one; nobody: no_responders.
The Node client keeps answering the server's pings itself."""

from __future__ import annotations

import pytest

from conftest import WAIT_S


async def test_node_serves_system_for_a_python_caller(server, node_agent, py_client):
    node = await node_agent(server.port)
    await node.call("serve", channel="system", kind="clock")
    py = await py_client(server.port)

    answer = await py.system("get_time", timeout=WAIT_S)
    assert answer["by"] == "node" and answer["time"] > 0
    served = await node.wait_event("served", lambda e: e["channel"] == "system")
    assert served["request"]["channel_id"] == "system"
    # The legacy spelling: a request on `system` with the action in the payload.
    resp = await py.send_request("system", {"action": "get_time"}, timeout=WAIT_S)
    assert resp.payload["by"] == "node"
    # The server's own actions never reach the responder.
    assert (await py.system("ping", timeout=WAIT_S)) == {"status": "pong"}
    assert "connections" in await py.system("stats", timeout=WAIT_S)
    served_actions = [e for e in node.events if e["event"] == "served" and e["channel"] == "system"]
    assert len(served_actions) == 2
    # A failing action is the responder's handler_error, with its type.
    from ipc_client import HandlerError

    with pytest.raises(HandlerError) as info:
        await py.system("reboot", timeout=WAIT_S)
    assert info.value.remote_type == "RangeError"
    # The Node responder stays connected: the server's heartbeats are answered by the client.
    assert (await node.call("health"))["healthy"] is True

    await node.call("unserve", channel="system")
    from ipc_client import NoResponders

    with pytest.raises(NoResponders):
        await py.system("get_time", timeout=WAIT_S)


async def test_python_serves_system_for_a_node_caller(server, node_agent, py_client):
    py = await py_client(server.port)
    await py.serve("system", lambda msg: {"time": 1700000000.5, "by": "python", "action": msg.payload["action"]})
    node = await node_agent(server.port)

    assert await node.call("system", action="get_time") == {"time": 1700000000.5, "by": "python", "action": "get_time"}
    resp = await node.call("request", channel="system", payload={"action": "get_time"})
    assert resp["payload"]["by"] == "python"
    assert (await node.call("system", action="ping")) == {"status": "pong"}  # the server's, not Python's
    services = await node.call("system", action="services")
    assert services["services"]["system"] == 1


async def test_system_without_a_responder_and_reserved_channels_from_node(server, node_agent):
    node = await node_agent(server.port)
    assert (await node.call_error("system", action="get_time"))["code"] == "no_responders"
    for channel in ("system.x", "$sys.services", "system.>"):
        err = await node.call_error("serve", channel=channel, kind="echo")
        assert (err["code"], err["name"]) == ("forbidden", "ForbiddenError"), channel
    await node.call("serve", channel="system", kind="clock")
    err = await node.call_error("serve", channel="system", kind="clock")
    assert (err["code"], err["name"]) == ("already_serving", "AlreadyServingError")
