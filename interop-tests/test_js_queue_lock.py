"""A queue file's single owner across the two clients (docs/resilience.md
§4, "Persistence"): both lock ``<queue_path>.lock`` the same way (its
owner's pid in it), so a Node client never opens a file a live Python
client holds, nor the reverse, and a file a client gave back (or whose
owner died) is free for the other. A file in use is QueueFileInUse /
QueueFileInUseError in both, a QueueFileError (``queue_file``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import WAIT_S
from interop_settings import NODE_DIR
from ipc_client import QueueFileInUse
from ipc_protocol import QueueFileError


class NodeQueueClient:
    """node/queue_lock.js: a Node client constructed on a queue file."""

    def __init__(self, proc: asyncio.subprocess.Process, first: dict[str, Any]) -> None:
        self.proc, self.first = proc, first

    @classmethod
    async def start(cls, node: str, port: int, queue_path: Path, *, hold: bool) -> NodeQueueClient:
        config = json.dumps({"port": port, "queuePath": str(queue_path), "hold": hold})
        proc = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / "queue_lock.js"), config,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
        assert line, "node/queue_lock.js printed nothing"
        return cls(proc, json.loads(line))

    async def release(self) -> None:
        """Close its stdin (a holder gives the file back), then wait for it to end."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        rest = await asyncio.wait_for(self.proc.stdout.read(), WAIT_S)
        assert await asyncio.wait_for(self.proc.wait(), WAIT_S) == 0
        if self.first.get("ok") and rest:
            assert json.loads(rest.splitlines()[-1]) == {"released": True}

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), WAIT_S)


async def node_on(node: str, port: int, queue_path: Path) -> dict[str, Any]:
    """What a Node client constructed on the file got, once it gave the file back."""
    client = await NodeQueueClient.start(node, port, queue_path, hold=False)
    await client.release()
    return client.first


async def test_node_refuses_a_file_a_live_python_client_holds_and_takes_it_once_given_back(server, node, py_client, tmp_path):
    queue_path = tmp_path / "orders.queue"
    holder = await py_client(server.port, queue_path=str(queue_path))
    got = await node_on(node, server.port, queue_path)
    error = got["error"]
    assert (error["name"], error["code"], error["reason"]) == ("QueueFileInUseError", "queue_file", "EQUEUELOCKED")
    assert error["isQueueFileError"] and error["isInUse"] and error["path"] == str(queue_path)
    assert f"in use by process {os.getpid()} " in error["message"]  # the Python client's pid, read from its lock file
    await holder.disconnect()
    # given back: Node is no longer refused the lock; the file is Python's SQLite, refused as not a queue file (§4)
    error = (await node_on(node, server.port, queue_path))["error"]
    assert (error["name"], error["code"], error["isInUse"]) == ("QueueFileError", "queue_file", False)
    assert "is not a queue file" in error["message"]


async def test_python_refuses_a_file_a_live_node_client_holds_and_takes_it_once_given_back(server, node, py_client, tmp_path):
    queue_path = tmp_path / "orders.queue"
    holder = await NodeQueueClient.start(node, server.port, queue_path, hold=True)
    try:
        assert holder.first == {"ok": True, "pid": holder.proc.pid}
        caller = await py_client(server.port, queue_path=str(queue_path), connect=False)
        with pytest.raises(QueueFileInUse) as info:
            await asyncio.wait_for(caller.connect(), WAIT_S)
        err = info.value
        assert isinstance(err, QueueFileError) and (err.code, err.reason, err.path) == ("queue_file", "EQUEUELOCKED", str(queue_path))
        assert f"in use by process {holder.proc.pid} " in str(err)
        await holder.release()
        # given back: Python takes the lock (Node wrote no records yet: the file is empty or absent, a queue file to SQLite)
        await asyncio.wait_for(caller.connect(), WAIT_S)
        assert Path(f"{queue_path}.lock").read_text() == f"py:{os.getpid()}"  # Node reads it as our pid
    finally:
        await holder.kill()


async def test_a_lock_left_by_a_python_client_that_died_is_taken_over_by_node(server, node, tmp_path):
    """A Python process killed while it held the file: the kernel dropped its
    flock, and its lock file names a dead process, so Node takes it over."""
    queue_path = tmp_path / "orders.queue"
    script = (
        "import sys\n"
        "from ipc_client.queue_store import QueueStore\n"
        "s = QueueStore(sys.argv[1]); print('HELD', flush=True); sys.stdin.read()\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(queue_path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), WAIT_S) == b"HELD\n"
        assert (await node_on(node, server.port, queue_path))["error"]["isInUse"]
        proc.kill()
        await asyncio.wait_for(proc.wait(), WAIT_S)
        error = (await node_on(node, server.port, queue_path))["error"]
        assert (error["name"], error["isInUse"]) == ("QueueFileError", False)  # the lock taken over; the SQLite file refused
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), WAIT_S)
