"""bench/large_payloads.py runs, small (its figures are in docs/performance.md;
timings are never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_large_payloads_runs_small() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "large_payloads.py"), "--rows", "5", "--inflight", "4", "--count", "40", "--rounds", "1", "--before", str(ROOT)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "round trips/s" not in line]
    assert len(rows) == 4, proc.stdout
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows), proc.stdout
