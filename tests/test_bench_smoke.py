"""The benchmark runs end to end: server subprocesses, the reference peers
(minimal server, minimal clients), table and JSON output. nats is never
needed here, and nothing asserts on timings or on whether a target is met."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| workload | client | loop | ours | unit | reference | reference figure | ratio | target | pass | notes |"


def run_bench(tmp_path: Path, *args: str) -> tuple[list[list[str]], dict[str, Any]]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--loop", "asyncio", "--no-nats", "--no-chart", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert HEADER in lines, proc.stdout
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[lines.index(HEADER) + 2 :] if line.startswith("|")]
    return rows, json.loads(out.read_text(encoding="utf-8"))


def test_bench_quick_latency_against_the_minimal_server(tmp_path: Path) -> None:
    rows, doc = run_bench(tmp_path, "--only", "latency", "--clients", "python")
    assert [r[0] for r in rows] == [
        "latency p50 / p99, 1 in flight, in-process handler",
        "latency p50 / p99, 1 in flight, via a responder (2 hops)",
    ]
    in_process, via_responder = rows
    for row in rows:
        assert row[1:3] == ["python", "asyncio"] and row[4] == "µs"
        assert "/" in row[3] and row[3] != "error"
    # The in-process row has the minimal server's figure, a ratio and a verdict.
    assert "minimal asyncio server" in in_process[5] and "/" in in_process[6]
    assert in_process[7].endswith("×") and in_process[9] in ("pass", "**FAIL**")
    # Without nats, the responder row says why it has no reference.
    assert via_responder[6] == "nats not installed" and via_responder[9] == "-"
    by_key = {r["key"]: r for r in doc["results"]}
    assert set(by_key) == {"latency.python.asyncio", "latency-responder.python.asyncio"}
    assert all(r["values"]["ours"]["samples"] > 0 for r in doc["results"])
    assert by_key["latency.python.asyncio"]["values"]["reference"]["samples"] > 0
    assert any("nats" in x for x in doc["skipped"])


def test_bench_quick_clients_against_the_minimal_clients(tmp_path: Path) -> None:
    langs = ["python", "node"] if shutil.which("node") else ["python"]
    rows, doc = run_bench(tmp_path, "--only", "clients", "--clients", ",".join(langs))
    assert [r[1] for r in rows] == langs
    for row in rows:
        assert row[4] == "rt/s" and row[3] != "error" and row[6] not in ("-", "error")
        assert row[7].endswith("×")
    for result in doc["results"]:
        assert result["values"]["ours"]["rate"] > 0 and result["values"]["reference"]["rate"] > 0


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
