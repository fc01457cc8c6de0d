"""The benchmark runs end to end: server subprocess, responder subprocess,
table and JSON output. Nothing here asserts on timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_latency_prints_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--only", "latency", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert "| workload | result | unit | notes |" in lines
    rows = [line for line in lines if line.startswith("| latency p50 / p99")]
    assert len(rows) == 2, proc.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "µs"
        assert "/" in cells[1] and cells[1] != "error"
    doc = json.loads(out.read_text(encoding="utf-8"))
    keys = {r["key"] for r in doc["results"]}
    assert keys == {"latency", "latency-responder"}
    assert all(r["values"]["samples"] > 0 for r in doc["results"])


def test_bench_rejects_unknown_workload() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown workload" in proc.stderr
