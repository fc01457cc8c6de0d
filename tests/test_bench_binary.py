"""bench/binary.py runs end to end, small and bounded: every row of every
kind (raw attachments and base64, in-process echo and responder, the raw
socket echo; Node's when node is there) and the ratios of the targets. The
figures themselves live in docs/performance.md; nothing here asserts on
them."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_the_binary_benchmark_runs_every_row() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _common import node_binary
    finally:
        sys.path.pop(0)
    with_node = node_binary() is not None
    argv = [sys.executable, str(ROOT / "bench" / "binary.py"), "--sizes", "4096,70000", "--seconds", "0.2", "--rounds", "2"]
    if not with_node:
        argv.append("--no-node")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    rows = [f for f in figures if "caller" in f]
    kinds = {(r["caller"], r["mode"], r["echo"], r["size"]) for r in rows}
    callers = ["python", "node"] if with_node else ["python"]
    for size in (4096, 70000):
        assert ("python", "raw-socket", "raw echo", size) in kinds
        for caller in callers:
            for mode in ("raw", "base64"):
                for echo in ("server", "responder"):
                    assert (caller, mode, echo, size) in kinds
    assert all(r["round_trips"] > 0 and r["mb_per_s"] > 0 for r in rows)
    targets = [f for f in figures if f.get("figure") == "targets"]
    assert [t["size"] for t in targets] == [4096, 70000]
    assert "python_server_raw_over_base64" in targets[1] and "python_server_socket_echo_over_raw" in targets[1]
    assert len(targets[1]["rounds"]) == 2 and {r["round"] for r in rows} == {0, 1}
