"""The takeover mutex of a queue file's lock, shared with the Node client
(js-client/lib/queue_lock.js, ``takeMutex``).

A stale lock (its owner dead) is replaced only under ``<lock>.takeover``,
made exclusively with the taker's pid in it and removed after: without it,
two clients that both saw the lock stale each replaced it, the second
deleting the first one's fresh lock, and both owned the queue file. The
mutex is held for microseconds; one naming a dead process (or this one:
takers in this process take turns) was left by a taker that died, and is
broken: moved aside first, so a fresh one made meanwhile is put back
rather than deleted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

__all__ = ["pid_alive", "pid_named", "takeover_mutex"]

# How long a live taker may hold the mutex before we give up, s: it is held for microseconds.
MUTEX_WAIT_S = 2.0
# A mutex older than this was left by a taker that died, whatever process its pid now names (reused).
MUTEX_STALE_S = 10.0


# The largest pid (pid_t is a 32-bit int): a larger number names no process.
MAX_PID = 2**31 - 1


def pid_named(text: str) -> int | None:
    """The pid a lock's or mutex's text names, ``PID`` or ``py:PID`` in ASCII
    digits, 1 to MAX_PID; None if it names none. ``str.isdigit()`` takes
    ``'²'`` (which ``int()`` refuses), and ``os.kill`` an int past pid_t
    raised OverflowError out of the lock: 20 digits, and the file was
    never opened again."""
    digits = text[3:] if text.startswith("py:") else text
    if not (digits.isascii() and digits.isdigit()):
        return None
    pid = int(digits)
    return pid if 0 < pid <= MAX_PID else None


def pid_alive(pid: int) -> bool:
    """Whether a process is alive (EPERM: it is, under another user)."""
    if not 0 < pid <= MAX_PID:
        return False  # os.kill would raise OverflowError; no process has it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - a pid the OS refuses to check
        return False
    return True


def _create(path: str) -> bool:
    """Make ``path`` with our pid in it, in one step; False if it exists."""
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(os.getpid()))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: create it, then write
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True
    finally:
        os.unlink(tmp)


def _read(path: str) -> tuple[int, int, str, float] | None:
    """(dev, inode, text, mtime) of a file, read through one descriptor; None if gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino, os.pread(fd, 32, 0).decode("ascii", "replace").strip(), st.st_mtime
    finally:
        os.close(fd)


def _dead(seen: tuple[int, int, str, float]) -> bool:
    """Whether a mutex's holder is gone: no pid, a dead one, ours (see the
    module), or a mutex older than any live takeover (its pid reused)."""
    pid = pid_named(seen[2])
    if pid is None or pid == os.getpid() or not pid_alive(pid):
        return True
    return seen[3] < time.time() - MUTEX_STALE_S


def _break(path: str, seen: tuple[int, int, str, float]) -> None:
    aside = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.stale"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    st = os.stat(aside)
    if (st.st_dev, st.st_ino) != seen[:2]:
        with contextlib.suppress(OSError):
            os.link(aside, path)  # a live taker's: put back (unless another was made meanwhile)
    os.unlink(aside)


def _drop(path: str) -> None:
    seen = _read(path)
    if seen is not None and seen[2] == str(os.getpid()):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def takeover_mutex(lock: str) -> Iterator[bool]:
    """Hold ``<lock>.takeover`` for the block; yields False when a live
    taker kept it past MUTEX_WAIT_S (the block must then do nothing)."""
    path = f"{lock}.takeover"
    deadline = time.monotonic() + MUTEX_WAIT_S
    while not _create(path):
        seen = _read(path)
        if seen is not None and _dead(seen):
            _break(path, seen)
        elif time.monotonic() > deadline:
            yield False
            return
        elif seen is not None:
            time.sleep(0.001)  # a live taker: done within microseconds
    try:
        yield True
    finally:
        _drop(path)
