"""Request/response across languages through the real server: Node -> Python
in-process handlers, Python client -> Node responder, Node -> Node and
Python -> Python, and errors crossing in both directions (docs/protocol.md §6, §7)."""

from __future__ import annotations

import asyncio

import pytest

from ipc_protocol.exceptions import HandlerError, NoResponders, RequestTimeout, ResponderLost

from conftest import WAIT_S


async def test_node_calls_python_in_process_handler(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    res = await agent.call("request", channel="py.add", payload={"a": 2, "b": 40})
    assert res["payload"] == 42
    res = await agent.call("request", channel="py.echo", payload={"nested": [1, {"x": None}], "s": "é"})
    assert res["payload"] == {"nested": [1, {"x": None}], "s": "é"}


async def test_node_calls_python_pattern_handler(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    assert (await agent.call("request", channel="py.pattern.anything", payload=None))["payload"] == "py.pattern.anything"


async def test_python_exception_arrives_in_node_as_handler_error(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    err = await agent.call_error("request", channel="py.fail", payload="the value was bad")
    assert err["code"] == "handler_error"
    assert err["name"] == "HandlerError"
    assert err["remoteType"] == "ValueError"
    assert err["message"] == "the value was bad"
    err = await agent.call_error("request", channel="py.key_error", payload=None)
    assert (err["code"], err["remoteType"]) == ("handler_error", "KeyError")


async def test_node_request_carries_deadline_and_headers_to_python(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    res = await agent.call("request", channel="py.meta", payload=None, timeoutMs=4000, headers={"trace": "t-1"})
    meta = res["payload"]
    assert meta["headers"].pop("traceparent").startswith("00-")  # docs/tracing.md
    assert meta["headers"] == {"trace": "t-1"}
    assert 3000 < meta["timeout_ms"] <= 4000


async def test_node_request_times_out_on_a_slow_python_handler(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    err = await agent.call_error("request", channel="py.slow", payload=5, timeoutMs=300)
    assert err["code"] == "timeout"


async def test_server_timeout_arriving_after_the_local_timeout_is_not_an_error_event(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    err = await agent.call_error("request", channel="py.slow", payload=5, timeoutMs=300)
    assert err["code"] == "timeout"
    # The server answers `timeout` itself at its own deadline, a little after
    # the client's. Once its stats count it, that frame was written before
    # the stats reply, so Node has read it by the time the reply arrives.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while (await agent.call("request", channel="system", payload={"action": "stats"}))["payload"]["errors"].get("timeout", 0) < 1:
        assert loop.time() < deadline, "the server never answered timeout"
    assert agent.count("error") == 0, [e for e in agent.events if e["event"] == "error"]


async def test_node_serving_a_channel_twice_is_refused_and_keeps_the_first_handler(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="dup.add", kind="add")
    err = await agent.call_error("serve", channel="dup.add", kind="echo")
    assert "already serving 'dup.add'; unserve() it first" in err["message"]  # worded as Python words it
    py = await py_client(server.port)
    assert (await py.send_request("dup.add", {"a": 1, "b": 2}, timeout=WAIT_S)).payload == 3
    await agent.call("unserve", channel="dup.add")
    await agent.call("serve", channel="dup.add", kind="echo")  # allowed again after unserve
    assert (await py.send_request("dup.add", "again", timeout=WAIT_S)).payload == "again"


async def test_no_responders_reaches_node(server, node_agent):
    agent = await node_agent(server.port)
    err = await agent.call_error("request", channel="nobody.home", payload=1)
    assert err["code"] == "no_responders"
    assert err["name"] == "NoRespondersError"


async def test_reserved_channel_is_forbidden_for_node(server, node_agent):
    agent = await node_agent(server.port)
    err = await agent.call_error("serve", channel="$sys.mine", kind="echo")
    assert err["code"] == "forbidden"
    # The refused registration is forgotten, and the connection still works.
    assert "$sys.mine" not in (await agent.call("info"))["responders"]
    assert (await agent.call("health"))["healthy"] is True


async def test_python_client_calls_node_responder(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="node.add", kind="add")
    await agent.call("serve", channel="node.meta", kind="meta")
    py = await py_client(server.port)
    res = await py.send_request("node.add", {"a": 20, "b": 22}, timeout=WAIT_S)
    assert res.payload == 42
    res = await py.send_request("node.meta", None, timeout=3.0, headers={"k": "v"})
    assert res.payload["by"] == "node"
    assert res.payload["headers"].pop("traceparent").startswith("00-")  # docs/tracing.md
    assert res.payload["headers"] == {"k": "v"}
    assert 2000 < res.payload["timeout_ms"] <= 3000


async def test_node_error_arrives_in_python_as_handler_error(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="node.type_error", kind="throw", errorType="TypeError", message="expected a number")
    await agent.call("serve", channel="node.range_error", kind="reject", errorType="RangeError", message="too big")
    py = await py_client(server.port)
    with pytest.raises(HandlerError) as info:
        await py.send_request("node.type_error", "x", timeout=WAIT_S)
    assert info.value.code == "handler_error"
    assert info.value.remote_type == "TypeError"
    assert info.value.message == "expected a number"
    with pytest.raises(HandlerError) as info:
        await py.send_request("node.range_error", 1, timeout=WAIT_S)
    assert (info.value.remote_type, info.value.message) == ("RangeError", "too big")


async def test_a_node_result_that_cannot_be_sent_arrives_in_python_as_handler_error(server, node_agent, py_client):
    """The handler's failure, as a Python responder answers it, not the requester's bad_message."""
    agent = await node_agent(server.port)
    await agent.call("serve", channel="node.bigint", kind="bigint")
    py = await py_client(server.port)
    with pytest.raises(HandlerError) as info:
        await py.send_request("node.bigint", None, timeout=WAIT_S)
    assert (info.value.code, info.value.remote_type) == ("handler_error", "MessageError")
    assert "BigInt" in info.value.message


async def test_node_responder_pattern_serves_python(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="calc.>", kind="meta")
    py = await py_client(server.port)
    res = await py.send_request("calc.eu.double", 1, timeout=WAIT_S)
    assert res.payload["channel"] == "calc.eu.double"


async def test_node_to_node_through_the_server(server, node_agent):
    responder = await node_agent(server.port)
    requester = await node_agent(server.port)
    await responder.call("serve", channel="n2n.echo", kind="echo")
    res = await requester.call("request", channel="n2n.echo", payload={"hello": "node"})
    assert res["payload"] == {"hello": "node"}
    served = await responder.wait_event("served")
    assert served["request"]["channel_id"] == "n2n.echo"
    assert served["request"]["timeout_ms"] > 0


async def test_python_to_python_through_the_server(server, py_client):
    responder = await py_client(server.port)
    requester = await py_client(server.port)

    async def double(msg):
        return msg.payload * 2

    await responder.serve("p2p.double", double)
    assert (await requester.send_request("p2p.double", 21, timeout=WAIT_S)).payload == 42


async def test_python_request_to_unregistered_node_responder_is_no_responders(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="gone.soon", kind="echo")
    await agent.call("unserve", channel="gone.soon")
    py = await py_client(server.port)
    with pytest.raises(NoResponders):
        await py.send_request("gone.soon", 1, timeout=WAIT_S)


async def test_node_responder_dying_mid_request_gives_python_responder_lost(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="node.hang", kind="hang")
    py = await py_client(server.port)
    call = asyncio.ensure_future(py.send_request("node.hang", 1, timeout=30))
    await agent.wait_event("served")
    await agent.close()
    with pytest.raises(ResponderLost):
        await asyncio.wait_for(call, WAIT_S)


async def test_python_responder_timeout_reaches_node(server, node_agent, py_client):
    py = await py_client(server.port)

    async def slow(msg):
        await asyncio.sleep(5)

    await py.serve("py.client.slow", slow)
    agent = await node_agent(server.port)
    err = await agent.call_error("request", channel="py.client.slow", payload=None, timeoutMs=300)
    assert err["code"] == "timeout"
    with pytest.raises(RequestTimeout):
        await py.send_request("py.client.slow", None, timeout=0.2)


async def test_node_reads_system_services_and_channels(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    await agent.call("serve", channel="node.svc", kind="echo")
    await agent.call("subscribe", channel="feed.>")
    services = (await agent.call("request", channel="system", payload={"action": "services"}))["payload"]["services"]
    assert services["node.svc"] == 1
    assert services["py.echo"] == 0  # 0 marks an in-process handler (§8)
    channels = (await agent.call("request", channel="system", payload={"action": "channels"}))["payload"]["channels"]
    assert channels == {"feed.>": 1}
    # An action the server does not have goes to whoever serves `system`; nobody does here.
    err = await agent.call_error("request", channel="system", payload={"action": "reboot"})
    assert err["code"] == "no_responders"


async def test_node_unserve_under_load_leaves_no_request_unanswered(server, node_agent, py_client):
    """A Node responder that unserves while Python requests keep coming: the
    requests already forwarded to it still run there (docs/protocol.md §7)."""
    agent = await node_agent(server.port)
    steady = await py_client(server.port)
    await steady.serve("shared.echo", lambda m: m.payload)
    caller = await py_client(server.port)
    failures: list[str] = []

    async def sender() -> None:
        for i in range(100):
            try:
                assert (await caller.send_request("shared.echo", i, timeout=WAIT_S)).payload == i
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                failures.append(repr(exc))

    load = asyncio.ensure_future(asyncio.gather(*(sender() for _ in range(8))))
    for _ in range(6):
        await agent.call("serve", channel="shared.echo", kind="echo")
        await agent.call("unserve", channel="shared.echo")
    await asyncio.wait_for(load, 30)
    assert failures == []


async def test_a_node_deadline_past_setTimeout_s_ceiling_travels_and_outlives_the_server_default(start_server, node_agent, py_client):
    """A Node call with a deadline past 2^31-1 ms (~24.8 days, setTimeout's
    ceiling) carries it in timeout_ms, as a Python call does (§6.5): the
    server's default deadline, for requests that carry none, does not cut
    it short (Infinity still carries none: js-client/test/long_timeouts.test.js)."""
    srv = await start_server("--default-request-timeout", "0.5")
    py = await py_client(srv.port)

    async def patient(msg):
        await asyncio.sleep(0.8)
        return msg.timeout_ms

    await py.serve("py.client.patient", patient)
    agent = await node_agent(srv.port)
    month_ms = 30 * 24 * 3600 * 1000
    res = await agent.call("request", channel="py.client.patient", payload=None, timeoutMs=month_ms)
    assert month_ms - 5000 < res["payload"] <= month_ms
