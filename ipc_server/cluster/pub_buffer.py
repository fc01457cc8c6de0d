"""Publishing into nats-py's pending buffer without its coroutine layers
(docs/cluster.md §2).

nats-py's ``publish`` is three coroutines deep (``publish``,
``_send_publish``, ``_send_command``), builds each command by
concatenating the payload, and wakes its flusher through
``_flush_pending``'s future: about 2 µs a message, paid twice on every
request across nodes. :func:`append_pub` queues the same bytes in the same
buffer and wakes the same flusher, so the order of everything written on
the connection, and nats-py's reconnect buffering and flushes, stay as
they are.

The link also bounds what it holds for NATS (link.py): nats-py's pending
buffer, and the write buffer of its connection's transport
(:func:`wire_of`), which a stalled link drops (:func:`drop_pending`).

This reaches into nats-py's client (``_status``, ``_pending``,
``_pending_data_size``, ``_flush_queue``, ``_flusher_task``,
``_transport``): :func:`can_append` says whether the installed nats-py has
them, else the link publishes through nats-py's ``publish``, and a test
says so.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["PUB_OVERHEAD", "append_pub", "can_append", "drop_pending", "wire_of"]

_CRLF = b"\r\n"
# ``PUB``, spaces, the size's digits (up to NATS's 64 MiB) and two CRLFs: at most this beyond subject, reply and payload.
PUB_OVERHEAD = 20


def can_append(nc: Any) -> bool:
    """True when ``nc`` (connected) keeps its pending commands as this module expects."""
    return (
        type(getattr(nc, "_pending", None)) is list
        and type(getattr(nc, "_pending_data_size", None)) is int
        and type(getattr(nc, "_flush_queue", None)) is asyncio.Queue
        and isinstance(getattr(nc, "_flusher_task", None), asyncio.Task)
        and isinstance(getattr(nc, "_max_pending_size", None), int)
        and isinstance(getattr(nc, "stats", None), dict)
        and getattr(nc, "_status", None) == getattr(nc, "CONNECTED", object())
    )


def append_pub(nc: Any, loop: asyncio.AbstractEventLoop, subject: str, payload: bytes, reply: str) -> int:
    """Queue ``PUB subject [reply] size`` and ``payload`` as nats-py's
    ``publish`` would: the bytes queued; 0, with nothing done, where its own
    publish must run instead: not connected (or draining), its buffer would
    pass its limit (it then flushes and waits), its flusher is not running."""
    if nc._status != nc.CONNECTED:  # reconnecting, draining, closed: nats-py's publish decides
        return 0
    size = len(payload)
    head = (f"PUB {subject} {reply} {size}\r\n" if reply else f"PUB {subject} {size}\r\n").encode()
    total = len(head) + size + 2
    if nc._max_pending_size > 0 and nc._pending_data_size + total > nc._max_pending_size:
        return 0
    flusher = nc._flusher_task
    if flusher is None or flusher.done():
        return 0
    pending = nc._pending
    pending.append(head)
    pending.append(payload)
    pending.append(_CRLF)
    nc._pending_data_size += total
    stats = nc.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += size
    queue = nc._flush_queue
    if queue.empty():  # the flusher writes everything pending when it runs: one wake-up is enough
        queue.put_nowait(loop.create_future())
    return total


class _NoWire:
    """Stands in for a connection's transport the link cannot see (none yet)."""

    @staticmethod
    def get_write_buffer_size() -> int:
        return 0

    @staticmethod
    def abort() -> None:
        pass


NO_WIRE: Any = _NoWire


def wire_of(nc: Any) -> Any:
    """``nc``'s asyncio transport (plain or TLS, asyncio's or uvloop's): what
    it holds is the link's to count, and aborting it drops that at once."""
    transport = getattr(getattr(getattr(nc, "_transport", None), "_io_writer", None), "transport", None)
    if callable(getattr(transport, "get_write_buffer_size", None)) and callable(getattr(transport, "abort", None)):
        return transport
    return NO_WIRE


def drop_pending(nc: Any) -> None:
    """Forget what ``nc`` (of the kind :func:`can_append` accepts) has not written yet."""
    del nc._pending[:]
    nc._pending_data_size = 0
