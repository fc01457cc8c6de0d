"""The benchmark runs end to end: server subprocesses, the reference peers
(minimal server, minimal clients), table and JSON output; its two sides of a
ratio are measured in alternating rounds. nats is never needed here, and
nothing asserts on timings or on whether a target is met."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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
    paired = by_key["latency.python.asyncio"]["values"]
    assert paired["reference"]["samples"] > 0
    # Each side reports its rounds' p99; the raw samples stay out of the JSON.
    rounds = doc["settings"]["latency_rounds"]
    assert len(paired["ours"]["rounds"]) == len(paired["reference"]["rounds"]) == rounds
    assert not any(isinstance(v, list) and len(v) > rounds for side in ("ours", "reference") for v in paired[side].values())
    assert any("nats" in x for x in doc["skipped"])


def test_bench_quick_clients_against_the_minimal_clients(tmp_path: Path) -> None:
    langs = ["python", "node"] if shutil.which("node") else ["python"]
    rows, doc = run_bench(tmp_path, "--only", "clients", "--clients", ",".join(langs))
    assert [r[1] for r in rows] == [lang for lang in langs for _ in (64, 16)]
    assert [r[0].endswith(", 16 in flight") for r in rows] == [False, True] * len(langs)
    for row in rows:
        assert row[4] == "rt/s" and row[3] != "error" and row[6] not in ("-", "error")
        assert row[7].endswith("×")
    for result in doc["results"]:
        ours, reference = result["values"]["ours"], result["values"]["reference"]
        assert ours["rate"] > 0 and reference["rate"] > 0
        assert len(ours["rounds"]) == len(reference["rounds"]) == doc["settings"]["rounds"]


def test_bench_quick_servers_with_the_same_minimal_clients(tmp_path: Path) -> None:
    rows, doc = run_bench(tmp_path, "--only", "servers", "--clients", "python")
    assert [r[0] for r in rows] == [
        "request/response, minimal asyncio client, in-process handler, 64 in flight",
        "pub/sub fan-out 1 -> 4, minimal asyncio clients, delivered msgs/s",
        "request/response via a responder client (2 hops), our clients, 64 in flight",
    ]
    assert rows[2][8] == "-" and rows[2][7].endswith("×")  # a reference row, no target
    by_key = {r["key"]: r["values"] for r in doc["results"]}
    rr, fanout = by_key["servers-rr.python.asyncio"], by_key["servers-fanout.python.asyncio"]
    assert rr["ours"]["rate"] > 0 and rr["reference"]["rate"] > 0
    # The minimal server relays through our responder client too (a request forwarded, its answer relayed).
    relayed = by_key["servers-rr-responder.python.asyncio"]
    assert relayed["ours"]["rate"] > 0 and relayed["reference"]["rate"] > 0 and relayed["reference"]["responder_cpu_us"] > 0
    # The cores its three processes kept busy: their CPU per round trip times the rate.
    assert "cores busy (reference " in rows[2][10]
    assert doc["settings"]["rounds"] == 1  # one window: the figures come from the same one
    for side in (relayed["ours"], relayed["reference"]):
        cpu_us = side["server_cpu_us"] + side["client_cpu_us"] + side["responder_cpu_us"]
        assert side["cores_busy"] == pytest.approx(cpu_us * side["rate"] / 1e6, rel=1e-9)
        assert 0 < side["cores_busy"] < (os.cpu_count() or 1) + 0.5
    # Every publish reached every minimal subscriber, on both servers.
    assert fanout["ours"]["lost"] == 0 and fanout["reference"]["lost"] == 0
    assert fanout["ours"]["published"] > 0 and fanout["reference"]["published"] > 0


def load_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/bench.py as a module (it imports its neighbours from bench/)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_tool", ROOT / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_tool", module)
    spec.loader.exec_module(module)
    return module


def recording_side(name: str, calls: list[str], fail_on_call: int = 0) -> Any:
    """A fake measurement: records its turn, returns the call's number, or fails on its nth call."""

    def measure() -> int:
        calls.append(name)
        if calls.count(name) == fail_on_call:
            raise RuntimeError(f"{name} failed")
        return len(calls)

    return measure


def test_interleave_alternates_which_side_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_bench(monkeypatch)
    calls: list[str] = []
    pair = bench.interleave(3, recording_side("ours", calls), recording_side("ref", calls), lambda rounds: {"rounds": rounds})
    assert calls == ["ours", "ref", "ref", "ours", "ours", "ref"]
    assert pair.ours == {"rounds": [1, 4, 5]} and pair.reference == {"rounds": [2, 3, 6]}
    assert pair.reference_error is None


def test_interleave_keeps_measuring_ours_when_the_reference_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_bench(monkeypatch)
    calls: list[str] = []
    pair = bench.interleave(3, recording_side("ours", calls), recording_side("ref", calls, fail_on_call=2), lambda rounds: {"rounds": rounds})
    assert calls == ["ours", "ref", "ref", "ours", "ours"]
    assert pair.ours == {"rounds": [1, 4, 5]} and pair.reference is None
    assert isinstance(pair.reference_error, RuntimeError)


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


def test_latency_round_drops_the_samples_of_its_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    load_bench(monkeypatch)
    bench = importlib.import_module("_bench_measure")
    samples = [400_000.0, 400_000.0, 400_000.0, 1.0, 2.0]  # µs: the first three span 1.2 s
    assert bench._after_warmup(samples, 1.0) == [1.0, 2.0]
    with pytest.raises(RuntimeError):
        bench._after_warmup(samples[:3], 1.5)
