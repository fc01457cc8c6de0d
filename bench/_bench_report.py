"""The benchmark's outputs: the markdown table and the chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# _common first: it puts the checkout on sys.path.
from _common import (
    HOST,
    PAYLOAD_BYTES,
)
from _bench_core import (
    BUSY_CORES,
    Row,
    Settings,
)




# -- output ----------------------------------------------------------------------------


def render(rows: list[Row], machine: dict[str, Any], s: Settings, elapsed: float, skipped: list[str]) -> str:
    lines = [
        f"## ipc-bridge benchmark ({s.mode} run, {elapsed:.0f} s)",
        "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['python']}, Linux {machine['kernel']}, pydantic-core {machine['pydantic_core']}"
        + "".join(f", {k} {machine[k]}" for k in ("node", "uvloop", "nats-server", "nats-py") if machine.get(k)),
        f"- {PAYLOAD_BYTES}-byte JSON payload; every server in its own process on {HOST}; our server: "
        "`bench/_server.py` (IPCServer, async `echo` handler); `loop` is the server's event loop (clients: asyncio); "
        "ratio = ours / reference",
        f"- other processes used {machine['other_load_cores']:.2f} cores on average during the run"
        + (" (results are noisy: run again on an idle machine)" if machine["other_load_cores"] >= BUSY_CORES else ""),
    ]
    lines += [f"- skipped: {x}" for x in skipped]
    lines += [
        "",
        "| workload | client | loop | ours | unit | reference | reference figure | ratio | target | pass | notes |",
        "|---|---|---|---:|---|---|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.client} | {r.loop} | {r.result} | {r.unit} | {r.reference} | {r.reference_result} "
            f"| {r.ratio} | {r.target} | {r.verdict} | {r.notes} |"
        )
    return "\n".join(lines)


CHART_PANELS = [
    ("rr", "in-process handler, rt/s", "rate"),
    ("rr-responder", "via responder (2 hops), rt/s", "rate"),
    ("latency", "latency p99, µs (lower is better)", "p99_us"),
    ("fanout", "fan-out 1 -> 4, delivered msg/s", "delivered_per_s"),
    ("clients", "client round trips, rt/s", "rate"),
    ("clients-16", "client round trips, 16 in flight, rt/s", "rate"),
    ("servers-rr", "minimal clients, in-process handler, rt/s", "rate"),
    ("servers-fanout", "minimal clients, fan-out 1 -> 4, msg/s", "delivered_per_s"),
    ("memory", "KB per idle connection (lower is better)", "kb_per_connection"),
]


def write_chart(rows: list[Row], path: Path, title: str) -> None:
    """Grouped bars, one panel per workload: for each client language, our
    figure and the reference figure on each loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(p, t, m) for p, t, m in CHART_PANELS if any(r.key.split(".")[0] == p for r in rows)]
    if not panels:
        return
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.8 * nrows), squeeze=False)
    colors = {"ours": "#1f77b4", "reference": "#ff7f0e"}
    hatches = {"asyncio": "", "uvloop": "//"}
    for ax, (prefix, panel_title, metric) in zip(axes.flat, panels):
        mine = [r for r in rows if r.key.split(".")[0] == prefix and "ours" in r.values]
        groups = list(dict.fromkeys(r.client for r in mine))
        loops = list(dict.fromkeys(r.loop for r in mine))
        series = [(loop, side) for loop in loops for side in ("ours", "reference")]
        width = 0.8 / len(series)
        reference_name = mine[0].reference if mine else ""
        for i, (loop, side) in enumerate(series):
            xs, ys = [], []
            for g, client in enumerate(groups):
                row = next((r for r in mine if r.client == client and r.loop == loop), None)
                if row is not None and side in row.values:
                    xs.append(g - 0.4 + width * (i + 0.5))
                    ys.append(row.values[side][metric])
            if xs:
                ax.bar(xs, ys, width, color=colors[side], hatch=hatches.get(loop, ""), edgecolor="white", label=f"{side} ({loop})")
        for g, client in enumerate(groups):
            for row in (r for r in mine if r.client == client):
                if row.verdict != "-":
                    figure = f"{row.result} {row.unit}" if row.values.get("absolute") else row.ratio
                    ax.annotate(
                        f"{row.loop}: {figure} {row.verdict.strip('*')}",
                        (g, 0),
                        xytext=(0, -28 - 10 * loops.index(row.loop)),
                        textcoords="offset points",
                        ha="center",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(groups)), [c if c != "-" else "server" for c in groups])
        ax.set_title(f"{panel_title}\nreference: {reference_name}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

