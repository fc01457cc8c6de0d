"""The bounds of every paged ``system`` action (docs/protocol.md §8): an
``offset`` or ``limit`` of any size is answered, never an unhandled error
that closes the connection (docs/security.md §6), and the server holds a
page to ``MAX_LIMIT`` entries whatever ``limit`` asks, naming the limit it
used, so every reader of pages still reads the whole table by paging on.
Over real loopback TCP."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_server import IPCServer, connection_list
from ipc_server.cli_view import render

PAGED = (("channels", "channels"), ("services", "services"), ("describe", "channels"), ("connections", "connections"))
HUGE = ((2**63, 1), (0, 2**63), (2**62, 2**62), (2**70, 2**70), (2**64 - 1, 0))
JS_CLIENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "js-client")


async def test_offsets_and_limits_past_2_63_are_answered_and_keep_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with IPCServer("127.0.0.1", 0) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as client:
            await client.subscribe("news", lambda msg: None)
            await client.serve("svc", typed)
            for action, key in PAGED:
                for offset, limit in HUGE:
                    page = await client.system(action, params={"offset": offset, "limit": limit})
                    assert (len(page[key]) == 0) == (offset > 0 or limit == 0), (action, offset, limit)  # past the table: an empty page
                    assert page["offset"] == min(offset, 2**53 - 1) and page["limit"] == min(limit, 1024), (action, offset, limit)
                    assert page["total"] >= 1
            assert (await client.health())["healthy"]  # the same connection, still open
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_limit_past_the_maximum_page_is_held_to_it() -> None:
    async with IPCServer("127.0.0.1", 0) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as client:
            for i in range(1100):
                await client.subscribe(f"c{i}", lambda msg: None)
            page = await client.system("channels", params={"limit": 10**9})
            assert len(page["channels"]) == 1024 and (page["total"], page["offset"], page["limit"]) == (1100, 0, 1024)


async def typed(n: int) -> str:
    return str(n)


async def _read_all(client: IPCClient, action: str, key: str) -> dict[str, Any]:
    """Every entry, asking for far more than a page and stepping by the limit the answer names."""
    seen: dict[str, Any] = {}
    offset, total = 0, None
    while total is None or offset < total:
        page = await client.system(action, params={"offset": offset, "limit": 10**6})
        assert page["limit"] == 3 and page["offset"] == offset
        assert not seen.keys() & page[key].keys()
        seen.update(page[key])
        total, offset = page["total"], offset + page["limit"]
    return seen


async def test_with_a_small_maximum_page_every_reader_still_reads_the_whole_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_list, "MAX_LIMIT", 3)
    wanted = [f"svc.{i}" for i in range(8)]
    async with IPCServer("127.0.0.1", 0) as server:
        async with IPCClient("app", "127.0.0.1", server.port) as client:
            for channel in wanted:
                await client.serve(channel, typed)  # annotated: declares its schemas
                await client.subscribe(channel, lambda msg: None)
            first = await client.system("services")  # unasked: the server's page, and the figures to page on
            assert len(first["services"]) == 3 and (first["total"], first["offset"], first["limit"]) == (8, 0, 3)
            assert list(await _read_all(client, "services", "services")) == wanted
            assert list(await _read_all(client, "channels", "channels")) == wanted
            described = await _read_all(client, "describe", "channels")
            assert list(described) == wanted and described["svc.7"]["request"]["type"] == "integer"
            # the CLI views show a page and where the next starts, as the server paged it
            page = await client.system("services", params={"offset": 3, "limit": 500})
            assert render("services", page).endswith("4-6 of 8 services (the next: --offset 6)")
            node = shutil.which("node")
            if node is None:
                pytest.skip("node is not installed: ipc-bridge-types not run")
            proc = await asyncio.create_subprocess_exec(
                node, "bin/ipc-bridge-types.js", "--app", "app", "--port", str(server.port), "--timeout", "5000",
                cwd=JS_CLIENT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            assert all(f'"{channel}"' in out.decode() for channel in wanted), out.decode()
