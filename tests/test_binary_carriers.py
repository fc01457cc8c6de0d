"""Bytes in the containers the JSON encoder writes of its own accord (a set,
a frozenset, a deque, an iterator, a dataclass instance) travel as
attachments like bytes anywhere else, instead of as the encoder's UTF-8
string; a binary dict key is refused (docs/protocol.md §16.3)."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Message, MessageError, MessageType, decode_message, encode_message
from ipc_protocol.attachments import holds_binary, strip, tagged_payload
from ipc_protocol.envelope import encode_message_parts
from ipc_server import IPCServer

from .conftest import WAIT_S


@dataclasses.dataclass
class Blob:
    name: str
    data: bytes
    extra: dataclasses.InitVar[int] = 0  # not a field: not written


@dataclasses.dataclass
class Point:
    x: int
    y: int


def gen(*items: Any) -> Iterator[Any]:
    yield from items


def round_trip(payload: Any) -> Any:
    body = encode_message_parts(Message.build(MessageType.REQUEST, "app", "files", payload, message_id="m1"))
    return decode_message(bytes(body)).payload


@pytest.mark.parametrize(
    ("payload", "arrives"),
    [
        ({"s": frozenset([b"ab"])}, {"s": [b"ab"]}),
        ({"s": {b"\xff\x00"}}, {"s": [b"\xff\x00"]}),  # not UTF-8: the encoder used to refuse it, unhelpfully
        ({"q": deque([b"d", 1])}, {"q": [b"d", 1]}),
        ({"d": Blob("x", b"\x80")}, {"d": {"name": "x", "data": b"\x80"}}),
        ({"g": gen(b"g1", bytearray(b"g2"))}, {"g": [b"g1", b"g2"]}),
        ({"m": map(bytes, [b"m"])}, {"m": [b"m"]}),
        ([Blob("n", b"1"), (frozenset([b"t"]),)], [{"name": "n", "data": b"1"}, [[b"t"]]]),
        (gen(b"top"), [b"top"]),
    ],
)
def test_bytes_in_a_container_the_encoder_writes_itself_arrive_as_bytes(payload: Any, arrives: Any) -> None:
    assert round_trip(payload) == arrives  # b"ab" == "ab" is False: the types are checked too


def test_such_a_container_without_bytes_is_written_as_before() -> None:
    for payload in ({"s": frozenset(["a"])}, {"d": Point(1, 2)}, {"q": deque([1, "2"])}):
        stripped, paths, _ = strip(payload)
        assert paths == [] and stripped is payload  # the encoder writes it, as it did
    assert round_trip({"d": Blob("x", b"y")}) == {"d": {"name": "x", "data": b"y"}}
    assert round_trip({"g": gen(1, "two", None)}) == {"g": [1, "two", None]}  # used up by the walk: its list goes
    assert round_trip(gen()) == []
    assert tagged_payload({"g": gen(1)}) == {"g": [1]}


def test_a_binary_dict_key_is_refused_where_it_is() -> None:
    for key in (b"k", b"\xff", memoryview(b"v")):
        assert holds_binary({"a": [{key: "v"}]})
        with pytest.raises(MessageError, match=r"cannot be a dict key \(.* at \['a', 0\]\): JSON's keys are strings"):
            encode_message(Message.build(MessageType.REQUEST, "app", "files", {"a": [{key: "v"}]}, message_id="m1"))
    assert round_trip({1: "v", "s": "t"}) == {"1": "v", "s": "t"}  # other keys are the encoder's, as before


async def test_a_responder_gets_bytes_from_each_container() -> None:
    """Through the real server: what used to arrive as str arrives as bytes."""
    async with IPCServer("127.0.0.1", 0, shutdown_grace_s=0.5) as server:
        responder = IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S)
        requester = IPCClient("app", "127.0.0.1", server.port, request_timeout=WAIT_S)
        await responder.connect()
        await requester.connect()
        try:
            await responder.serve("echo", lambda msg: {"types": _types(msg.payload), "payload": msg.payload})
            answer = await requester.request("echo", {"s": frozenset([b"ab"]), "d": Blob("x", b"\x80"), "g": gen(b"g1")})
            assert answer["payload"] == {"s": [b"ab"], "d": {"name": "x", "data": b"\x80"}, "g": [b"g1"]}
            assert answer["types"] == ["bytes", "bytes", "bytes"]
            with pytest.raises(MessageError, match="cannot be a dict key"):
                await requester.request("echo", {b"k": "v"})
        finally:
            await requester.disconnect()
            await responder.disconnect()


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _types(value: Any) -> list[str]:
    """The class of each leaf but the dataclass's name."""
    return [type(leaf).__name__ for leaf in _leaves(value) if leaf != "x"]
