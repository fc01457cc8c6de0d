"""The Prometheus text exposition format, version 0.0.4, written by hand
(docs/operations.md §1: no dependency for a format this small).

Each family is written whole, ``# HELP`` and ``# TYPE`` first, its samples
after; label values and help text are escaped as the format says
(backslash, double quote, newline); a histogram's buckets are cumulative,
end with ``le="+Inf"`` and are followed by ``_sum`` and ``_count``.

Clients choose the names that become label values (an app id of up to 256
characters, a channel of up to 512, each up to 3 bytes in UTF-8), so a
value is capped at ``MAX_LABEL_BYTES`` (:func:`label_value`). Samples that
still share their labels (two long names with the same first bytes whose
hashes collide) are summed: every family here counts something additive
(connections, messages, requests), so the page never repeats a series.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Exposition", "CONTENT_TYPE", "MAX_LABEL_BYTES", "MAX_WHOLE_LABEL_BYTES", "label_value"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The longest label value written, in bytes of UTF-8. A value of up to
# MAX_WHOLE_LABEL_BYTES is written whole; a longer one keeps its first
# bytes (up to as many) and ends in "~" and 8 hex digits of its hash, so a
# cut value is 125-128 bytes and no value written whole can spell one.
MAX_LABEL_BYTES = 128
_DIGEST_BYTES = 4
MAX_WHOLE_LABEL_BYTES = MAX_LABEL_BYTES - 1 - 2 * _DIGEST_BYTES  # 119

Labels = Mapping[str, str]


def label_value(value: str) -> str:
    """``value`` if it is at most ``MAX_WHOLE_LABEL_BYTES`` (119) in UTF-8;
    else its first bytes, up to 119 cut on a character boundary, ``~`` and
    8 hex digits of a BLAKE2b of the whole value: 125-128 bytes. The two
    ranges do not meet, so no client can name itself what another's long
    name is cut to; two long names share a label only if they share their
    first 119 bytes and their hashes collide. The hash is the same in
    every process and release, so a series keeps its name across restarts."""
    if len(value) <= MAX_WHOLE_LABEL_BYTES // 4:  # no character is over 4 bytes
        return value
    raw = value.encode()
    if len(raw) <= MAX_WHOLE_LABEL_BYTES:
        return value
    digest = hashlib.blake2b(raw, digest_size=_DIGEST_BYTES).hexdigest()
    return f"{raw[:MAX_WHOLE_LABEL_BYTES].decode(errors='ignore')}~{digest}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + _label_pairs(labels) + "}"


def _label_pairs(labels: Labels) -> str:
    return ",".join(f'{name}="{_escape_label(label_value(str(value)))}"' for name, value in labels.items())


class Exposition:
    """The lines of one scrape."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def _head(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def counter(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """A counter family; ``name`` ends in ``_total``."""
        self._family(name, "counter", help_text, samples)

    def gauge(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self._family(name, "gauge", help_text, samples)

    def _family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self._head(name, kind, help_text)
        merged: dict[str, float] = {}  # capped labels -> summed value (module docstring)
        for labels, value in samples:
            key = _labels(labels)
            merged[key] = merged[key] + value if key in merged else value
        self._lines.extend(f"{name}{key} {_number(value)}" for key, value in merged.items())

    def histogram(
        self, name: str, help_text: str, bounds: Sequence[float], series: Iterable[tuple[Labels, Sequence[int], float, int]]
    ) -> None:
        """``series``: (labels, counts per bucket, not cumulative, the last
        past every bound; sum; count)."""
        self._head(name, "histogram", help_text)
        merged: dict[str, tuple[list[int], float, int]] = {}  # capped labels -> summed buckets, sum, count
        for labels, counts, total, count in series:
            base = _label_pairs(labels)
            if base in merged:
                had, had_total, had_count = merged[base]
                merged[base] = [a + b for a, b in zip(had, counts)], had_total + total, had_count + count
            else:
                merged[base] = list(counts), total, count
        lines = self._lines
        les = [_number(bound) for bound in bounds] + ["+Inf"]
        for base, (counts, total, count) in merged.items():
            sep = "," if base else ""
            braced = "{" + base + "}" if base else ""
            cumulative = 0
            for le, n in zip(les, counts):
                cumulative += n
                lines.append(f'{name}_bucket{{{base}{sep}le="{le}"}} {cumulative}')
            lines.append(f"{name}_sum{braced} {_number(total)}")
            lines.append(f"{name}_count{braced} {count}")

    def text(self) -> bytes:
        return ("\n".join(self._lines) + "\n").encode()
