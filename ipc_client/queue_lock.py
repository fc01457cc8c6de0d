"""The single-owner lock of a queue file, shared with the Node client.

Both clients lock ``<queue_path>.lock`` the same way, so neither opens a
file the other holds (two owners would send every message twice):

- the lock file names its owner: ``PID`` (Node) or ``py:PID`` (Python). It
  is held while that process is alive; a lock file with no pid (empty) or
  a dead one is free, taken over by the next owner. A lock naming this
  process is free too unless this process holds it (a restarted
  container's pid 1 finds its own pid in the lock its crashed run left);
- Python also holds ``flock`` on it (released by the kernel if the process
  dies), so two Python clients never both hold it, even in one process.
  Holding the flock, Python knows no live Python client owns it: a
  ``py:PID`` lock is free to it whatever process that pid now names;
- a new lock file is made with its pid already in it (a temporary file
  linked into place), so a reader never sees one half-made; the owner
  removes it when it gives the lock back;
- a stale lock is taken over under ``<lock>.takeover`` (queue_takeover.py),
  the mutex Node takes too: the lock is re-read under it, and left alone
  if its file or its text changed since it was judged stale.

docs/resilience.md §4, "Persistence"; js-client/lib/queue_lock.js.
"""

from __future__ import annotations

import os
import threading

from ipc_protocol import QueueFileError

from .queue_takeover import pid_alive, pid_named, takeover_mutex

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no ownership check
    fcntl = None  # type: ignore[assignment]

__all__ = ["QueueFileInUse", "lock_queue_file", "unlock_queue_file", "pid_alive"]

# One taker at a time in this process: a takeover mutex naming this pid is then one a dead run left.
_in_process = threading.Lock()


class QueueFileInUse(QueueFileError, RuntimeError):
    """Another client (in this process or another, Python or Node) owns the
    queue file. A QueueFileError (code ``queue_file``) with ``reason``
    ``EQUEUELOCKED``, as Node's QueueFileInUseError; still a RuntimeError,
    as it was before it was a QueueFileError."""

    reason = "EQUEUELOCKED"


def _text(fd: int) -> str:
    return os.pread(fd, 32, 0).decode("ascii", "replace").strip()


def _live_holder(text: str) -> int | None:
    """The live process a lock's text names, read while we hold its flock:
    ``py:PID`` never (a live Python owner would hold the flock), ``PID`` (a
    Node client's) if alive and not us; None when it names none."""
    pid = None if text.startswith("py:") else pid_named(text)
    return pid if pid is not None and pid != os.getpid() and pid_alive(pid) else None


def _mine() -> bytes:
    return f"py:{os.getpid()}".encode()


def _open(lock: str) -> tuple[int, bool]:
    """Open the lock file, made first with our pid in it when there is none;
    and whether we made it."""
    try:
        return os.open(lock, os.O_RDWR), False
    except FileNotFoundError:
        pass
    tmp = f"{lock}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    with open(tmp, "wb") as f:
        f.write(_mine())
    made = True
    try:
        os.link(tmp, lock)
    except FileExistsError:
        made = False
    except OSError:  # no hard links on this file system: create it, then write
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            made = False
        else:
            os.write(fd, _mine())
            os.close(fd)
    finally:
        os.unlink(tmp)
    return os.open(lock, os.O_RDWR), made  # FileNotFoundError: given back meanwhile


def lock_queue_file(path: str, what: str) -> int | None:
    """Take ``<path>.lock``; its fd, to give to :func:`unlock_queue_file`.

    Raises QueueFileInUse when a live process holds it (a Python client's
    flock, or a live Node pid in it), QueueFileError when it cannot be
    made. ``what`` names the file in messages (``queue_path '...'``).
    """
    if fcntl is None:  # pragma: no cover
        return None
    with _in_process:
        return _lock(path, what, f"{path}.lock")


def _lock(path: str, what: str, lock: str) -> int:
    for _ in range(5):
        try:
            fd, made = _open(lock)
        except FileNotFoundError:
            continue  # given back meanwhile
        except OSError as exc:
            raise QueueFileError(f"{what}: cannot create its lock file {lock}: {exc}", path=path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = pid_named(_text(fd))  # a live Python client: its pid, named as Node names it
            except OSError:
                holder = None
            os.close(fd)
            raise _in_use(path, what, lock, holder, taking_over=False) from None
        try:
            if _same_file(fd, lock) and (_text(fd).encode() == _mine() if made else _take_over(fd, lock, path, what)):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # given back, replaced or rewritten meanwhile: look again
    raise _in_use(path, what, lock, None)


def _take_over(fd: int, lock: str, path: str, what: str) -> bool:
    """Write our pid into a lock file that names no live owner, under the
    takeover mutex; False when it changed meanwhile (look again)."""
    seen = _text(fd)
    pid = _live_holder(seen)
    if pid is not None:
        raise _in_use(path, what, lock, pid)  # a Node client's lock: no flock, its pid
    try:
        with takeover_mutex(lock) as got:
            if not got:
                raise _in_use(path, what, lock, None)
            if not _same_file(fd, lock) or _text(fd) != seen:
                return False  # replaced by a Node client, or given back
            os.ftruncate(fd, 0)
            os.pwrite(fd, _mine(), 0)
    except OSError as exc:
        raise QueueFileError(f"{what}: cannot write its lock file {lock}: {exc}", path=path) from exc
    return _same_file(fd, lock) and _text(fd).encode() == _mine()


def unlock_queue_file(path: str, fd: int | None) -> None:
    """Give the lock back: remove the lock file (if it is still ours), then
    release the flock. Removed, not emptied first: an empty lock is free, and
    a Node client taking it over meanwhile would have its lock removed. One
    that cannot be removed is emptied: it must not name this process, alive
    after it, as its holder."""
    if fd is None:
        return
    lock = f"{path}.lock"
    try:
        if _same_file(fd, lock):
            os.unlink(lock)  # under our flock: a client that opened it meanwhile sees it gone and retries
    except OSError:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
    os.close(fd)


def _same_file(fd: int, lock: str) -> bool:
    try:
        st = os.stat(lock)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _in_use(path: str, what: str, lock: str, pid: int | None, *, taking_over: bool = True) -> QueueFileInUse:
    """Named by its pid when known; ``taking_over`` when the lock is refused
    because another client holds its takeover mutex."""
    if pid is not None:
        holder = f"process {pid}"
    else:
        holder = f"another client (taking it over: {lock}.takeover)" if taking_over else "another client"
    return QueueFileInUse(
        f"{what} is in use by {holder} (lock file {lock}): a persisted queue belongs to one client", path=path
    )
