"""A Node responder's failures reach a Python caller as answers, through
the real server (docs/protocol.md §6.3): whatever a Node handler throws
(``node/handler_errors_agent.js``, a client with no ``error`` listener),
the caller gets ``handler_error`` and the Node process keeps running; what
nobody listens for is a process warning, never a crash, and what an
``error`` listener gets is always an Error (a thrown string arrives as a
HandlerError). An error that cannot be sent as it is (a lone surrogate,
details JSON cannot carry, a message over the frame limit) is answered
made sendable, with the texts the Python side writes, never left
unanswered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from conftest import WAIT_S, NodeAgent
from ipc_protocol import Forbidden, HandlerError, RemoteError


@pytest.fixture
async def odd_agent(node: str) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await odd_agent(port, **js_client_options)``: a connected node/handler_errors_agent.js."""
    agents: list[NodeAgent] = []

    async def make(port: int, **options: Any) -> NodeAgent:
        agent = await NodeAgent.start(node, port, script="handler_errors_agent.js", **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.close()



async def streamed_until_failure(caller: Any, channel: str) -> tuple[list[Any], HandlerError]:
    """The items of a stream that must end failing, and its HandlerError."""
    items: list[Any] = []
    with pytest.raises(HandlerError) as info:
        async with caller.stream(channel, None, timeout=WAIT_S) as stream:
            async for item in stream:
                items.append(item)
    return items, info.value

async def test_a_thrown_value_with_no_string_form_is_handler_error_and_node_keeps_running(server, odd_agent, py_client):
    agent = await odd_agent(server.port)
    for kind in ("throwNullProto", "rejectNullProto", "streamNullProto"):
        await agent.call("serveOdd", channel=f"odd.{kind}", kind=kind)
    await agent.call("subscribeOdd", channel="odd.feed")
    await agent.call("serveEcho", channel="odd.echo")
    caller = await py_client(server.port)
    for kind in ("throwNullProto", "rejectNullProto"):
        with pytest.raises(HandlerError) as info:
            await caller.request(f"odd.{kind}", None, timeout=WAIT_S)
        assert (info.value.remote_type, info.value.message) == ("object", "[object Object]"), kind
    items, info = await streamed_until_failure(caller, "odd.streamNullProto")
    assert items == [1]
    assert (info.remote_type, info.message) == ("object", "[object Object]")
    # A subscription handler's throw, nobody listening for 'error': one warning.
    assert await caller.publish("odd.feed", {"n": 1}, ack=True) == 1
    warning = await agent.wait_event("warning", lambda e: e["code"] == "IPC_UNHANDLED_ERROR")
    assert "[object Object]" in warning["message"]
    assert await caller.request("odd.echo", "still here", timeout=WAIT_S) == "still here"
    assert agent.count("crash") == 0 and agent.proc.returncode is None


async def test_an_error_event_always_carries_an_error_a_thrown_value_that_is_not_one_as_a_handler_error(server, odd_agent, py_client):
    """A subscription handler that throws a string, or rejects with
    undefined, is reported on ``error`` as a HandlerError (handler_error,
    the value's text as message, its typeof as remoteType, the value itself
    as cause), as a Python requester gets a served handler's string throw:
    so an ``error`` listener can always read ``.code`` and ``.message``."""
    agent = await odd_agent(server.port)
    await agent.call("listenErrors")
    await agent.call("subscribeOdd", channel="odd.text", throws="text")
    await agent.call("subscribeOdd", channel="odd.nothing", throws="nothing", **{"async": True})
    await agent.call("serveOdd", channel="odd.throwText", kind="throwText")
    caller = await py_client(server.port)
    fields = ("isError", "name", "code", "message", "remoteType", "causeType", "cause")
    assert await caller.publish("odd.text", 1, ack=True) == 1
    got = await agent.wait_event("error")
    assert tuple(got[k] for k in fields) == (True, "HandlerError", "handler_error", "a string, not an Error", "string", "string", "a string, not an Error")
    assert await caller.publish("odd.nothing", 1, ack=True) == 1
    got = await agent.wait_event("error")
    assert tuple(got[k] for k in fields) == (True, "HandlerError", "handler_error", "undefined", "undefined", "undefined", None)
    # the same string thrown by a served handler, as the requester gets it
    with pytest.raises(HandlerError) as info:
        await caller.request("odd.throwText", None, timeout=WAIT_S)
    assert (info.value.code, info.value.message, info.value.remote_type) == ("handler_error", "a string, not an Error", "string")
    assert agent.count("warning") == 0 and agent.count("crash") == 0


async def test_an_error_that_cannot_be_sent_as_it_is_is_answered_made_sendable_as_python_makes_it(server, odd_agent, py_client):
    agent = await odd_agent(server.port)
    kinds = ("unreadableMessage", "loneSurrogate", "hugeMessage", "bigintDetails", "cyclicDetails", "streamLoneSurrogate")
    for kind in kinds:
        await agent.call("serveOdd", channel=f"odd.{kind}", kind=kind)
    caller = await py_client(server.port)

    async def failure(kind: str) -> RemoteError:
        with pytest.raises(RemoteError) as info:
            await caller.request(f"odd.{kind}", None, timeout=WAIT_S)
        return info.value

    # the texts the Python side writes (docs/protocol.md §6.3, tests/test_errors_unsendable.py)
    got = await failure("unreadableMessage")
    assert (got.code, got.remote_type, got.message) == ("handler_error", "Error", "<unprintable Error object>")
    got = await failure("loneSurrogate")
    assert (got.code, got.remote_type, got.message) == ("handler_error", "TypeError", "bad \\ud800 text")
    for kind in ("bigintDetails", "cyclicDetails"):  # its code kept, its details dropped with a note
        got = await failure(kind)
        assert isinstance(got, Forbidden), kind
        assert (got.remote_type, got.details) == ("ForbiddenError", None), kind
        assert got.message.startswith("not you (its details were not sent: error.details is not JSON serialisable: "), got.message
    got = await failure("hugeMessage")  # Node cuts it to fit the server's frame limit (16 MiB)
    assert (got.code, got.remote_type) == ("handler_error", "RangeError")
    assert got.message.endswith("x [cut to fit the frame limit]")
    assert 15 * 1024 * 1024 < len(got.message) < 16 * 1024 * 1024
    items, info = await streamed_until_failure(caller, "odd.streamLoneSurrogate")
    assert items == [1]
    assert (info.remote_type, info.message) == ("Error", "bad \\udc00")
    assert agent.count("crash") == 0 and agent.proc.returncode is None


async def test_a_map_or_a_set_result_is_handler_error_not_an_empty_object(server, odd_agent, py_client):
    agent = await odd_agent(server.port)
    for kind in ("mapResult", "setInResult"):
        await agent.call("serveOdd", channel=f"odd.{kind}", kind=kind)
    caller = await py_client(server.port)
    for kind, name in (("mapResult", "Map"), ("setInResult", "Set")):
        with pytest.raises(HandlerError) as info:
            await caller.request(f"odd.{kind}", None, timeout=WAIT_S)
        assert info.value.remote_type == "MessageError"
        assert info.value.message.startswith(f"a {name} is not JSON: it would arrive as {{}}"), info.value.message


async def test_a_node_handler_throwing_a_local_client_error_answers_handler_error_as_a_python_one(server, odd_agent, py_client):
    """A Node handler whose downstream call failed throws the client's own
    local errors (NotConnectedError, RequestTimeoutError...): client-only
    codes never go on the wire (docs/protocol.md §6.3, spec/error_codes.json),
    so the requester gets ``handler_error`` with the class name, as from a
    Python handler raising NotConnected, not a ``timeout`` of its own that its
    circuit breaker would count. A RemoteError thrown on purpose keeps its code."""
    from ipc_client.circuit_breaker import CircuitBreakerOptions

    agent = await odd_agent(server.port)
    thrown = {
        "throwNotConnected": ("NotConnectedError", "downstream not connected"),
        "rejectRequestTimeout": ("RequestTimeoutError", "downstream timed out"),
        "throwCircuitOpen": ("CircuitOpenError", "downstream circuit open"),
        "throwMessageError": ("MessageError", "downstream bad value"),
    }
    for kind in (*thrown, "throwForbidden"):
        await agent.call("serveOdd", channel=f"odd.{kind}", kind=kind)
    caller = await py_client(server.port, circuit_breaker=CircuitBreakerOptions(failure_threshold=1))
    for kind, (remote_type, message) in thrown.items():
        with pytest.raises(HandlerError) as info:
            await caller.request(f"odd.{kind}", None, timeout=WAIT_S)
        got = info.value
        assert (got.code, got.remote_type, got.message) == ("handler_error", remote_type, message), kind
        # the handler's failure, not the service being unavailable: the caller's breaker stays closed
        assert caller.circuit_breaker(f"odd.{kind}").state == "closed", kind
    with pytest.raises(Forbidden) as forbidden:
        await caller.request("odd.throwForbidden", None, timeout=WAIT_S)
    assert (forbidden.value.code, forbidden.value.remote_type) == ("forbidden", "ForbiddenError")
    assert agent.count("crash") == 0
