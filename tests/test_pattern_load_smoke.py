"""bench/pattern_load.py runs end to end on a small scale: the real server
in its own process, the hog process, the victim, and the tables in theirs.
Nothing asserts on timings: speed lives in the benchmark's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "pattern_load.py")


def _run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_live_scenario_reports_every_phase() -> None:
    out = _run("live", "--patterns", "300", "--seconds", "0.3", "--idle", "0.2", "--rate", "200")
    assert "patterns: 300" in out
    for phase in ("idle", "subscribes 300 patterns", "publishes on new channels", "disconnects"):
        line = next(line for line in out.splitlines() if phase in line)
        assert "p99" in line and "inf" not in line, out  # every request answered
    assert "memory per pattern" in out


def test_tables_scenario_prints_timings_and_memory() -> None:
    out = _run("tables", "--patterns", "2000")
    assert "find miss" in out and "2,000" in out
    assert "SubscriptionTable:" in out and "ResponderTable:" in out
