"""The workloads: each measures its pairs and returns its table rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# _common first: it puts the checkout on sys.path.


from _bench_core import (
    Context,
    INFLIGHT,
    MODERATE_INFLIGHT,
    Row,
    SUBSCRIBERS,
    Settings,
    _cores_note,
    _cpu_note,
    _lat,
    _nats_ready,
    _rate,
    _rounds_note,
    _skip,
    compare,
    fmt_int,
    fmt_us,
    one_each,
    paired_fanout,
    paired_latency,
    paired_rr,
)
from _bench_fanout import measure_fanout, measure_memory
from _bench_measure import measure_latency, measure_rr


def _in_process_rr_row(ctx: Context, key: str, workload: str, lang: str, loop: str, ours: tuple[str, str], ref: tuple[str, str], *, reference: str, target: float) -> Row:
    """A round-trip row on the in-process handler: ``ours`` and ``ref`` are
    (server, client) kinds, measured in interleaved windows."""
    return compare(
        key,
        workload,
        lang,
        loop,
        lambda: paired_rr(
            ctx,
            lambda: measure_rr(ctx, lang, server=ours[0], client=ours[1], loop=loop),
            lambda: measure_rr(ctx, lang, server=ref[0], client=ref[1], loop=loop),
        ),
        metric="rate",
        unit="rt/s",
        fmt=_rate,
        reference=reference,
        target=(">=", target),
        notes=lambda m, r: f"{_rounds_note(ctx.s, r)}; " + _cpu_note(m, r),
    )


def wl_rr(ctx: Context, loop: str) -> list[Row]:
    return [
        _in_process_rr_row(
            ctx,
            f"rr.{lang}.{loop}",
            f"request/response, in-process handler, {INFLIGHT} in flight",
            lang,
            loop,
            ("ours", "ours"),
            ("minimal", "ours"),
            reference="minimal asyncio server (same loop), same client",
            target=0.8,
        )
        for lang in ctx.clients
    ]


def wl_rr_responder(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        nats_ref = (lambda: measure_rr(ctx, lang, server="nats", client="nats", responder="nats")) if _nats_ready(ctx, lang) else None
        rows.append(
            compare(
                f"rr-responder.{lang}.{loop}",
                f"request/response via a responder client (2 hops), {INFLIGHT} in flight",
                lang,
                loop,
                lambda: paired_rr(ctx, lambda: measure_rr(ctx, lang, server="ours", client="ours", loop=loop, responder="ours"), nats_ref),
                metric="rate",
                unit="rt/s",
                fmt=_rate,
                reference="nats-server, its clients in the same roles",
                target=(">=", 1.3 if lang == "python" else 1.5),
                skipped=_skip(ctx, lang),
                notes=lambda m, r: f"{_rounds_note(ctx.s, r)}; " + _cpu_note(m, r) + f"; responder CPU {fmt_us(m['responder_cpu_us'])} µs/rt; " + _cores_note(m, r),
            )
        )
    return rows


def _lat_notes(s: Settings) -> Callable[[dict[str, Any], dict[str, Any] | None], str]:
    """Notes of a latency row: how the samples were taken, then their tail."""

    def notes(m: dict[str, Any], r: dict[str, Any] | None) -> str:
        text = f"{m['samples']:,} samples"
        if s.latency_rounds > 1:
            text += f" from {s.latency_rounds} × {s.latency_s:g} s" + (", interleaved with the reference" if r is not None else "")
        text += f"; mean {fmt_us(m['mean_us'])}, p99.9 {fmt_us(m['p999_us'])}, max {fmt_us(m['max_us'])}"
        if r is not None:
            text += f"; reference p99.9 {fmt_us(r['p999_us'])}"
        return text

    return notes


def wl_latency(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        rows.append(
            compare(
                f"latency.{lang}.{loop}",
                "latency p50 / p99, 1 in flight, in-process handler",
                lang,
                loop,
                lambda: paired_latency(
                    ctx,
                    lambda: measure_latency(ctx, lang, server="ours", client="ours", loop=loop),
                    lambda: measure_latency(ctx, lang, server="minimal", client="ours", loop=loop),
                ),
                metric="p99_us",
                unit="µs",
                fmt=_lat,
                reference="minimal asyncio server (same loop), same client (p99)",
                target=("<=", 1.2),
                notes=_lat_notes(ctx.s),
            )
        )
    for lang in ctx.clients:
        nats_ref = (lambda: measure_latency(ctx, lang, server="nats", client="nats", responder="nats")) if _nats_ready(ctx, lang) else None
        rows.append(
            compare(
                f"latency-responder.{lang}.{loop}",
                "latency p50 / p99, 1 in flight, via a responder (2 hops)",
                lang,
                loop,
                lambda: paired_latency(ctx, lambda: measure_latency(ctx, lang, server="ours", client="ours", loop=loop, responder="ours"), nats_ref),
                metric="p99_us",
                unit="µs",
                fmt=_lat,
                reference="nats-server, its clients (p99)",
                target=None,
                skipped=_skip(ctx, lang),
                notes=_lat_notes(ctx.s),
            )
        )
    return rows


def _fanout_notes(m: dict[str, Any], r: dict[str, Any] | None) -> str:
    capped = " (time cap reached)" if m["capped"] else ""
    lost = f"lost {m['lost']}" if m["lost"] == 0 else f"**LOST {m['lost']}**: per subscriber {m['per_subscriber']}"
    rounds = len(m["rounds"])
    how = f"median of {rounds} rounds, interleaved with the reference; " if rounds > 1 and r is not None else ""
    text = f"{how}{lost}; {m['published']:,} published{capped} in {m['seconds']:.2f} s; server CPU {fmt_us(m['server_cpu_us_per_msg'])} µs/msg"
    if r is not None:
        text += f" (reference {fmt_us(r['server_cpu_us_per_msg'])}, lost {r['lost']})"
    return text + f"; subscribers CPU {fmt_us(m['subscribers_cpu_us_per_msg'])} µs/msg"


def _fanout_row(
    ctx: Context, key: str, workload: str, lang: str, loop: str, ours: Callable[[], dict[str, Any]], ref: Callable[[], dict[str, Any]] | None, *, reference: str, target: float, skipped: str = ""
) -> Row:
    """A fan-out row: delivered msgs/s against the reference's, and no message lost (else an error)."""
    row = compare(
        key,
        workload,
        lang,
        loop,
        lambda: paired_fanout(ctx, ours, ref),
        metric="delivered_per_s",
        unit="msg/s",
        fmt=lambda m: fmt_int(m["delivered_per_s"]),
        reference=reference,
        target=(">=", target),
        skipped=skipped,
        notes=_fanout_notes,
        extra_ok=lambda m: m["lost"] == 0,
    )
    if "ours" in row.values and row.values["ours"]["lost"] != 0:
        row.error = True
    return row


