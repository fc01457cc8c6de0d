"""What every part of bench/bench.py shares: settings, rows, and the
interleaved pairs of measurements a row compares."""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# _common first: it puts the checkout on sys.path.
from _common import (
    BENCH_DIR,
)


INFLIGHT = 64
# The clients' rows at fewer requests in flight too: a client that writes a
# whole round at once runs in lock step with the server (docs/performance.md).
MODERATE_INFLIGHT = 16
SUBSCRIBERS = 4
# Publishes the publisher may be ahead of the slowest subscriber. Keeps the
# server's per-connection buffer far below its slow-consumer limit (8 MiB)
# while never letting the pipeline run dry.
FANOUT_WINDOW = 4096
FANOUT_BATCH = 128
REQUEST_TIMEOUT_S = 10.0
# Average cores used by other processes during a workload above which its
# results are flagged: they compete with the server and clients for 2 cores.
BUSY_CORES = 0.15
NODE_DIR = BENCH_DIR / "node"
DEFAULT_CHART = BENCH_DIR / "results" / "comparison.png"
NATS_NPM = "nats@^2.29"


@dataclass(frozen=True)
class Settings:
    mode: str
    # Every round starts fresh processes; Node's JIT needs about 1 s of
    # requests (1.5 s on two fresh processes, one in flight) to settle.
    warmup_s: float  # before each throughput window
    window_s: float  # one throughput window
    rounds: int  # throughput windows per side, interleaved with the reference's; the median is reported
    latency_warmup_s: float  # samples dropped at the start of each latency round
    latency_s: float  # samples kept in one latency round
    latency_rounds: int  # latency rounds per side, interleaved with the reference's; samples are pooled
    fanout_messages: int  # messages published in one fan-out round
    fanout_cap_s: float  # ... unless this much time passes first
    fanout_rounds: int  # fan-out rounds per side, interleaved with the reference's; the median rate is reported
    idle_connections: int


FULL = Settings("full", warmup_s=1.0, window_s=1.5, rounds=4, latency_warmup_s=1.5, latency_s=1.0, latency_rounds=4, fanout_messages=100_000, fanout_cap_s=5.0, fanout_rounds=2, idle_connections=2000)
QUICK = Settings("quick", warmup_s=0.2, window_s=0.6, rounds=1, latency_warmup_s=0.5, latency_s=0.6, latency_rounds=1, fanout_messages=20_000, fanout_cap_s=2.0, fanout_rounds=1, idle_connections=1000)


@dataclass
class Row:
    key: str
    workload: str
    client: str  # python, node, or "-" (memory)
    loop: str  # our server's event loop
    result: str  # our figure, formatted
    unit: str
    reference: str = "-"  # who the reference is
    reference_result: str = "-"
    ratio: str = "-"
    target: str = "-"
    verdict: str = "-"  # pass / FAIL / - (nothing to compare with)
    notes: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    error: bool = False


