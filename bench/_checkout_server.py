"""``python -m ipc_server`` of a given checkout, for the benchmarks that
compare two checkouts (a change against the commit before it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["start_server"]


def start_server(root: Path) -> tuple[subprocess.Popen[str], int]:
    """The server of the checkout at ``root`` on a free loopback port: its process and port."""
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "WARNING"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, int(line.rpartition(":")[2])