def wl_fanout(ctx: Context, loop: str) -> list[Row]:
    rows = []
    for lang in ctx.clients:
        nats_ref = (lambda: measure_fanout(ctx, lang, server="nats", client="nats")) if _nats_ready(ctx, lang) else None
        rows.append(
            _fanout_row(
                ctx,
                f"fanout.{lang}.{loop}",
                f"pub/sub fan-out 1 -> {SUBSCRIBERS} subscribers, delivered msgs/s",
                lang,
                loop,
                lambda: measure_fanout(ctx, lang, server="ours", client="ours", loop=loop),
                nats_ref,
                reference="nats-server, its clients in the same roles",
                target=1.0,
                skipped=_skip(ctx, lang),
            )
        )
    return rows


def wl_memory(ctx: Context, loop: str) -> list[Row]:
    n = ctx.s.idle_connections
    return [
        compare(
            f"memory.{loop}",
            f"server memory per idle connection ({n:,} handshaken, heartbeats on)",
            "-",
            loop,
            lambda: one_each(lambda: measure_memory(ctx, server="ours", loop=loop), lambda: measure_memory(ctx, server="minimal", loop=loop)),
            metric="kb_per_connection",
            unit="KB",
            fmt=lambda m: f"{m['kb_per_connection']:.1f}",
            reference="minimal asyncio server (same loop)",
            target=("<=", 3.0),
            absolute=True,
            notes=lambda m, r: f"server VmRSS {m['rss_before_kb'] / 1024:.1f} -> {m['rss_after_kb'] / 1024:.1f} MiB",
        )
    ]


