"""The tokens of one connection's wildcard patterns, subscriptions and
registrations together, have a budget (``max_pattern_tokens_per_connection``,
docs/protocol.md §12): the pattern index costs memory by token, and one
long pattern of 253 tokens held ~63 KB, so a count cap alone let a
connection hold gigabytes. Past it: ``limit_exceeded``, the connection
stays open; unsubscribing gives the tokens back; exact channels are not
counted."""

from __future__ import annotations

import pytest

from ipc_client import IPCClient
from ipc_protocol import LimitExceeded
from ipc_server import IPCServer
from ipc_server.config import DEFAULT_MAX_PATTERN_TOKENS_PER_CONNECTION, ServerConfig, load_config


def _noop(msg) -> None:
    return None


def _deep(head: str, tokens: int) -> str:
    """A pattern of ``tokens`` tokens, the last ``>``."""
    return ".".join([head] + ["a"] * (tokens - 2) + [">"])


async def test_the_budget_counts_subscriptions_and_registrations_together() -> None:
    async with IPCServer("127.0.0.1", 0, max_pattern_tokens_per_connection=10) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as c, IPCClient("app", "127.0.0.1", server.port) as other:
            await c.subscribe(_deep("s", 6), _noop)  # 6 tokens
            await c.serve("r.*.x", _noop)  # 3: 9
            with pytest.raises(LimitExceeded) as info:
                await c.subscribe("t.*", _noop)  # 11 > 10
            assert "maximum of 10 tokens" in info.value.message
            with pytest.raises(LimitExceeded):
                await c.serve("u.*", _noop)
            await c.subscribe("plain.channel.with.many.tokens.each.free", _noop)  # exact: a dict entry, not counted
            await c.subscribe(_deep("s", 6), _noop)  # held already: takes nothing new
            await c.subscribe("*", _noop)  # 1 token: exactly 10
            assert await c.health_check() is True  # the connection stayed open
            await other.subscribe(_deep("o", 10), _noop)  # per connection: the other has its own
            await c.unsubscribe(_deep("s", 6))
            await c.subscribe("t.*", _noop)  # the tokens came back
            await c.unserve("r.*.x")
            await c.serve("u.*.v", _noop)
            assert server.stats.subscriptions == 4 and server.stats.registrations == 1


async def test_the_default_bounds_what_long_patterns_hold() -> None:
    """The probe's case: 253-token patterns. The default lets one connection
    hold 1,036 of them (262,144 tokens, some 75 MiB of index), not 100,000."""
    assert DEFAULT_MAX_PATTERN_TOKENS_PER_CONNECTION == 262_144 == ServerConfig().max_pattern_tokens_per_connection
    async with IPCServer("127.0.0.1", 0, max_pattern_tokens_per_connection=253 * 3) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as c:
            for i in range(3):
                await c.subscribe(_deep(f"p{i}", 253), _noop)
            with pytest.raises(LimitExceeded):
                await c.subscribe(_deep("p3", 253), _noop)
            assert server.stats.subscriptions == 3


def test_the_setting_is_read_like_the_other_limits(tmp_path) -> None:
    assert load_config(env={"IPC_SERVER_MAX_PATTERN_TOKENS_PER_CONNECTION": "none"}).max_pattern_tokens_per_connection is None
    assert load_config(env={"IPC_SERVER_MAX_PATTERN_TOKENS_PER_CONNECTION": "1000"}).max_pattern_tokens_per_connection == 1000
