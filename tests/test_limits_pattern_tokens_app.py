"""The tokens of the distinct wildcard patterns in one app's index, its
connections' together, have a budget (``max_pattern_tokens_per_app``,
docs/protocol.md §12): a publish walks the index's nodes its channel's
prefixes reach, up to that many, and the per-connection budget alone let
five connections of one app hold 65,536 patterns ``{a,*}^16.z`` (1.1 million
tokens), every publish on ``a.….a.<n>`` then walking 2^16 nodes (35-66 ms).
Past it: ``limit_exceeded``, the connection stays open; a pattern the index
holds already costs nothing; tokens come back when a pattern leaves the
index (unsubscribe, close); other apps have budgets of their own."""

from __future__ import annotations

import asyncio

import pytest

from ipc_client import IPCClient
from ipc_protocol import LimitExceeded
from ipc_server import IPCServer
from ipc_server.config import DEFAULT_MAX_PATTERN_TOKENS_PER_APP, DEFAULT_MAX_PATTERN_TOKENS_PER_CONNECTION, ServerConfig, load_config


def _noop(msg) -> None:
    return None


async def _until(check, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_connections_of_one_app_share_its_budget() -> None:
    async with IPCServer("127.0.0.1", 0, max_pattern_tokens_per_connection=20, max_pattern_tokens_per_app=10) as server:
        port = server.port
        async with IPCClient("app", "127.0.0.1", port) as a, IPCClient("app", "127.0.0.1", port) as b, IPCClient("other", "127.0.0.1", port) as c:
            await a.subscribe("s.*.x.y", _noop)  # 4
            await b.serve("r.*.x", _noop)  # 3: 7 in the app
            await b.subscribe("s.*.x.y", _noop)  # in the index already: nothing more
            with pytest.raises(LimitExceeded) as info:
                await b.subscribe("t.*.u.v", _noop)  # 11 > 10, within b's own 20
            assert "app's patterns hold 7 of its maximum of 10 tokens" in info.value.message
            with pytest.raises(LimitExceeded):
                await a.serve("u.*.v.w", _noop)
            await b.subscribe("exact.channels.are.free.of.tokens", _noop)
            await a.subscribe("t.*.u", _noop)  # 3: exactly 10
            await c.subscribe("o.*.p.q", _noop)  # another app: its own budget
            await c.serve("o.*.p.q", _noop)
            assert await b.health_check() is True  # refused, not closed
            await a.unsubscribe("s.*.x.y")  # b still holds it: still in the index
            with pytest.raises(LimitExceeded):
                await a.subscribe("v.*", _noop)
            await b.unsubscribe("s.*.x.y")  # out of the index: 4 tokens back
            await a.subscribe("v.*.w.z", _noop)  # 10 again
            with pytest.raises(LimitExceeded):
                await a.serve("w.*.x", _noop)
            await b.disconnect()  # its registration leaves the index: 3 tokens back
            await _until(lambda: server.stats.registrations == 1)  # c's
            await a.serve("w.*.x", _noop)


async def test_publishes_and_requests_still_match() -> None:
    async with IPCServer("127.0.0.1", 0, max_pattern_tokens_per_app=4) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as a:
            got: asyncio.Queue = asyncio.Queue()
            await a.subscribe("n.*", got.put_nowait)
            await a.serve("q.*", lambda msg: {"ok": True})
            with pytest.raises(LimitExceeded):
                await a.subscribe("z.*", _noop)
            await a.publish("n.1", {"x": 1})
            assert (await asyncio.wait_for(got.get(), 5)).channel_id == "n.1"
            assert await a.request("q.1", {}, timeout=5) == {"ok": True}


def test_the_setting_is_read_like_the_other_limits() -> None:
    assert DEFAULT_MAX_PATTERN_TOKENS_PER_APP == 524_288 == ServerConfig().max_pattern_tokens_per_app
    assert DEFAULT_MAX_PATTERN_TOKENS_PER_APP >= DEFAULT_MAX_PATTERN_TOKENS_PER_CONNECTION
    assert load_config(env={"IPC_SERVER_MAX_PATTERN_TOKENS_PER_APP": "none"}).max_pattern_tokens_per_app is None
    assert load_config(env={"IPC_SERVER_MAX_PATTERN_TOKENS_PER_APP": "1000"}).max_pattern_tokens_per_app == 1000


def test_the_tables_count_their_distinct_patterns_tokens() -> None:
    """Both ways a closing connection leaves a subscription table (a walk per
    pattern, or one sweep when it held a fair share) give its tokens back."""
    from ipc_server.router import ResponderTable
    from ipc_server.topics import SubscriptionTable

    table: SubscriptionTable[str] = SubscriptionTable()
    for i in range(10):
        table.add(f"k{i}.*", "big")
    table.add("k0.*", "small")
    table.add("s.*.t", "small")
    table.add("exact", "small")
    assert table.tokens == 10 * 2 + 3
    table.remove_all(["k0.*", "s.*.t", "exact"], "small")  # a walk per pattern
    assert table.tokens == 10 * 2
    table.remove_all([f"k{i}.*" for i in range(10)], "big")  # one sweep
    assert table.tokens == 0 and len(table) == 0
    responders: ResponderTable[str] = ResponderTable()
    responders.add("r.*", "a")
    responders.add("r.*", "b")
    responders.add("plain", "a")
    assert responders.tokens == 2
    responders.remove("r.*", "a")
    assert responders.tokens == 2
    responders.remove("r.*", "b")
    assert responders.tokens == 0
