"""Where a connection's reads land (``asyncio.BufferedProtocol.get_buffer``,
as js-client/lib/reads.js is the socket's ``onread``): the rest of a large
frame's own buffer while one is assembled, so its bytes go from the kernel
straight into the frame (``FrameDecoder.read_buffer``); else the thread's
read buffer, which every connection of the thread shares (a loop reads one
socket at a time) and which the protocol copies what it keeps out of before
the next read. asyncio's plain ``Protocol`` path allocates 256 KiB per read
instead, which glibc serves with mmap: three more system calls (mmap,
mremap, munmap) and fresh page faults on every read. The thread also keeps
large frames' buffers for the next ones (``frame_buffers``).
"""

from __future__ import annotations

import threading

from ipc_protocol.frame_buffers import FrameBuffers

__all__ = ["read_buffer", "frame_buffers", "READ_BUFFER_BYTES"]

READ_BUFFER_BYTES = 256 * 1024
_thread = threading.local()


def read_buffer() -> memoryview:
    """This thread's read buffer."""
    view: memoryview | None = getattr(_thread, "read_buffer", None)
    if view is None:
        view = _thread.read_buffer = memoryview(bytearray(READ_BUFFER_BYTES))
    return view


def frame_buffers() -> FrameBuffers:
    """This thread's kept large-frame buffers (its loop's connections share them)."""
    buffers: FrameBuffers | None = getattr(_thread, "frame_buffers", None)
    if buffers is None:
        buffers = _thread.frame_buffers = FrameBuffers()
    return buffers
