"""The ``channels`` action in pages (docs/protocol.md §8): one answer holds
at most ``limit`` entries (1024 unless asked), so a large subscription table
costs a page per request, not the whole table; every entry is reachable page
by page; a table that fits one page unasked is answered as it always was.
Over real loopback TCP."""

from __future__ import annotations

import json

import pytest

from ipc_client import IPCClient
from ipc_protocol import ErrorCode, IPCError, encode_frame
from ipc_server import IPCServer

from .conftest import RawPeer, frame

N = 2500


async def _subscribe_many(peer: RawPeer, channels: list[str]) -> None:
    peer.send_raw(b"".join(encode_frame(json.dumps(frame("subscribe", ch, None, message_id=f"s{i}")).encode()) for i, ch in enumerate(channels)))
    for _ in channels:
        answer = await peer.recv()
        assert answer.error is None, answer.error


async def test_a_large_table_is_answered_a_page_at_a_time_and_every_entry_is_reachable() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        peer = await RawPeer.open(server.port)
        try:
            await peer.handshake()
            wanted = [f"c{i}.x" for i in range(N - 500)] + [f"p{i}.*" for i in range(500)]  # exact channels, then patterns
            await _subscribe_many(peer, wanted)
            async with IPCClient("app", "127.0.0.1", server.port) as client:
                first = await client.system("channels")
                assert len(first["channels"]) == 1024  # the default page, not the 2,500 entries
                assert (first["total"], first["offset"], first["limit"]) == (N, 0, 1024)
                seen: dict[str, int] = {}
                offset = 0
                while offset < first["total"]:
                    page = await client.system("channels", params={"offset": offset, "limit": 700})
                    assert len(page["channels"]) <= 700 and page["offset"] == offset and page["total"] == N
                    assert not seen.keys() & page["channels"].keys()  # no entry twice
                    seen.update(page["channels"])
                    offset += 700
                assert list(seen) == wanted and set(seen.values()) == {1}
                past = await client.system("channels", params={"offset": N + 10})
                assert past == {"channels": {}, "total": N, "offset": N + 10, "limit": 1024}
                with pytest.raises(IPCError) as bad:
                    await client.system("channels", params={"limit": -1})
                assert bad.value.code == ErrorCode.BAD_MESSAGE and "channels: limit must be a non-negative integer" in str(bad.value)
        finally:
            await peer.close()


async def test_a_table_that_fits_a_page_is_answered_as_before() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as one, IPCClient("app", "127.0.0.1", server.port) as two:
            await one.subscribe("orders.*", lambda msg: None)
            await two.subscribe("orders.*", lambda msg: None)
            await two.subscribe("news", lambda msg: None)
            assert await one.system("channels") == {"channels": {"news": 1, "orders.*": 2}}
            asked = await one.system("channels", params={"limit": 1})
            assert asked == {"channels": {"news": 1}, "total": 2, "offset": 0, "limit": 1}
            with pytest.raises(TypeError, match="params must be a dict"):
                await one.system("channels", params=[1])  # type: ignore[arg-type]


def test_the_pages_list_what_the_index_holds_through_every_way_out() -> None:
    """The patterns' list the pages read follows the index: a subscriber
    added, removed, and gone in one sweep (a connection holding most patterns)."""
    from ipc_server.topics import SubscriptionTable

    table: SubscriptionTable[str] = SubscriptionTable()
    for i in range(40):
        table.add(f"p{i}.*", "a")
        if i % 2:
            table.add(f"p{i}.*", "b")
    table.add("exact", "a")
    table.remove("p1.*", "a")  # b stays
    table.remove("p2.*", "a")  # its only subscriber: gone
    assert table.page(0, 1000) == table.counts() and table.counts()["p1.*"] == 1 and "p2.*" not in table.counts()
    table.remove_all([f"p{i}.*" for i in range(40)] + ["exact"], "a")  # the sweep: b's patterns stay, with one each
    assert table.page(0, 1000) == table.counts() == {f"p{i}.*": 1 for i in range(1, 40, 2)}
    assert sorted(table.page(5, 3)) == sorted(list(table.counts())[5:8]) and len(table) == 20
