"""Bounded fuzz run of both decoders and a live server (bench/README.md,
"Fuzzing"; not part of the test suite, which runs it once with tiny counts).

    python bench/fuzz.py                           # 1,000,000 frames to each target
    python bench/fuzz.py --frames 20000 --seconds 60
    python bench/fuzz.py --only node,server --seed 7 --json fuzz.json

Targets (``--only``, comma-separated; default all):

- ``python``: the Python core (``ipc_protocol``): framing decoder, envelope
  decoder, ``ServerProtocol`` and ``ClientProtocol``, fed random and mutated
  streams whole, in random chunks and (one stream in 8) byte by byte
  (bench/_fuzz_decoders.py);
- ``node``: the js-client's framing decoder, envelope decoder and client
  protocol, the same way, in a Node process (bench/node/fuzz_decoder.js;
  skipped when ``node`` is not found);
- ``server``: ``python -m ipc_server`` on 127.0.0.1, fed by hostile
  connections while well-behaved clients work beside them
  (bench/_fuzz_live.py);
- ``differential``: the same bodies to both envelope decoders, whose
  verdicts must agree (bench/_fuzz_differential.py, with
  bench/node/fuzz_verdicts.js; skipped without ``node``).

The invariant: every input decodes or raises a documented error (a code of
interop-tests/spec/error_codes.json), the way the bytes are split never
changes the outcome, nothing hangs, the server never crashes or logs an
error, the good clients see zero errors, and the two decoders agree.
Each target stops at ``--frames`` frames or ``--seconds`` seconds,
whichever comes first; the Python and Node decoders run at the same time,
then the differential, then the server. Progress
goes to stderr, the counts to stdout (``--json PATH``: all of them). Exit
status 1 when the invariant broke (the breaches, with their seeds and
bytes, are printed), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, REPO_ROOT, node_binary  # noqa: E402  (puts the checkout on sys.path)
from _fuzz_decoders import SPEC_CODES, DecoderFuzz  # noqa: E402
from _fuzz_differential import run_differential  # noqa: E402
from _fuzz_live import run_live  # noqa: E402

TARGETS = ("python", "node", "differential", "server")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_python(frames: int, seconds: float, seed: int) -> dict[str, Any]:
    fuzz = DecoderFuzz(seed)
    started = time.monotonic()
    next_report = 100_000
    while fuzz.frames < frames and time.monotonic() - started < seconds:
        fuzz.step()
        if fuzz.frames >= next_report:
            next_report += 100_000
            progress(f"python: {fuzz.frames} frames, {fuzz.breaches} breaches, {time.monotonic() - started:.0f} s")
    report = fuzz.report()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["stopped_by"] = "frames" if fuzz.frames >= frames else "time"
    return report


def start_node(frames: int, seconds: float, seed: int) -> subprocess.Popen[str] | None:
    node = node_binary()
    if node is None:
        return None
    script = BENCH_DIR / "node" / "fuzz_decoder.js"
    argv = [node, str(script), "--frames", str(frames), "--seconds", str(seconds), "--seed", str(seed)]
    return subprocess.Popen(argv, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=None, stdin=subprocess.DEVNULL, text=True)


def finish_node(proc: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"breaches": 1, "breach_examples": [{"error": f"the Node fuzzer did not finish within {seconds + 120:g} s"}]}
    lines = [line for line in out.splitlines() if line.startswith("result ")]
    if proc.returncode != 0 or not lines:
        return {"breaches": 1, "breach_examples": [{"error": f"the Node fuzzer failed (exit status {proc.returncode}): {out[-2000:]}"}]}
    return json.loads(lines[-1][len("result ") :])


def _outcomes(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def print_decoders(name: str, r: dict[str, Any]) -> None:
    if "streams" not in r:
        print(f"{name}: FAILED: {r['breach_examples']}")
        return
    bytewise = f", {r['bytewise_streams']:,} of them byte by byte too" if "bytewise_streams" in r else ", each byte by byte too"
    print(f"{name}: {r['frames']:,} frames in {r['streams']:,} streams ({r['bytes'] if 'bytes' in r else '-'} bytes){bytewise}; {r['seconds']} s, stopped by {r['stopped_by']}; {r['breaches']} breaches")
    print(f"  frames by kind: {_outcomes(r['frames_by_kind'])}")
    for target, c in ((t, r[t]) for t in ("framing", "envelope", "server", "client") if t in r):
        fed = c.get("frames_fed", c.get("bodies_fed"))
        read = c.get("bodies_read", c.get("items_read"))
        per = "per stream" if target == "framing" else "per body" if target == "envelope" else "per item and end state"
        print(f"  {target:8} fed {fed:,}" + (f", read {read:,}" if read is not None else "") + f"; outcomes ({per}): {_outcomes(c['outcomes'])}")
    for example in r["breach_examples"]:
        print(f"  BREACH: {json.dumps(example)[:3000]}")


def print_live(r: dict[str, Any]) -> None:
    h, g = r["hostile"], r["good"]
    print(f"server: {r['frames']:,} hostile frames in {r['seconds']} s (stopped by {r['stopped_by']}), {r['workers']} hostile connections at a time")
    print(f"  hostile: {h['connections']:,} connections ({h['handshakes']:,} past the handshake, {h['connect_errors']} connect errors); frames: {h['mutated_sent']:,} mutated, {h['garbage_sent']:,} garbage before a connect, the rest valid but hostile")
    print(f"  batches answered: {h['batches_answered']:,}; frames received: {h['frames_received']:,}; error codes received: {_outcomes(h['codes_received'])}")
    print(f"  connections ended: {_outcomes(h['ends'])}")
    print(f"  bursts past the limit: {h['accepted_in_bursts']:,} taken, refused: {_outcomes(h['refused']) or 'none'}")
    print(f"  good clients: {g.get('requests', 0):,} requests, {g.get('publishes', 0):,} publishes, {g.get('deliveries', 0):,} deliveries; {g.get('errors')} errors, {g.get('disconnects', 0)} disconnects")
    stats = g.get("server_stats") or {}
    if stats:
        print(f"  server stats: messages_in {stats.get('messages_in', '?'):,}, connections_total {stats.get('connections_total', '?'):,}, errors {_outcomes(stats.get('errors', {}))}")
    alive = "alive and answering" if g.get("server_answers_at_end") else "NOT answering"
    print(f"  server at the end: {alive}; exit status on SIGTERM {r['server_exit_status']}; log lines {r['server_log']['lines_by_level']}")
    for breach in r["breaches"]:
        print(f"  BREACH: {breach[:3000]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/fuzz.py", description="Bounded fuzz run of both decoders and a live server.")
    p.add_argument("--frames", type=int, default=1_000_000, help="frames per target (default 1,000,000)")
    p.add_argument("--seconds", type=float, default=900.0, help="time limit per target (default 900)")
    p.add_argument("--seed", type=int, default=1, help="seed of every generator (default 1)")
    p.add_argument("--only", default=",".join(TARGETS), help="targets: python, node, differential, server (default all)")
    p.add_argument("--workers", type=int, default=8, help="hostile connections at a time (default 8)")
    p.add_argument("--json", help="write every count to this file")
    args = p.parse_args(argv)
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(only) - set(TARGETS)
    if unknown or args.frames < 1 or args.seconds <= 0:
        p.error(f"unknown target {', '.join(sorted(unknown))}" if unknown else "--frames and --seconds must be positive")
    results: dict[str, Any] = {"seed": args.seed, "frames_per_target": args.frames, "seconds_per_target": args.seconds}
    node = start_node(args.frames, args.seconds, args.seed) if "node" in only else None
    if "node" in only and node is None:
        results["skipped"] = ["node: not found"]
    if "python" in only:
        results["python"] = run_python(args.frames, args.seconds, args.seed)
    if node is not None:
        results["node"] = finish_node(node, args.seconds)
    if "differential" in only:
        binary = node_binary()
        if binary is None:
            results.setdefault("skipped", []).append("differential: node not found")
        else:
            script = str(BENCH_DIR / "node" / "fuzz_verdicts.js")
            results["differential"] = run_differential(binary, script, args.frames, args.seconds, args.seed, progress)
    if "server" in only:
        results["server"] = asyncio.run(run_live(args.frames, args.seconds, args.seed, SPEC_CODES, workers=args.workers, progress=progress))
    print(f"fuzz run, seed {args.seed}: up to {args.frames:,} frames or {args.seconds:g} s per target")
    for name in ("python", "node"):
        if name in results:
            print_decoders(f"{name} decoders", results[name])
    if "differential" in results:
        d = results["differential"]
        print(f"differential: {d['frames']:,} bodies to both envelope decoders in {d['seconds']} s (stopped by {d['stopped_by']}); agreed: {_outcomes(d['agreed'])}; disagreed: {_outcomes(d['disagreed']) or 'never'}")
        for example in d["breach_examples"]:
            print(f"  BREACH: {json.dumps(example)[:3000]}")
    for note in results.get("skipped", []):
        print(f"skipped: {note}")
    if "server" in results:
        print_live(results["server"])
    breaches = sum(results[t]["breaches"] for t in ("python", "node", "differential") if t in results) + len(results.get("server", {}).get("breaches", []))
    print("verdict: " + ("no breach" if breaches == 0 else f"{breaches} BREACHES"))
    results["breaches"] = breaches
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
