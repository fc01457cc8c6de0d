"""A persisted message leaves the queue file only once the socket has taken
its bytes (docs/resilience.md §4, "Persistence"): a client killed while its
replay is stuck behind a peer that stopped reading loses nothing; what its
socket had not taken is still in the file, and the next client sends it.
Before, each row was deleted as its bytes went into asyncio's buffer: a kill
lost 4 to 6 of 300 messages of 20 KB. The Node mirror is the
"a replayed message leaves the file once the socket took it" test in
js-client/test/resilience_queue.test.js."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from ipc_client import IPCClient

from .conftest import ROOT, WAIT_S
from .proxied import outage, proxy, via_proxy  # noqa: F401 - proxy and via_proxy are fixtures

N, SIZE = 300, 20_000  # 6 MB: more than the kernel's socket buffers take on loopback

CHILD = """
import asyncio, sys
from ipc_client import IPCClient

async def main():
    client = IPCClient("app", "127.0.0.1", int(sys.argv[1]), queue_path=sys.argv[2], queue_max_size=10_000, queue_max_bytes=1 << 30)
    await client.connect()
    print("CONNECTED", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # SIGKILLed before this returns

asyncio.run(main())
"""


class StallingProxy:
    """Forwards a client's bytes to the server until ``limit`` bytes went
    through, then stops reading them (a reader that stalls) until ``resume``."""

    def __init__(self, upstream: int, limit: int) -> None:
        self.upstream, self.limit = upstream, limit
        self.resumed = asyncio.Event()
        self.forwarded = 0
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> StallingProxy:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _link(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        # A fixed receive buffer: autotuned, loopback's may grow to tens of MB and take every row.
        cw.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sr, sw = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def up() -> None:
            while True:
                if self.forwarded >= self.limit:
                    await self.resumed.wait()
                data = await cr.read(4096)
                if not data:
                    break
                self.forwarded += len(data)
                sw.write(data)
                await sw.drain()
            sw.close()

        async def down() -> None:
            while data := await sr.read(65536):
                cw.write(data)
                await cw.drain()
            cw.close()

        self.tasks += [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        await asyncio.gather(*self.tasks[-2:], return_exceptions=True)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.server.close()


def _rows(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    try:
        return int(db.execute("SELECT COUNT(*) FROM queued").fetchone()[0])
    finally:
        db.close()


async def _until_stable(path: Path, below: int) -> int:
    """The row count once it stopped shrinking (the replay waits on the full
    socket): unchanged for 0.3 s, polled, at most 20 s in all."""
    last, since = -1, time.monotonic()
    async with asyncio.timeout(20):
        while True:
            rows = _rows(path)
            if rows != last:
                last, since = rows, time.monotonic()
            elif rows < below and time.monotonic() - since > 0.3:
                return rows
            await asyncio.sleep(0.02)


async def test_a_replay_killed_behind_a_stalled_reader_loses_nothing(tmp_path: Path, server, proxy, make_client, via_proxy) -> None:
    path = tmp_path / "outbox.db"
    got: set[int] = set()
    arrived = asyncio.Event()

    def on_message(msg: Any) -> None:
        got.add(msg.payload["seq"])
        if len(got) == N:
            arrived.set()

    listener = await make_client()
    await listener.subscribe("kept", on_message)
    first = await via_proxy(queue_path=str(path), queue_max_size=10_000, queue_max_bytes=1 << 30)
    await outage(proxy, first)
    for seq in range(N):
        await first.publish("kept", {"seq": seq, "pad": "x" * SIZE}, timeout=600)
    await first.disconnect()
    assert _rows(path) == N

    stall = await StallingProxy(server.port, 64 * 1024).start()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(stall.port), str(path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 20) == b"CONNECTED\n"
        left = await _until_stable(path, N)  # the replay is stuck: the socket takes no more
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), WAIT_S)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    stall.resumed.set()  # what the dead client's socket had taken still arrives
    assert 0 < left < N
    second = await make_client(queue_path=str(path), queue_max_size=10_000, queue_max_bytes=1 << 30)
    try:
        await asyncio.wait_for(arrived.wait(), 20)
    except TimeoutError:
        raise AssertionError(f"lost {sorted(set(range(N)) - got)[:20]} ({N - len(got)} of {N}; {left} rows were left in the file)") from None
    finally:
        await second.disconnect()
        await stall.close()
