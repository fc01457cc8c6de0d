"""Both decoders give the same verdict on the same bytes (docs/protocol.md
§1.1, §2): a frame body is accepted by both, or refused by both with the same
code. The bodies here are the edge cases the shared vectors do not cover."""

from __future__ import annotations

import asyncio
import json

import pytest

from ipc_protocol import decode_message

from conftest import run_node

H = '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"publish"'
R = '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"response"'

BODIES = {
    "null timestamp": H + ',"timestamp":null}',
    "number reply_to": H + ',"reply_to":5}',
    "integer ack": H + ',"ack":1}',
    "null error message": R + ',"error":{"code":"x","message":null}}',
    "number error message": R + ',"error":{"code":"x","message":5}}',
    "error without message": R + ',"error":{"code":"x"}}',
    "error array": R + ',"error":[]}',
    "upper-case message_type": '{"message_id":"x","app_id":"a","channel_id":"c","message_type":"PUBLISH"}',
    "overflowing number": H + ',"payload":1e400}',
    "overflowing number, long mantissa and small exponent": H + ',"payload":1' + "0" * 300 + 'e9}',
    "duplicate keys": H + ',"payload":1,"payload":2}',
    "surrounding whitespace": " \n" + H + "} \n",
    "BOM": "\ufeff" + H + "}",
    "headers null": H + ',"headers":null}',
    "headers array": H + ',"headers":["a"]}',
    "empty message_id": '{"message_id":"","app_id":"a","channel_id":"c","message_type":"publish"}',
    "negative zero timestamp": H + ',"timestamp":-0.0}',
    "escaped lone low surrogate": H + ',"payload":"\\udc00"}',
    "raw control character in a string": H + ',"payload":"a\x01b"}',
    "string timestamp": H + ',"timestamp":"1.5"}',
    "boolean timestamp": H + ',"timestamp":true}',
    "string timeout_ms": H + ',"timeout_ms":"5"}',
    "boolean timeout_ms": H + ',"timeout_ms":false}',
}



def python_verdict(body: bytes) -> str | None:
    try:
        decode_message(body)
    except Exception as exc:  # noqa: BLE001 - the verdict is the code
        return str(getattr(exc, "code", type(exc).__name__))
    return None


@pytest.fixture(scope="module")
def node_verdicts(node):
    hexes = [body.encode().hex() for body in BODIES.values()]
    lines = asyncio.run(run_node(node, "decode_bodies.js", *hexes))
    return {line["hex"]: line["code"] for line in lines}


@pytest.mark.parametrize(
    "name", list(BODIES)
)
def test_python_and_node_decoders_agree(name, node_verdicts):
    body = BODIES[name].encode()
    assert python_verdict(body) == node_verdicts[body.hex()], json.dumps(BODIES[name])
