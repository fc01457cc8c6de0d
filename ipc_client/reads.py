"""Where a connection's reads land (``asyncio.BufferedProtocol.get_buffer``,
as js-client/lib/reads.js is the socket's ``onread``): the rest of a large
frame's own buffer while one is assembled, so its bytes go from the kernel
straight into the frame (``FrameDecoder.read_buffer``); else the thread's
read buffer, which every connection of the thread shares (a loop reads one
socket at a time) and which the protocol copies what it keeps out of before
the next read. asyncio's plain ``Protocol`` path allocates 256 KiB per read
instead, which glibc serves with mmap: three more system calls (mmap,
mremap, munmap) and fresh page faults on every read.
"""

from __future__ import annotations

import threading

__all__ = ["read_buffer", "READ_BUFFER_BYTES"]

READ_BUFFER_BYTES = 256 * 1024
_thread = threading.local()


def read_buffer() -> memoryview:
    """This thread's read buffer."""
    view: memoryview | None = getattr(_thread, "read_buffer", None)
    if view is None:
        view = _thread.read_buffer = memoryview(bytearray(READ_BUFFER_BYTES))
    return view
