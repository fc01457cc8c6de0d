"""The ids a connect names have a maximum length (docs/protocol.md §3 item
12): ``app_id``, ``connection_id``, ``client`` and ``user`` of at most 256
characters. A longer one is a bad connect (``bad_message``, closed), so
what the server keeps of a connection, in its stats and metrics, is
bounded; the clients refuse such ids at construction."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import encode_frame
from ipc_protocol.constants import MAX_CONNECT_ID_LENGTH
from ipc_protocol.protocol import ProtocolState, ProtocolViolation
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol

from .conftest import frame

LONG = "x" * (MAX_CONNECT_ID_LENGTH + 1)
FIELDS = ["app_id", "connection_id", "client", "user"]


def _connect(fields: dict[str, Any], token: str | None = None) -> tuple[ServerProtocol, Any]:
    app_id = fields.pop("app_id", "app")
    payload = {"action": "connect", "protocol": 2, **fields}
    proto = ServerProtocol(token=token)
    (body,) = proto.receive_data(encode_frame(json.dumps(frame("request", "system", payload, app_id=app_id)).encode()))
    return proto, proto.receive_frame(body)


@pytest.mark.parametrize("field", FIELDS)
def test_an_id_over_the_limit_is_a_bad_connect(field: str) -> None:
    proto, event = _connect({field: LONG}, token="s3cret")  # refused as malformed before the token is looked at
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message"
    assert event.text == f"invalid connect: {field} must be at most 256 characters, got 257"
    assert proto.state is ProtocolState.ERROR


@pytest.mark.parametrize("field", FIELDS)
def test_an_id_at_the_limit_counted_in_code_points_is_fine(field: str) -> None:
    _, event = _connect({field: "\U0001f600" * MAX_CONNECT_ID_LENGTH})
    assert isinstance(event, ConnectRequested)


def test_a_legacy_connect_is_held_to_the_same_limit() -> None:
    proto = ServerProtocol()
    hello = frame("request", "system", {"action": "connect", "connection_id": LONG})
    (body,) = proto.receive_data(encode_frame(json.dumps(hello).encode()))
    event = proto.receive_frame(body)
    assert isinstance(event, ProtocolViolation) and event.code == "bad_message"


async def test_long_ids_leave_nothing_in_the_stats(server, raw, make_client) -> None:
    """Issue: connections with 600 KB ids that each had a frame skipped
    made every later ``stats`` answer ``too_large``, for everyone (such a
    connect is now over the handshake's 64 KiB; 60,000 characters fit)."""
    for field in ("connection_id", "client"):
        peer = await raw()
        peer.send(frame("request", "system", {"action": "connect", "protocol": 2, field: "i" * 60_000}, message_id="hello"))
        got = await peer.closed()
        assert [(m.error.code, m.reply_to) for m in got if m.error is not None] == [("bad_message", "hello")]
    peer = await raw()
    peer.send(frame("request", "system", {"action": "connect", "protocol": 2}, app_id="a" * 60_000, message_id="hello"))
    assert [m.error.code for m in await peer.closed() if m.error is not None] == ["bad_message"]
    client = await make_client("a" * MAX_CONNECT_ID_LENGTH)
    stats = await client.system("stats")
    assert stats["errors"]["bad_message"] == 3


@pytest.mark.parametrize("option", ["app_id", "user"])
def test_the_client_refuses_a_long_id_at_construction(option: str) -> None:
    kwargs: dict[str, Any] = {"app_id": "app", "token": "t"}
    kwargs[option] = LONG
    with pytest.raises(ValueError, match=f"{option} must be at most 256 characters"):
        IPCClient(kwargs.pop("app_id"), "127.0.0.1", 1, **kwargs)
    kwargs[option] = "x" * MAX_CONNECT_ID_LENGTH
    IPCClient(kwargs.pop("app_id", "app"), "127.0.0.1", 1, **kwargs)
