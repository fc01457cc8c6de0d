"""A client's own frame limit, declared in the connect (docs/protocol.md §3,
§12): the server skips publications over it for that subscriber (counted),
answers a response over it with ``too_large``, and refuses a request over
a responder's limit; the connection stays open."""

from __future__ import annotations

import asyncio
import json

import pytest

from ipc_client import IPCClient
from ipc_protocol import FrameTooLarge, RemoteError
from ipc_protocol.client_protocol import ClientProtocol
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame

LIMIT = 2048


def _connect_payload(**kwargs) -> dict:
    proto = ClientProtocol("app", "c1", client="test/1", **kwargs)
    proto.connect()
    [out] = proto.data_to_send()
    return json.loads(out[4:])["payload"]


def test_the_connect_carries_the_limit_only_when_set() -> None:
    assert "max_frame_size" not in _connect_payload()  # byte-identical to before (interop-tests/spec/handshake.json)
    assert _connect_payload(max_frame_size=LIMIT)["max_frame_size"] == LIMIT


@pytest.mark.parametrize("bad", [0, -5, 2**32, "2048", True, 1.5])
def test_the_client_refuses_an_invalid_limit_at_construction(bad) -> None:
    # as its other options (and Node's maxFrameSize): not a connect() that fails later, confusingly
    with pytest.raises(ValueError, match="max_frame_size"):
        IPCClient("app", "127.0.0.1", 1, max_frame_size=bad)


def test_the_client_takes_any_limit_the_server_would() -> None:
    for good in (1, LIMIT, 2**32 - 1, None):
        assert IPCClient("app", "127.0.0.1", 1, max_frame_size=good).max_frame_size == good


@pytest.mark.parametrize("bad", [0, -1, "2048", True, 1.5])
async def test_an_invalid_declared_limit_is_a_bad_connect(raw, bad) -> None:
    peer = await raw()
    peer.send(frame("request", "system", {"action": "connect", "protocol": 2, "max_frame_size": bad}, message_id="hello"))
    got = await peer.closed()
    assert [(m.error.code, m.reply_to) for m in got] == [("bad_message", "hello")]


@pytest.mark.parametrize("declared", [LIMIT, float(LIMIT)], ids=["int", "integral-float"])
async def test_a_declared_limit_written_as_an_integral_float_is_held_to(raw, make_client, declared) -> None:
    """2048.0 is 2048 (docs/protocol.md §1.2: JSON.parse cannot tell them
    apart): the connect opens, and an answer over it becomes ``too_large``."""
    responder = await make_client()
    await responder.serve("big", lambda m: "y" * 4000)
    peer = await raw()
    peer.send(frame("request", "system", {"action": "connect", "protocol": 2.0, "max_frame_size": declared}, message_id="hello"))
    assert (await peer.recv_until(lambda m: m.reply_to == "hello")).payload["status"] == "connected"
    peer.send(frame("request", "big", None, message_id="q1", timeout_ms=WAIT_S * 1000))
    answer = await peer.recv_until(lambda m: m.reply_to == "q1")
    assert answer.error is not None and answer.error.code == "too_large"


async def test_publications_over_a_subscribers_limit_are_skipped_and_counted(server, make_client) -> None:
    small = await make_client(max_frame_size=LIMIT)
    big = await make_client()
    got_small: asyncio.Queue = asyncio.Queue()
    got_big: asyncio.Queue = asyncio.Queue()
    await small.subscribe("news", lambda m: got_small.put_nowait(m.payload["n"]))
    await big.subscribe("news", lambda m: got_big.put_nowait(m.payload["n"]))
    pub = await make_client()
    assert await pub.publish("news", {"n": 1, "blob": "x" * 4000}, ack=True) == 1  # delivered to one of two
    assert await pub.publish("news", {"n": 2}, ack=True) == 2
    assert await asyncio.wait_for(got_small.get(), WAIT_S) == 2  # never 1: skipped, not a broken connection
    assert [await asyncio.wait_for(got_big.get(), WAIT_S) for _ in range(2)] == [1, 2]
    assert await small.health_check() is True and small.get_connection_info()["reconnects"] == 0
    stats = await pub.system("stats")
    assert stats["frames_skipped"] == 1
    assert stats["frames_skipped_by_connection"] == [{"app_id": "app", "connection_id": small.connection_id, "frames": 1}]


async def test_a_response_over_the_requesters_limit_becomes_too_large(server, make_client) -> None:
    responder = await make_client()
    await responder.serve("big", lambda m: "y" * 4000)
    requester = await make_client(max_frame_size=LIMIT)
    with pytest.raises(FrameTooLarge) as info:  # as the README's errors table pairs them; a RemoteError too
        await requester.request("big", None, timeout=WAIT_S)
    assert isinstance(info.value, RemoteError) and info.value.size is None
    assert info.value.code == "too_large" and f"({LIMIT} bytes)" in info.value.message
    assert await requester.health_check() is True


async def test_a_too_large_answer_counts_as_an_answer_for_the_circuit_breaker(server, make_client) -> None:
    # As before it was a FrameTooLarge: the call was made and answered, not refused locally.
    server.add_handler("big", lambda m: "z" * 4000)
    requester = await make_client(max_frame_size=LIMIT, circuit_breaker=True)
    with pytest.raises(FrameTooLarge):
        await requester.request("big", None, timeout=WAIT_S)
    assert requester.circuit_breakers()["big"]["successes"] == 1


async def test_an_in_process_handlers_answer_over_the_limit_becomes_too_large(server, make_client) -> None:
    server.add_handler("big", lambda m: "z" * 4000)
    requester = await make_client(max_frame_size=LIMIT)
    with pytest.raises(RemoteError) as info:
        await requester.request("big", None, timeout=WAIT_S)
    assert info.value.code == "too_large"
    assert await requester.health_check() is True
    assert server.stats.frames_skipped == 1


async def test_a_request_over_the_responders_limit_is_refused(server, make_client) -> None:
    responder = await make_client(max_frame_size=LIMIT)
    served: list[int] = []
    await responder.serve("echo", lambda m: served.append(len(m.payload)) or "ok")
    requester = await make_client()
    with pytest.raises(RemoteError) as info:
        await requester.request("echo", "q" * 4000, timeout=WAIT_S)
    assert info.value.code == "too_large" and "larger than the responder accepts" in info.value.message
    assert await requester.request("echo", "q", timeout=WAIT_S) == "ok"
    assert served == [1]


async def test_a_raw_peer_that_declares_nothing_gets_frames_up_to_the_servers_limit() -> None:
    async with IPCServer("127.0.0.1", 0, max_frame_size=8192) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        peer.send(frame("subscribe", "t", None, message_id="s"))
        await peer.recv()
        async with IPCClient("app", "127.0.0.1", server.port) as pub:
            await pub.publish("t", "a" * 7900)  # the envelope and its traceparent take the rest
            msg = await peer.recv()
            assert msg.payload == "a" * 7900
        await peer.close()