@dataclass
class Context:
    s: Settings
    clients: list[str]  # "python", "node"
    nats: bool  # nats-server and nats-py installed
    node_nats: bool  # npm nats installed under bench/node


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt_us(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")[:300]



def _rr_result(windows: list[dict[str, float]]) -> dict[str, Any]:
    """Median of each figure over a side's windows (one per round), and the rate of each."""
    return {k: statistics.median(w[k] for w in windows) for k in windows[0]} | {"rounds": [w["rate"] for w in windows]}

def _latency_stats(samples_us: list[float]) -> dict[str, Any]:
    """Percentiles, mean and max of samples (sorted in place)."""
    samples_us.sort()
    return {
        "p50_us": percentile(samples_us, 50),
        "p99_us": percentile(samples_us, 99),
        "p999_us": percentile(samples_us, 99.9),
        "mean_us": statistics.fmean(samples_us),
        "max_us": samples_us[-1],
        "samples": len(samples_us),
    }

def _latency_summary(rounds: list[list[float]]) -> dict[str, Any]:
    """Stats of a side's samples pooled over its rounds, and each round's p99;
    the raw samples stay out of the results."""
    pooled = [x for samples in rounds for x in samples]
    return _latency_stats(pooled) | {"rounds": [percentile(sorted(samples), 99) for samples in rounds]}


# -- pairs: our side and the reference, round by round ----------------------------------


@dataclass
class Pair:
    """Both sides of a row, each summarized over its rounds."""

    ours: dict[str, Any]
    reference: dict[str, Any] | None = None  # None: no reference (not installed, or it failed)
    reference_error: Exception | None = None


def interleave(rounds: int, ours: Callable[[], Any], ref: Callable[[], Any] | None, summarize: Callable[[list[Any]], dict[str, Any]]) -> Pair:
    """Measure ``rounds`` rounds of each side, alternating which goes first
    (ours/ref, ref/ours, ...), and ``summarize`` each side's rounds.

    The machine's speed drifts by 10-20 % over tens of seconds, so a ratio is
    only meaningful when both sides sample the same stretch of it. Our side
    failing fails the pair; the reference failing ends the reference only.
    """
    ours_rounds: list[Any] = []
    ref_rounds: list[Any] = []
    ref_error: Exception | None = None
    for i in range(rounds):
        for side in ("ours", "ref") if i % 2 == 0 else ("ref", "ours"):
            if side == "ours":
                ours_rounds.append(ours())
            elif ref is not None and ref_error is None:
                try:
                    ref_rounds.append(ref())
                except Exception as exc:  # reported in the row
                    ref_error = exc
    reference = summarize(ref_rounds) if ref_rounds and ref_error is None else None
    return Pair(summarize(ours_rounds), reference, ref_error)


def paired_rr(ctx: Context, ours: Callable[[], dict[str, float]], ref: Callable[[], dict[str, float]] | None) -> Pair:
    """Throughput windows of both sides, interleaved; medians per side."""
    return interleave(ctx.s.rounds, ours, ref, _rr_result)


def paired_latency(ctx: Context, ours: Callable[[], list[float]], ref: Callable[[], list[float]] | None) -> Pair:
    """Latency rounds of both sides, interleaved; samples pooled per side."""
    return interleave(ctx.s.latency_rounds, ours, ref, _latency_summary)


def _fanout_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A side's fan-out rounds: the median of its rates and CPU figures, its
    losses and counts summed (a loss in any round counts)."""
    out: dict[str, Any] = {
        k: statistics.median(r[k] for r in rounds)
        for k in ("delivered_per_s", "server_cpu_us_per_msg", "subscribers_cpu_us_per_msg", "publisher_cpu_us_per_msg")
    }
    out["lost"] = sum(r["lost"] for r in rounds)
    out["published"] = sum(r["published"] for r in rounds)
    out["seconds"] = sum(r["seconds"] for r in rounds)
    out["capped"] = any(r["capped"] for r in rounds)
    out["per_subscriber"] = [list(r["per_subscriber"]) for r in rounds]
    out["rounds"] = [r["delivered_per_s"] for r in rounds]
    return out


def paired_fanout(ctx: Context, ours: Callable[[], dict[str, Any]], ref: Callable[[], dict[str, Any]] | None) -> Pair:
    """Fan-out rounds of both sides, interleaved; median rate per side."""
    return interleave(ctx.s.fanout_rounds, ours, ref, _fanout_summary)


def one_each(ours: Callable[[], dict[str, Any]], ref: Callable[[], dict[str, Any]] | None) -> Pair:
    """One measurement per side, ours first (memory: a long single run, not interleaved)."""
    return interleave(1, ours, ref, lambda rounds: rounds[0])


# -- rows: our figure, the reference figure, the ratio, the target ---------------------------


def compare(
    key: str,
    workload: str,
    client: str,
    loop: str,
    measure: Callable[[], Pair],
    *,
    metric: str,
    unit: str,
    fmt: Callable[[dict[str, Any]], str],
    reference: str,
    target: tuple[str, float] | None,
    notes: Callable[[dict[str, Any], dict[str, Any] | None], str],
    absolute: bool = False,
    skipped: str = "",
    extra_ok: Callable[[dict[str, Any]], bool] = lambda m: True,
) -> Row:
    """Measure our figure and the reference figure (a ``Pair``); one row.

    ``target`` is (">=" or "<=", x): the ratio ours / reference must be at
    least (at most) x; with ``absolute`` our figure itself is compared with
    x and the reference is shown for context. ``extra_ok``: a further
    condition for a pass (no message lost).
    """
    row = Row(key, workload, client, loop, "error", unit, reference=reference)
    try:
        pair = measure()
    except Exception as exc:
        log(f"bench: {key} failed: {_error_text(exc)}")
        row.notes, row.error = _error_text(exc), True
        return row
    m, r = pair.ours, pair.reference
    row.result = fmt(m)
    row.values = {"ours": m, "absolute": absolute}
    if pair.reference_error is not None:
        log(f"bench: {key} reference failed: {_error_text(pair.reference_error)}")
        row.reference_result = "error"
        row.notes = f"reference failed: {_error_text(pair.reference_error)}; "
    elif r is None:
        row.reference_result = skipped or "-"
    else:
        row.reference_result = fmt(r)
        row.values["reference"] = r
    ratio = m[metric] / r[metric] if r is not None and r[metric] else None
    if ratio is not None:
        row.ratio = f"{ratio:.2f}×"
        row.values["ratio"] = ratio
    if target is not None:
        op, x = target
        row.target = f"{'≥' if op == '>=' else '≤'} {x:g} {unit}" if absolute else f"{'≥' if op == '>=' else '≤'} {x:g}×"
        subject = m[metric] if absolute else ratio
        if subject is not None:
            ok = (subject >= x if op == ">=" else subject <= x) and extra_ok(m)
            row.verdict = "pass" if ok else "**FAIL**"
            row.values["pass"] = ok
    row.notes += notes(m, r)
    return row


def _rate(m: dict[str, Any]) -> str:
    return fmt_int(m["rate"])


def _lat(m: dict[str, Any]) -> str:
    return f"{fmt_us(m['p50_us'])} / {fmt_us(m['p99_us'])}"


def _cpu_note(m: dict[str, Any], r: dict[str, Any] | None, what: str = "rt") -> str:
    text = f"server CPU {fmt_us(m['server_cpu_us'])} µs/{what}"
    if r is not None:
        text += f" (reference {fmt_us(r['server_cpu_us'])})"
    return text + f"; client CPU {fmt_us(m['client_cpu_us'])} µs/{what}"


def _cores_note(m: dict[str, Any], r: dict[str, Any] | None) -> str:
    """The cores the three processes of a two-hop row kept busy together
    (docs/performance.md, "Three processes on two cores")."""
    return f"{m['cores_busy']:.2f} cores busy" + (f" (reference {r['cores_busy']:.2f})" if r is not None else "")


def _skip(ctx: Context, lang: str) -> str:
    if not ctx.nats:
        return "nats not installed"
    if lang == "node" and not ctx.node_nats:
        return "npm nats not installed"
    return ""


def _nats_ready(ctx: Context, lang: str) -> bool:
    return not _skip(ctx, lang)


def _rounds_note(s: Settings, r: dict[str, Any] | None) -> str:
    """How a throughput figure was taken: windows per side, and whether the reference's were interleaved."""
    if s.rounds == 1:
        return f"one {s.window_s:g} s window"
    return f"median of {s.rounds} × {s.window_s:g} s" + (", interleaved with the reference" if r is not None else "")

