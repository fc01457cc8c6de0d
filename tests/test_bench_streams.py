"""bench/streams.py runs (small and bounded) and its memory figure holds:
a producer whose consumer stopped reading pulls nothing more
(docs/protocol.md §15.3). The figures themselves live in docs/performance.md."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT


def test_the_streams_benchmark_runs_and_the_stalled_producer_stays_put() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _common import node_binary
    finally:
        sys.path.pop(0)
    if node_binary() is None:
        pytest.skip("no node")
    argv = [sys.executable, str(ROOT / "bench" / "streams.py"), "--items", "300", "--rounds", "1", "--aborts", "3", "--stall-s", "0.5"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    throughput, memory, abort = figures
    assert throughput["python_to_node_items_per_s"] > 0 and throughput["node_to_python_items_per_s"] > 0
    assert memory["growth"]["items_pulled"] == 0  # held at its credit: 100 taken + the window
    assert memory["samples"][0]["items_pulled"] <= 100 + 64
    assert abort["rounds"] == 3 and abort["median_ms"] >= 0


def test_the_in_process_streams_benchmark_runs() -> None:
    argv = [sys.executable, str(ROOT / "bench" / "streams_in_process.py"), "--items", "300", "--rounds", "1", "--windows", "64,100000"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(f["checkout"], f["window"]) for f in figures] == [("this", 64), ("this", 100000)]
    assert all(f["best_items_per_s"] > 0 and f["best_server_cpu_us_per_item"] > 0 for f in figures)
