"""The single-owner lock of a queue file, shared with the Node client.

Both clients lock ``<queue_path>.lock`` the same way, so neither opens a
file the other holds (two owners would send every message twice):

- the lock file holds its owner's pid: it is held while that process is
  alive, and a lock file with no pid (empty) or a dead one is free, taken
  over by the next owner;
- Python also holds ``flock`` on it (released by the kernel if the process
  dies), so two Python clients never both hold it, even in one process;
- a new lock file is made with its pid already in it (a temporary file
  linked into place), so a reader never sees one half-made; the owner
  removes it when it gives the lock back.

docs/resilience.md §4, "Persistence"; js-client/lib/queue_lock.js.
"""

from __future__ import annotations

import os

from ipc_protocol import QueueFileError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no ownership check
    fcntl = None  # type: ignore[assignment]

__all__ = ["QueueFileInUse", "lock_queue_file", "unlock_queue_file", "pid_alive"]


class QueueFileInUse(QueueFileError, RuntimeError):
    """Another client (in this process or another, Python or Node) owns the
    queue file. A QueueFileError (code ``queue_file``) with ``reason``
    ``EQUEUELOCKED``, as Node's QueueFileInUseError; still a RuntimeError,
    as it was before it was a QueueFileError."""

    reason = "EQUEUELOCKED"


def pid_alive(pid: int) -> bool:
    """Whether a process is alive (EPERM: it is, under another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - a pid the OS refuses to check
        return False
    return True


def _holder(fd: int) -> int | None:
    """The pid the lock file names, None when it names none (empty, not a number)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _open(lock: str) -> int:
    """Open the lock file, made first with our pid in it when there is none."""
    try:
        return os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        pass
    tmp = f"{lock}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(os.getpid()))
    try:
        os.link(tmp, lock)
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system: create it, then write
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
    finally:
        os.unlink(tmp)
    return os.open(lock, os.O_RDWR)  # FileNotFoundError: given back meanwhile


def lock_queue_file(path: str, what: str) -> int | None:
    """Take ``<path>.lock``; its fd, to give to :func:`unlock_queue_file`.

    Raises QueueFileInUse when a live process holds it (a Python client's
    flock, or a live pid in it: a Node client's), QueueFileError when it
    cannot be made. ``what`` names the file in messages (``queue_path '...'``).
    """
    if fcntl is None:  # pragma: no cover
        return None
    lock = f"{path}.lock"
    for _ in range(5):
        try:
            fd = _open(lock)
        except FileNotFoundError:
            continue  # given back meanwhile
        except OSError as exc:
            raise QueueFileError(f"{what}: cannot create its lock file {lock}: {exc}", path=path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _in_use(path, what, lock, None) from None
        try:
            if not _same_file(fd, lock):
                os.close(fd)  # given back and removed before our flock: try the new one
                continue
            pid = _holder(fd)
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                os.close(fd)
                raise _in_use(path, what, lock, pid)  # a Node client's lock: no flock, its pid
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise QueueFileError(f"{what}: cannot write its lock file {lock}: {exc}", path=path) from exc
        return fd
    raise _in_use(path, what, lock, None)


def unlock_queue_file(path: str, fd: int | None) -> None:
    """Give the lock back: empty the lock file and remove it (if it is still
    ours), then release the flock. Emptied first: a lock file that cannot be
    removed must not name this process, alive after it, as its holder."""
    if fd is None:
        return
    lock = f"{path}.lock"
    try:
        os.ftruncate(fd, 0)
        if _same_file(fd, lock):
            os.unlink(lock)  # under our flock: a client that opened it meanwhile sees it gone and retries
    except OSError:
        pass  # an empty lock file is free all the same
    os.close(fd)


def _same_file(fd: int, lock: str) -> bool:
    try:
        st = os.stat(lock)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _in_use(path: str, what: str, lock: str, pid: int | None) -> QueueFileInUse:
    holder = f"process {pid}" if pid is not None else "another client"
    return QueueFileInUse(
        f"{what} is in use by {holder} (lock file {lock}): a persisted queue belongs to one client", path=path
    )
