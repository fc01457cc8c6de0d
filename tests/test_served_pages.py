"""The ``services`` and ``describe`` actions in pages (docs/protocol.md §8),
as ``channels``: one answer holds at most ``limit`` entries (1024 unless
asked), every channel is reachable page by page in one order (responders'
registrations, then in-process handlers' channels not among them), and a
table that fits one page unasked is answered as it always was. Over real
loopback TCP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from ipc_client import IPCClient
from ipc_protocol import ErrorCode, IPCError, encode_frame
from ipc_server import IPCServer

from .conftest import RawPeer, frame

SERVED = 2000  # responder registrations: 1,900 channels, then 100 patterns
SCHEMA = {"request": {"type": "integer"}, "response": {"type": "string"}}


class Order(BaseModel):
    sku: str


async def typed(order: Order) -> str:
    return order.sku


async def _serve_many(peer: RawPeer, channels: list[str]) -> None:
    frames = (frame("subscribe", ch, {"serve": True, "schema": SCHEMA}, message_id=f"s{i}") for i, ch in enumerate(channels))
    peer.send_raw(b"".join(encode_frame(json.dumps(f).encode()) for f in frames))
    acked = 0
    while acked < len(channels):
        answer = await peer.recv()
        if answer.reply_to is not None:
            assert answer.error is None, answer.error
            acked += 1


async def _every_page(client: IPCClient, action: str, key: str, limit: int) -> tuple[dict[str, Any], int]:
    seen: dict[str, Any] = {}
    offset, total = 0, None
    while total is None or offset < total:
        page = await client.system(action, params={"offset": offset, "limit": limit})
        assert page["offset"] == offset and page["limit"] == min(limit, 1024)  # a page holds 1024 at most, whatever is asked
        assert len(page[key]) <= page["limit"]
        assert not seen.keys() & page[key].keys()  # no entry twice
        seen.update(page[key])
        total = page["total"]
        offset += page["limit"]  # on from where the server's page ended
    return seen, total


async def test_services_and_describe_answer_a_large_table_a_page_at_a_time() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        server.add_handler("h.own", typed, app_id="app")  # this app's
        server.add_handler("h.all.*", typed)  # every app's
        server.add_handler("c5.x", typed)  # also served by a responder: listed once, as the handler's
        server.add_handler("h.other", typed, app_id="other")  # another app's: not listed
        peer = await RawPeer.open(server.port)
        try:
            await peer.handshake()
            responders = [f"c{i}.x" for i in range(SERVED - 100)] + [f"p{i}.*" for i in range(100)]
            await _serve_many(peer, responders)
            wanted = [*responders, "h.own", "h.all.*"]
            async with IPCClient("app", "127.0.0.1", server.port) as client:
                for action, key in (("services", "services"), ("describe", "channels")):
                    first = await client.system(action)
                    assert len(first[key]) == 1024, action  # the default page, not the 2,002 channels
                    assert (first["total"], first["offset"], first["limit"]) == (len(wanted), 0, 1024)
                    seen, total = await _every_page(client, action, key, 700)
                    assert total == len(wanted) and list(seen) == wanted, action
                    past = await client.system(action, params={"offset": total + 10})
                    assert past == {key: {}, "total": total, "offset": total + 10, "limit": 1024}
                    for bad, said in (({"limit": -1}, "limit"), ({"offset": "1"}, "offset"), ({"limit": True}, "limit")):
                        with pytest.raises(IPCError) as refused:
                            await client.system(action, params=bad)
                        assert refused.value.code == ErrorCode.BAD_MESSAGE and f"{action}: {said} must be a non-negative integer" in str(refused.value)
                services, _ = await _every_page(client, "services", "services", 1024)
                assert services["c5.x"] == 0 and services["h.own"] == 0 and services["c6.x"] == 1 and services["p3.*"] == 1
                schemas, _ = await _every_page(client, "describe", "channels", 1500)
                assert schemas["c6.x"] == SCHEMA and schemas["c5.x"]["request"]["title"] == "Order"
        finally:
            await peer.close()


async def test_a_table_that_fits_a_page_is_answered_as_before() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        server.add_handler("calc.*", typed)
        async with IPCClient("app", "127.0.0.1", server.port) as one, IPCClient("app", "127.0.0.1", server.port) as two:
            await one.serve("svc.one", lambda msg: None)
            await two.serve("svc.one", lambda msg: None)
            assert await one.system("services") == {"services": {"svc.one": 2, "calc.*": 0}}
            described = await one.system("describe")
            assert set(described) == {"channels"} and list(described["channels"]) == ["svc.one", "calc.*"]
            asked = await one.system("services", params={"limit": 1})
            assert asked == {"services": {"svc.one": 2}, "total": 2, "offset": 0, "limit": 1}
            second = await one.system("describe", params={"offset": 1})
            assert list(second["channels"]) == ["calc.*"] and (second["total"], second["offset"], second["limit"]) == (2, 1, 1024)
