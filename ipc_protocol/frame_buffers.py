"""Buffers for large frames, kept and reused once nothing holds them.

A frame of at least 64 KiB that one read does not complete is assembled in
a buffer of its own, read in place (``FrameDecoder``). A fresh buffer of
megabytes is no cheap thing: glibc serves it with ``mmap``, every one of
its pages faults on first touch, and ``munmap`` gives it back when the
frame is done, so an 8 MiB frame cost about as much in the kernel's memory
management as in its copies (docs/performance.md, "Binary payloads").

So the buffers are kept, up to ``max_bytes`` for one event loop (it reads
one socket at a time, and its connections share them: the server's
``SharedReads``, the client's thread in ``ipc_client/reads.py``; never two
threads, which could both find a buffer free), and a frame takes one that
is free and the right size. Free means that nothing but this pool holds
it: a binary body handed on as it is, its attachments' views (§16.4), a
relayed frame a transport still writes from — each holds a reference, and
a buffer so held is never written to. The test is the reference count,
which every view and every holder of the buffer's memory raises
(CPython's buffer protocol keeps the object alive).
"""

from __future__ import annotations

import sys

__all__ = ["FrameBuffers", "MAX_KEPT_BYTES", "KEPT_FROM_BYTES"]

# What a loop keeps at most, and the smallest buffer worth keeping.
MAX_KEPT_BYTES = 32 * 1024 * 1024
KEPT_FROM_BYTES = 256 * 1024

_refcount = sys.getrefcount


def _free_count() -> int:
    """The reference count of a kept buffer that nothing else holds, seen
    from the loop in :meth:`FrameBuffers.reuse` (the list, the loop
    variable, the call's argument)."""
    kept = [bytearray(1)]
    for buf in kept:
        return _refcount(buf)
    raise AssertionError  # pragma: no cover


_FREE = _free_count()


class FrameBuffers:
    """The large-frame buffers of one loop. ``reuse(n)`` gives a kept
    buffer of exactly ``n`` bytes (its contents undefined) if one is free,
    ``keep(buf)`` offers one back once its frame is complete; it is reused
    only when free."""

    __slots__ = ("max_bytes", "_kept", "_kept_bytes")

    def __init__(self, max_bytes: int = MAX_KEPT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: list[bytearray] = []
        self._kept_bytes = 0

    @property
    def kept_bytes(self) -> int:
        return self._kept_bytes

    def reuse(self, n: int) -> bytearray | None:
        """A free kept buffer resized to ``n`` bytes, whose allocation fits
        ``n`` without moving (at most twice as large); None if there is none."""
        if n >= KEPT_FROM_BYTES:
            for buf in self._kept:
                if _refcount(buf) == _FREE and n < buf.__alloc__() <= 2 * n + 2:
                    size = len(buf)
                    if n < size:
                        del buf[n:]  # within the allocation: no realloc
                    elif n > size:
                        buf += bytes(n - size)
                    return buf
        return None

    def keep(self, buf: bytearray) -> None:
        """``buf``'s frame is complete: keep it for a later frame if there is room
        (making room from free buffers, the oldest first)."""
        size = buf.__alloc__()
        if size < KEPT_FROM_BYTES or size > self.max_bytes:
            return
        kept = self._kept
        for other in kept:
            if other is buf:
                return
        if self._kept_bytes + size > self.max_bytes:
            self._evict(self._kept_bytes + size - self.max_bytes)
            if self._kept_bytes + size > self.max_bytes:
                return
        kept.append(buf)
        self._kept_bytes += size

    def _evict(self, need: int) -> None:
        kept = self._kept
        i = 0
        while i < len(kept) and need > 0:
            buf = kept[i]
            if _refcount(buf) == _FREE:
                size = buf.__alloc__()
                del kept[i]
                self._kept_bytes -= size
                need -= size
            else:
                i += 1

    def __repr__(self) -> str:
        return f"<FrameBuffers {len(self._kept)} kept, {self._kept_bytes} bytes of {self.max_bytes}>"
