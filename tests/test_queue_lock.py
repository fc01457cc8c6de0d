"""The queue file's single-owner lock, shared with the Node client
(ipc_client/queue_lock.py, js-client/lib/queue_lock.js; docs/resilience.md
§4): ``<queue_path>.lock`` names its owner while it is held (``py:PID``
from Python, ``PID`` from Node) and is removed when given back; one that
names no live process is free, and so is one naming this process or a
``py:`` pid once we hold its flock; one that names another live process (a
Node client holds no flock) is refused with QueueFileInUse, a
QueueFileError."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipc_client import QueueFileInUse
from ipc_client.queue_store import QueueStore
from ipc_client.queue_takeover import pid_alive, pid_named
from ipc_protocol import ErrorCode, QueueFileError


def test_the_lock_file_names_its_owner_while_held_and_is_removed_when_given_back(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = QueueStore(path)
    assert Path(f"{path}.lock").read_text() == f"py:{os.getpid()}"  # what a Node client reads as our pid
    store.close()
    assert not Path(f"{path}.lock").exists()  # this process lives on: nothing may name it as the holder


NO_PID = ["²", "py:²", "١٢", "99999999999999999999", "py:99999999999999999999", "2147483648"]


@pytest.mark.parametrize("left", ["", "\n", "not a pid", "0", "dead", "py:dead", "own", *NO_PID])
def test_a_lock_file_that_names_no_live_process_is_free(tmp_path: Path, left: str) -> None:
    """Empty (as a 2.0 Python client left it), not a pid, a dead process's
    (a crashed Node or Python client's), or this process's: a lock this
    process held would hold the flock we were just given. Not a pid either:
    digits other than ASCII, and a number past pid_t (2**31 - 1), which
    raised OverflowError out of os.kill and kept the queue file shut."""
    path = tmp_path / "queue.db"
    if left == "dead":
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=30, check=True)
        left = child.stdout.strip()
    if left == "py:dead":
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=30, check=True)
        left = f"py:{child.stdout.strip()}"
    if left == "own":
        left = str(os.getpid())
    Path(f"{path}.lock").write_text(left)
    store = QueueStore(path)
    assert Path(f"{path}.lock").read_text() == f"py:{os.getpid()}"
    store.close()


def test_a_lock_file_naming_a_live_process_is_held_a_queue_file_error(tmp_path: Path) -> None:
    """A Node client's lock: its live pid, no flock. Refused, left as it is."""
    path = tmp_path / "queue.db"
    holder = str(os.getppid())
    Path(f"{path}.lock").write_text(holder)
    with pytest.raises(QueueFileInUse) as info:
        QueueStore(path)
    err = info.value
    assert isinstance(err, QueueFileError) and isinstance(err, RuntimeError)  # a RuntimeError as before
    assert (err.code, err.reason, err.path) == (ErrorCode.QUEUE_FILE, "EQUEUELOCKED", str(path))
    assert f"in use by process {holder} " in str(err) and str(path) in str(err)
    assert Path(f"{path}.lock").read_text() == holder  # left to its owner
    assert not path.exists()  # the queue file was not opened


def test_a_second_store_in_this_process_is_refused_by_flock(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    first = QueueStore(path)
    with pytest.raises(QueueFileInUse) as info:
        QueueStore(path)
    assert info.value.code == ErrorCode.QUEUE_FILE
    first.close()
    QueueStore(path).close()


def test_a_python_lock_whose_pid_is_reused_is_free(tmp_path: Path) -> None:
    """A Python client killed while it held the file leaves ``py:PID``; once
    that pid names another live process (pid reuse, here our parent), the
    next Python client, given the flock, still takes the file: no live
    Python client holds it. It was refused as in use by that process.
    While the child lives, the refusal names its pid, as Node's does (it
    said "another client (taking it over: ...)", wrongly)."""
    path = tmp_path / "queue.db"
    script = "import sys\nfrom ipc_client.queue_store import QueueStore\nQueueStore(sys.argv[1]); print('HELD', flush=True); sys.stdin.read()\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"HELD\n"
        with pytest.raises(QueueFileInUse) as info:
            QueueStore(path)  # its flock, while it lives
        assert f"is in use by process {child.pid} (lock file {path}.lock)" in str(info.value) and "taking it over" not in str(info.value)
        assert Path(f"{path}.lock").read_text() == f"py:{child.pid}"
    finally:
        child.kill()
        child.wait(timeout=30)
    Path(f"{path}.lock").write_text(f"py:{os.getppid()}")  # the dead client's pid, now a live process's
    store = QueueStore(path)
    assert Path(f"{path}.lock").read_text() == f"py:{os.getpid()}"
    store.close()


def test_a_takeover_mutex_left_by_a_dead_taker_is_broken_and_a_live_ones_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``<lock>.takeover`` (shared with Node) guards replacing a stale lock;
    one naming a dead process is removed, one naming a live process is
    waited for (``MUTEX_WAIT_S``), then the file is reported in use."""
    path = tmp_path / "queue.db"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    Path(f"{path}.lock").write_text(dead)
    Path(f"{path}.lock.takeover").write_text(dead)
    QueueStore(path).close()
    assert os.listdir(tmp_path) == ["queue.db"]  # lock, mutex and temporary files gone
    Path(f"{path}.lock").write_text(dead)
    Path(f"{path}.lock.takeover").write_text(str(os.getppid()))  # a live taker, that never lets go
    monkeypatch.setattr("ipc_client.queue_takeover.MUTEX_WAIT_S", 0.05)
    with pytest.raises(QueueFileInUse, match=r"in use by another client \(taking it over: .*\.lock\.takeover\)"):
        QueueStore(path)
    assert Path(f"{path}.lock").read_text() == dead and Path(f"{path}.lock.takeover").read_text() == str(os.getppid())
    # A mutex older than any live takeover was left by a taker that died, its pid since reused: broken.
    old = time.time() - 60
    os.utime(f"{path}.lock.takeover", (old, old))
    QueueStore(path).close()
    assert os.listdir(tmp_path) == ["queue.db"]


@pytest.mark.parametrize("left", NO_PID)
def test_a_takeover_mutex_naming_no_pid_is_broken(tmp_path: Path, left: str) -> None:
    path = tmp_path / "queue.db"
    Path(f"{path}.lock").write_text("99999999999999999999")
    Path(f"{path}.lock.takeover").write_text(left)
    QueueStore(path).close()
    assert os.listdir(tmp_path) == ["queue.db"]  # lock, mutex and temporary files gone


def test_a_pid_is_ascii_digits_within_pid_t() -> None:
    assert [pid_named(t) for t in ("12", "py:12", "²", "py:²", "١٢", "+12", " 12", "1_2", "0", "2147483647", "2147483648")] == [
        12, 12, None, None, None, None, None, None, None, 2**31 - 1, None
    ]
    assert not pid_alive(2**31) and not pid_alive(10**20)
