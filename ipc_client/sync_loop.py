"""The loop thread of :class:`~ipc_client.sync.SyncIPCClient`: how it runs,
how a dropped client's loop shuts itself down, and the rule that its
blocking calls are never made from a running event loop
(docs/resilience.md §10)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable

from .client import IPCClient
from .handler_thread import HandlerThread

__all__ = ["abandoned", "check_blocking", "run_loop", "shutdown_client"]

log = logging.getLogger("ipc_client.sync")


def check_blocking() -> None:
    """Refuse a blocking call from a running event loop: it would stall
    that loop, and on the client's own loop wait for itself for ever."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("SyncIPCClient blocks; inside a running event loop use IPCClient (or call it via asyncio.to_thread)")


def run_loop(loop: asyncio.AbstractEventLoop, ended: concurrent.futures.Future[None]) -> None:
    """The loop thread: closed once stopped, also when no close() joins it
    (a dropped client's, or one that outlived close()'s timeout). ``ended``:
    the thread is gone, however (``SystemExit`` out of ``run_forever()``, a
    stray ``loop.stop()``); close() waits for nothing on the loop then."""
    try:
        loop.run_forever()
    finally:
        loop.close()
        ended.set_result(None)


async def shutdown_client(client: IPCClient, settle: Callable[[], Awaitable[None]] | None = None) -> None:
    """Disconnect, then end every other task on the loop; ``settle`` runs in
    between, while what the disconnect ended can still finish (close() has
    its iterators take over what they held)."""
    await client.disconnect()
    if settle is not None:
        await settle()
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _shutdown_and_stop(client: IPCClient, timeout: float) -> None:
    try:
        # In this task, not wait_for's own: shutdown_client cancels every task but
        # the one it runs in, and the loop stops when this one ends.
        async with asyncio.timeout(timeout):
            await shutdown_client(client)
    except Exception:  # noqa: BLE001 - nobody waits for it: stop anyway
        log.debug("closing a dropped client failed", exc_info=True)
    finally:
        asyncio.get_running_loop().stop()


def abandoned(loop: asyncio.AbstractEventLoop, client: IPCClient, workers: HandlerThread, timeout: float) -> None:
    """A client dropped unclosed: stop its loop and connection. The garbage
    collector may call this on any thread, the loop's too, so it never waits."""
    log.debug("a SyncIPCClient was dropped without close(): closing it")
    workers.shutdown()
    try:
        loop.call_soon_threadsafe(lambda: loop.create_task(_shutdown_and_stop(client, timeout)))
    except RuntimeError:  # the loop is closed already
        pass
