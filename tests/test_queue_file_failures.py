"""A queue file (``queue_path``) that cannot be opened or written
(docs/resilience.md §4, "When the file fails"): a QueueFileError naming the
path at connect(), a one-way call refused when its message cannot be
written (nothing queued, nothing evicted), and a failed delete reported
once on 'error', the replay and the expiry going on. Failures are real
ones: files that are not queue files, a directory where the directory
should be, SQLite's own "disk full" (a page limit) and read-only mode on
the store's connection. The Node mirror is
js-client/test/queue_file_failures.test.js."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import ErrorCode, QueueFileError

from .conftest import WAIT_S
from .proxied import outage, proxy, state_event, until, via_proxy  # noqa: F401 - proxy and via_proxy are fixtures


def _db(client: IPCClient) -> sqlite3.Connection:
    """The store's own connection: SQLite's limits are set per connection."""
    store = client._outbox._store
    assert store is not None
    return store._db


def _disk_full(client: IPCClient) -> None:
    db = _db(client)
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")


def _rows(path: Path) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT body FROM queued ORDER BY id")]
    finally:
        db.close()


async def test_a_queue_path_that_cannot_be_opened_fails_connect_naming_it_and_leaves_the_file_alone(tmp_path: Path, via_proxy) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a queue\n" * 20)
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    db.close()
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    clients = {}
    for path in (text, other, tmp_path / "a_dir", tmp_path / "a_file" / "outbox.db"):
        clients[path] = client = await via_proxy(queue_path=str(path), connect=False)
        with pytest.raises(QueueFileError) as info:
            await client.connect()
        err = info.value
        assert (err.code, err.path) == (ErrorCode.QUEUE_FILE, str(path))
        assert "queue_path" in str(err) and str(path) in str(err)
        assert (err.__cause__ is None) == (path == other)  # the OS or SQLite error, where there is one
        assert client.state.value == "disconnected"
    assert text.read_text() == "not a queue\n" * 20  # refused, not rewritten
    with sqlite3.connect(other) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["users"]
    db.close()
    text.unlink()  # the lock was given back: the same client opens the path once it is fixed
    await clients[text].connect()
    assert clients[text].state.value == "connected"


async def test_a_missing_directory_is_created(tmp_path: Path, via_proxy) -> None:
    path = tmp_path / "state" / "client" / "outbox.db"
    client = await via_proxy(queue_path=str(path))
    assert client.state.value == "connected" and path.exists()


async def test_a_write_the_file_refuses_fails_the_call_and_leaves_the_queue_as_it_was(tmp_path: Path, server, proxy, make_client, via_proxy) -> None:
    listener = await make_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await listener.subscribe("audit", lambda m: got.put_nowait(m.payload))
    path = tmp_path / "outbox.db"
    client = await via_proxy(queue_path=str(path), queue_max_size=1, queue_overflow="drop_oldest")
    dropped, errors = state_event(client, "queue_dropped"), state_event(client, "error")
    await outage(proxy, client)
    await client.publish("audit", "kept", timeout=60)
    _disk_full(client)
    with pytest.raises(QueueFileError) as info:
        await client.publish("audit", "x" * 50_000, timeout=60)  # would evict "kept" to make room
    assert "queue_path" in str(info.value) and str(path) in str(info.value)
    stats = client.queue_stats()
    assert (stats["size"], stats["dropped"], dropped.qsize(), errors.qsize()) == (1, 0, 0, 0)  # "kept" was not evicted
    assert len(_rows(path)) == 1
    proxy.refuse(False)
    assert await asyncio.wait_for(got.get(), WAIT_S) == "kept"
    await until(lambda: client.queue_stats()["size"] == 0)
    assert _rows(path) == []  # sent, then deleted: a delete needs no new page
    await client.publish("audit", "after")
    assert await asyncio.wait_for(got.get(), WAIT_S) == "after"  # the refused one was never sent


async def test_a_delete_the_file_refuses_is_reported_once_and_the_queue_goes_on(tmp_path: Path, server, proxy, make_client, via_proxy) -> None:
    listener = await make_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    await listener.subscribe("audit", lambda m: got.put_nowait(m.payload))
    path = tmp_path / "outbox.db"
    client = await via_proxy(queue_path=str(path))
    dropped, errors = state_event(client, "queue_dropped"), state_event(client, "error")
    await outage(proxy, client)
    for n in range(3):
        await client.publish("audit", n, timeout=60)
    await client.publish("audit", "late", timeout=0.05)
    _db(client).execute("PRAGMA query_only = ON")  # every write now fails, as on a file gone read-only
    assert (await asyncio.wait_for(dropped.get(), WAIT_S))["reason"] == "expired"  # reported although its delete failed
    proxy.refuse(False)
    assert [await asyncio.wait_for(got.get(), WAIT_S) for _ in range(3)] == [0, 1, 2]  # the replay goes on
    await until(lambda: client.queue_stats()["size"] == 0)
    err = await asyncio.wait_for(errors.get(), WAIT_S)
    assert isinstance(err, QueueFileError) and err.path == str(path) and errors.empty()  # four failed deletes, one report
    assert len(_rows(path)) == 4  # still on disk: a start now would send them again
    _db(client).execute("PRAGMA query_only = OFF")
    await outage(proxy, client)
    await client.publish("audit", "next", timeout=60)  # a write that works does the deletes owed
    assert len(_rows(path)) == 1


@pytest.mark.parametrize("change", ["replaced by a directory", "replaced by a file", "removed", "read-only"])
async def test_a_file_replaced_removed_or_made_read_only_under_the_client_fails_the_call(tmp_path: Path, proxy, via_proxy, change: str) -> None:
    """SQLite writes through the descriptors it opened: the calls were
    acknowledged while their rows went to a file no start would read (OK 3
    of 3 in the probe; a fresh client loaded 0). The Node client opens the
    path for each write: EISDIR or EACCES. (Removed, Node writes a new file.)"""
    if change == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes a read-only file (as Node's open() does)")
    path = tmp_path / "outbox.db"
    client = await via_proxy(queue_path=str(path))
    errors = state_event(client, "error")
    await outage(proxy, client)
    await client.publish("audit", "kept", timeout=60)
    if change.startswith("replaced"):
        path.rename(tmp_path / "moved.db")
        path.mkdir() if change.endswith("directory") else path.write_bytes(b"")
    elif change == "removed":
        path.unlink()
    else:
        path.chmod(0o444)
    with pytest.raises(QueueFileError) as info:
        await client.publish("audit", "refused", timeout=60)
    word = {"removed": "was removed", "read-only": "is read-only"}.get(change, "was replaced")
    assert str(info.value) == f"queue_path {str(path)!r}: cannot write: the file {word}" and info.value.path == str(path)
    stats = client.queue_stats()
    assert (stats["size"], stats["dropped"], errors.qsize()) == (1, 0, 0)  # not queued; the caller has the error