def wl_clients(ctx: Context, loop: str) -> list[Row]:
    """Our clients against minimal ones on the same server: with 64 requests
    in flight, and with 16, where a client that writes a whole round of
    requests at once runs in lock step with the server."""
    rows = []
    for lang in ctx.clients:
        for inflight in (INFLIGHT, MODERATE_INFLIGHT):
            rows.append(_clients_row(ctx, lang, loop, inflight))
    return rows


def _clients_row(ctx: Context, lang: str, loop: str, inflight: int) -> Row:
    minimal = "minimal asyncio client" if lang == "python" else "minimal net client"
    key, label = (f"clients.{lang}.{loop}", "") if inflight == INFLIGHT else (f"clients-{inflight}.{lang}.{loop}", f", {inflight} in flight")
    return compare(
        key,
        f"client round trips vs a {minimal}, our server, in-process handler{label}",
        lang,
        loop,
        lambda: paired_rr(
            ctx,
            lambda: measure_rr(ctx, lang, server="ours", client="ours", loop=loop, inflight=inflight),
            lambda: measure_rr(ctx, lang, server="ours", client="minimal", loop=loop, inflight=inflight),
        ),
        metric="rate",
        unit="rt/s",
        fmt=_rate,
        reference=f"{minimal}, same server",
        target=(">=", 0.8),
        notes=lambda m, r: f"{_rounds_note(ctx.s, r)}; client CPU {fmt_us(m['client_cpu_us'])} µs/rt"
        + (f" (reference {fmt_us(r['client_cpu_us'])})" if r else "")
        + f"; server CPU {fmt_us(m['server_cpu_us'])} µs/rt",
    )


def wl_servers(ctx: Context, loop: str) -> list[Row]:
    """Servers compared with the same minimal hand-written clients on both
    sides, so the client's own cost cannot hide or inflate the server's."""
    rows = [
        _in_process_rr_row(
            ctx,
            f"servers-rr.{lang}.{loop}",
            f"request/response, minimal {'asyncio' if lang == 'python' else 'net'} client, in-process handler, {INFLIGHT} in flight",
            lang,
            loop,
            ("ours", "minimal"),
            ("minimal", "minimal"),
            reference="minimal asyncio server (same loop), same minimal client",
            target=1.0,
        )
        for lang in ctx.clients
    ]
    for lang in ctx.clients:
        rows.append(
            _fanout_row(
                ctx,
                f"servers-fanout.{lang}.{loop}",
                f"pub/sub fan-out 1 -> {SUBSCRIBERS}, minimal {'asyncio' if lang == 'python' else 'net'} clients, delivered msgs/s",
                lang,
                loop,
                lambda: measure_fanout(ctx, lang, server="ours", client="minimal", loop=loop),
                lambda: measure_fanout(ctx, lang, server="minimal", client="minimal", loop=loop),
                reference="minimal asyncio server (same loop), same minimal clients",
                target=0.9,
            )
        )
    for lang in ctx.clients:
        # No target: what a relay that validates and tracks nothing reaches with our
        # clients, beside the two-hop row against nats-server (docs/performance.md).
        rows.append(
            compare(
                f"servers-rr-responder.{lang}.{loop}",
                f"request/response via a responder client (2 hops), our clients, {INFLIGHT} in flight",
                lang,
                loop,
                lambda: paired_rr(
                    ctx,
                    lambda: measure_rr(ctx, lang, server="ours", client="ours", loop=loop, responder="ours"),
                    lambda: measure_rr(ctx, lang, server="minimal", client="ours", loop=loop, responder="ours"),
                ),
                metric="rate",
                unit="rt/s",
                fmt=_rate,
                reference="minimal asyncio server relaying (same loop), same clients",
                target=None,
                notes=lambda m, r: f"{_rounds_note(ctx.s, r)}; " + _cpu_note(m, r) + f"; responder CPU {fmt_us(m['responder_cpu_us'])} µs/rt; " + _cores_note(m, r),
            )
        )
    return rows


WORKLOADS: dict[str, Callable[[Context, str], list[Row]]] = {
    "rr": wl_rr,
    "rr-responder": wl_rr_responder,
    "latency": wl_latency,
    "fanout": wl_fanout,
    "memory": wl_memory,
    "clients": wl_clients,
    "servers": wl_servers,
}

