"""What a 1.1.x client may write that the server refuses, as docs/legacy.md
lists it ("Differences to handle in 1.1.x client code"): 1.1.x encodes with
``json.dumps``, which writes a lone surrogate as ``\\udcff`` and nests as deep
as it is given; the server answers ``bad_frame`` and closes (docs/protocol.md
§1.1), where the 1.1.2 server passed both on. The limits are the documented
ones: a payload may nest 199 containers around a value (the frame's object
is level 1, a scalar a level: 201 in all), not 200."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipc_server import IPCServer

from .v1_peer import V1Peer


def nested(depth: int) -> Any:
    return json.loads("[" * depth + "1" + "]" * depth)


@pytest.mark.parametrize(
    "payload, text",
    [({"t": "file-\udcff.txt"}, "invalid JSON: lone leading surrogate"), (nested(200), "invalid JSON: recursion limit exceeded")],
    ids=["lone-surrogate", "nested-200"],
)
async def test_what_1_1_x_writes_and_the_server_refuses(server: IPCServer, payload: Any, text: str) -> None:
    subscriber, _ = await V1Peer.connect(server.port, "sub")
    publisher, _ = await V1Peer.connect(server.port, "pub")
    try:
        await subscriber.subscribe("news")
        await publisher.send("news", "publish", payload)
        [answer] = await publisher.until_closed()
        error = answer["payload"]["error"]  # the version-1 form (§10)
        assert error["code"] == "bad_frame" and error["message"].startswith(text)
        again, _ = await V1Peer.connect(server.port, "pub2")
        await again.send("news", "publish", nested(199))  # the deepest that passes
        assert (await subscriber.recv())["payload"] == nested(199)  # and nothing of the refused one before it
        again.close()
    finally:
        subscriber.close()
        publisher.close()
