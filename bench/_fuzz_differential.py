"""The differential target of the fuzz run (bench/fuzz.py): the same random
and mutated frame bodies to the Python envelope decoder and, through a pipe,
to the js-client's (bench/node/fuzz_verdicts.js); their verdicts (a message,
``bad_frame``, ``bad_message``) must agree. A body one accepts and the other
refuses is one the server relays and a Node subscriber drops its connection
over, or the other way round (issue 16 §4.1 was such a body)."""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from _fuzz_frames import dumps, mutated_body, random_envelope

from ipc_protocol import decode_message
from ipc_protocol.exceptions import ProtocolError

__all__ = ["run_differential"]

BATCH = 2000
KEPT_EXAMPLES = 5
_VERDICT = {"bad_frame": "f", "bad_message": "m"}
_NAMES = {"o": "message", "f": "bad_frame", "m": "bad_message", "x": "untyped error"}


def _python_verdict(body: bytes) -> str:
    try:
        decode_message(body)
        return "o"
    except ProtocolError as exc:
        return _VERDICT.get(str(exc.code), "x")
    except Exception:
        return "x"


def run_differential(node: str, script: str, frames: int, seconds: float, seed: int, progress: Callable[[str], None]) -> dict[str, Any]:
    rng = random.Random(seed + 7)
    proc = subprocess.Popen([node, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
    assert proc.stdin is not None and proc.stdout is not None
    started = time.monotonic()
    bodies_fed = 0
    kinds: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    disagreed: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    next_report = 100_000
    try:
        while bodies_fed < frames and time.monotonic() - started < seconds:
            batch: list[tuple[str, bytes]] = []
            size = min(BATCH, frames - bodies_fed)
            while len(batch) < size:
                if rng.random() < 0.35:
                    kind, body = "valid", dumps(random_envelope(rng)).encode()
                else:
                    kind, body = mutated_body(rng)
                if body:  # an empty body is a framing matter (zero length), not the envelope's
                    batch.append((kind, body))
            proc.stdin.write(b"".join(len(b).to_bytes(4, "big") + b for _, b in batch))
            proc.stdin.flush()
            theirs = b""
            while len(theirs) < len(batch):
                chunk = proc.stdout.read1(len(batch) - len(theirs))  # type: ignore[attr-defined]
                if not chunk:
                    raise RuntimeError(f"the Node verdict process ended (exit status {proc.poll()})")
                theirs += chunk
            for (kind, body), node_verdict in zip(batch, theirs.decode("ascii")):
                ours = _python_verdict(body)
                kinds[kind] += 1
                if ours == node_verdict and ours != "x":
                    agreed[_NAMES[ours]] += 1
                    continue
                key = f"{kind}: python {_NAMES[ours]}, node {_NAMES.get(node_verdict, node_verdict)}"
                disagreed[key] += 1
                if len(examples) < KEPT_EXAMPLES:
                    examples.append({"seed": seed, "kind": kind, "python": _NAMES[ours], "node": _NAMES.get(node_verdict), "hex": body[:2048].hex()})
            bodies_fed += len(batch)
            if bodies_fed >= next_report:
                next_report += 100_000
                progress(f"differential: {bodies_fed} bodies, {sum(disagreed.values())} disagreements, {time.monotonic() - started:.0f} s")
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "frames": bodies_fed,
        "seconds": round(time.monotonic() - started, 1),
        "stopped_by": "frames" if bodies_fed >= frames else "time",
        "frames_by_kind": dict(kinds),
        "agreed": dict(agreed),
        "disagreed": dict(disagreed),
        "breaches": sum(disagreed.values()),
        "breach_examples": examples,
    }
