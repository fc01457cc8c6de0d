"""A 1.1.x handler's error object with a ``code`` or ``message`` that is not
a string (docs/legacy.md, "The new clients against a 1.1.x server"): both
clients read it alike, a ``code`` that is not a non-empty string as
``handler_error`` and a ``message`` that is not a string as empty. Python
raised ``RemoteError`` with code ``"5"`` for ``{"code": 5}``, and kept
``str(7)`` as the message, where Node rejects ``HandlerError``.

The server is scripted, as a 1.1.2 server answers (its connect reply has no
``protocol``; a handler's reply is a ``response`` whose payload is what the
handler gave), so the real package is not needed; Node's twin is
js-client/test/errors.test.js."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import HandlerError, RemoteError, error_from_wire

from .conftest import WAIT_S

REPLIES: dict[str, Any] = {
    "int-code": {"error": {"code": 5, "message": "m"}},
    "int-message": {"error": {"code": "not_found", "message": 7}},
    "bool-code": {"error": {"code": True, "message": None}},
}


def v1(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj).encode()
    return len(body).to_bytes(4, "big") + body


async def scripted_1_1_2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the connect as 1.1.2 does, then each request on channel C with REPLIES[C]."""
    try:
        while True:
            size = int.from_bytes(await reader.readexactly(4), "big")
            msg = json.loads(await reader.readexactly(size))
            if msg["channel_id"] == "system" and msg["payload"].get("action") == "connect":
                payload: Any = {"status": "connected", "connection_id": msg["payload"]["connection_id"]}
            elif msg["message_type"] == "request" and msg["channel_id"] in REPLIES:
                payload = REPLIES[msg["channel_id"]]
            else:
                continue
            writer.write(v1({"message_id": "r", "app_id": msg["app_id"], "channel_id": msg["channel_id"], "message_type": "response", "payload": payload, "timestamp": 0, "reply_to": msg["message_id"]}))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_an_error_object_with_a_code_or_message_that_is_no_string() -> None:
    server = await asyncio.start_server(scripted_1_1_2, "127.0.0.1", 0)
    client = IPCClient("app", "127.0.0.1", server.sockets[0].getsockname()[1], reconnect=False, request_timeout=WAIT_S)
    try:
        await asyncio.wait_for(client.connect(), WAIT_S)
        assert client.legacy is True
        with pytest.raises(HandlerError) as int_code:
            await client.request("int-code", {})
        assert (int_code.value.code, int_code.value.message) == ("handler_error", "m")
        with pytest.raises(RemoteError) as int_message:
            await client.request("int-message", {})
        assert int_message.value.code == "not_found" and "7" not in str(int_message.value)
        with pytest.raises(HandlerError):
            await client.request("bool-code", {})
        assert client.connected
    finally:
        await asyncio.wait_for(client.disconnect(), WAIT_S)
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT_S)


@pytest.mark.parametrize("code", [5, True, None, "", ["x"], {"c": 1}])
def test_a_code_that_is_no_string_is_handler_error(code: Any) -> None:
    err = error_from_wire({"code": code, "message": "m"})
    assert type(err) is HandlerError and (err.code, err.message) == ("handler_error", "m")


@pytest.mark.parametrize("message", [7, True, ["m"], {"m": 1}])
def test_a_message_that_is_no_string_is_empty(message: Any) -> None:
    assert error_from_wire({"code": "not_found", "message": message}).message == error_from_wire({"code": "not_found", "message": ""}).message
