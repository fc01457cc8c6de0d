"""Framing across languages, both directions (docs/protocol.md §1): Node
writing one byte per write and a thousand frames per write to the Python
server, the Python side doing the same to the Node client, 8 MiB payloads,
Unicode edge cases, and frames the server must refuse while it keeps
serving everyone else."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket

from ipc_protocol import MessageType, encode_frame, encode_message
from ipc_protocol.envelope import Message

from conftest import WAIT_S, run_node

EIGHT_MIB = 8 * 1024 * 1024
# Astral characters, escapes, NUL, line separators, and keys that are not
# ASCII. (Python writes astral characters as \U escapes: "\ud83d\ude00" in a
# Python literal would be two lone surrogates, which JSON may not carry.)
UNICODE = {
    "text": "😀 é ü ß 中文 \u0000 \n\t\r\b\f \" \\ / \u2028\u2029 \U0001F600 \U0001f680 \x7f",
    "ключ": ["\u0000", "𝄞", "\\u0000 is not an escape here"],
    "nul\u0000key": True,
}


def sha256_json(value) -> str:
    """The digest the Node agent computes: SHA-256 of JSON.stringify(value)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# -- Node -> Python --------------------------------------------------------------


async def test_node_writes_one_byte_per_write(server, node):
    lines = await run_node(node, "raw_frames.js", str(server.port), "bytewise")
    done = [l for l in lines if l["event"] == "done"]
    assert done == [{"event": "done", "ok": True, "answered": 3}]


async def test_node_writes_a_thousand_frames_in_one_write(server, node):
    lines = await run_node(node, "raw_frames.js", str(server.port), "burst")
    done = [l for l in lines if l["event"] == "done"]
    assert done == [{"event": "done", "ok": True, "answered": 1000}]


async def test_frame_over_the_limit_is_too_large_and_others_keep_being_served(start_server, node, node_agent):
    srv = await start_server("--max-frame-size", "4096")
    bystander = await node_agent(srv.port)
    lines = await run_node(node, "raw_frames.js", str(srv.port), "oversize", "4096")
    errors = [l["error"] for l in lines if l["event"] == "reply" and l["error"]]
    assert [e["code"] for e in errors] == ["too_large"]
    assert lines[-1]["event"] == "closed"
    # The server closed that connection only.
    assert (await bystander.call("health"))["healthy"] is True
    assert (await bystander.call("info"))["maxFrameSize"] == 4096
    # The Node client refuses to send over the advertised limit: a typed
    # local error, and its connection stays up.
    err = await bystander.call_error("request", channel="x.y", payload="z" * 5000)
    assert err["code"] == "too_large"
    assert err["name"] == "FrameTooLargeError"
    assert (await bystander.call("health"))["healthy"] is True
    assert bystander.count("disconnected") == 0


async def test_zero_length_and_invalid_json_are_bad_frame(server, node, node_agent):
    bystander = await node_agent(server.port)
    for mode in ("zero", "garbage"):
        lines = await run_node(node, "raw_frames.js", str(server.port), mode)
        errors = [l["error"]["code"] for l in lines if l["event"] == "reply" and l["error"]]
        assert errors == ["bad_frame"], mode
        assert lines[-1]["event"] == "closed"
    assert (await bystander.call("health"))["healthy"] is True


async def test_eight_mib_payload_node_to_python_and_back(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    expected = sha256_json("x" * EIGHT_MIB)
    res = await agent.call("request", channel="py.digest", big=EIGHT_MIB, timeout=30)
    assert res["payload"] == {"sha256": expected, "length": EIGHT_MIB}
    res = await agent.call("request", channel="py.echo", big=EIGHT_MIB, digest=True, timeout=30)
    assert (res["sha256"], res["length"]) == (expected, EIGHT_MIB)


async def test_unicode_round_trips_node_to_python(handler_server, node_agent):
    agent = await node_agent(handler_server.port)
    res = await agent.call("request", channel="py.echo", payload=UNICODE)
    assert res["payload"] == UNICODE


# -- Python -> Node --------------------------------------------------------------


async def test_eight_mib_payload_python_to_node(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="node.digest", kind="digest")
    await agent.call("subscribe", channel="big.data", digest=True)
    py = await py_client(server.port)
    payload = "y" * EIGHT_MIB
    res = await py.send_request("node.digest", payload, timeout=30)
    assert res.payload == {"sha256": sha256_json(payload), "length": EIGHT_MIB}
    assert await py.publish("big.data", payload, ack=True) == 1
    got = await agent.wait_event("message", timeout=30)
    assert (got["sha256"], got["length"]) == (sha256_json(payload), EIGHT_MIB)


async def test_unicode_round_trips_python_to_node(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("serve", channel="node.echo", kind="echo")
    await agent.call("subscribe", channel="ünï.😀")
    py = await py_client(server.port)
    assert (await py.send_request("node.echo", UNICODE, timeout=WAIT_S)).payload == UNICODE
    await py.publish("ünï.😀", UNICODE)
    got = await agent.wait_event("message")
    assert got["channel"] == "ünï.😀"
    assert got["payload"] == UNICODE


async def test_a_thousand_publishes_arrive_in_order(server, node_agent, py_client):
    agent = await node_agent(server.port)
    await agent.call("subscribe", channel="seq")
    py = await py_client(server.port)
    for i in range(1000):
        await py.publish("seq", {"i": i})
    got = await agent.wait_events("message", 1000)
    assert [m["payload"]["i"] for m in got] == list(range(1000))


async def _subscribed_agent(fake_server, node_agent, channel):
    fake = await fake_server()
    agent = await node_agent(fake.port)
    await agent.call("subscribe", channel=channel)
    writer = fake.writers[-1]
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return fake, agent, writer


def _publish_frame(channel: str, payload) -> bytes:
    return encode_frame(encode_message(Message.build(MessageType.PUBLISH, "app", channel, payload)))


async def test_python_peer_writes_one_byte_per_write_to_node(fake_server, node_agent):
    fake, agent, writer = await _subscribed_agent(fake_server, node_agent, "bytes")
    data = b"".join(_publish_frame("bytes", {"n": n, "u": UNICODE["text"]}) for n in range(3))
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0)
    got = await agent.wait_events("message", 3)
    assert [(m["payload"]["n"], m["payload"]["u"]) for m in got] == [(n, UNICODE["text"]) for n in range(3)]


async def test_python_peer_writes_a_thousand_frames_in_one_write_to_node(fake_server, node_agent):
    fake, agent, writer = await _subscribed_agent(fake_server, node_agent, "burst")
    writer.write(b"".join(_publish_frame("burst", n) for n in range(1000)))
    await writer.drain()
    got = await agent.wait_events("message", 1000)
    assert [m["payload"] for m in got] == list(range(1000))
