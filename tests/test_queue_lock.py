"""The queue file's single-owner lock, shared with the Node client
(ipc_client/queue_lock.py, js-client/lib/queue_lock.js; docs/resilience.md
§4): ``<queue_path>.lock`` names its owner's pid while it is held and is
removed when given back; one that names no live process is free; one that
names a live process other than this one (a Node client holds no flock) is
refused with QueueFileInUse, a QueueFileError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ipc_client import QueueFileInUse
from ipc_client.queue_store import QueueStore
from ipc_protocol import ErrorCode, QueueFileError


def test_the_lock_file_names_its_owner_while_held_and_is_removed_when_given_back(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = QueueStore(path)
    assert Path(f"{path}.lock").read_text() == str(os.getpid())  # what a Node client reads
    store.close()
    assert not Path(f"{path}.lock").exists()  # this process lives on: nothing may name it as the holder


@pytest.mark.parametrize("left", ["", "\n", "not a pid", "0", "dead"])
def test_a_lock_file_that_names_no_live_process_is_free(tmp_path: Path, left: str) -> None:
    """Empty (as a 2.0 Python client left it), not a pid, or a dead process's (a crashed Node client's)."""
    path = tmp_path / "queue.db"
    if left == "dead":
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=30, check=True)
        left = child.stdout.strip()
    Path(f"{path}.lock").write_text(left)
    store = QueueStore(path)
    assert Path(f"{path}.lock").read_text() == str(os.getpid())
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
