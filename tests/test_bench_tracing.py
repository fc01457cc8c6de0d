"""bench/tracing_cost.py runs, small (its figures are in docs/performance.md;
timings are never asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_tracing_cost_runs_small() -> None:
    if shutil.which("node") is None:
        pytest.skip("the bench runs Node clients too")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tracing_cost.py"), "--before", str(ROOT), "--rounds", "1", "--count", "100"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| python") or line.startswith("| node")]
    assert len(rows) == 6, proc.stdout
