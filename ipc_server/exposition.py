"""The Prometheus text exposition format, version 0.0.4, written by hand
(docs/operations.md §1: no dependency for a format this small).

Each family is written whole, ``# HELP`` and ``# TYPE`` first, its samples
after; label values and help text are escaped as the format says
(backslash, double quote, newline); a histogram's buckets are cumulative,
end with ``le="+Inf"`` and are followed by ``_sum`` and ``_count``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Exposition", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


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
    return "{" + ",".join(f'{name}="{_escape_label(str(value))}"' for name, value in labels.items()) + "}"


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
        lines = self._lines
        for labels, value in samples:
            lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(
        self, name: str, help_text: str, bounds: Sequence[float], series: Iterable[tuple[Labels, Sequence[int], float, int]]
    ) -> None:
        """``series``: (labels, counts per bucket, not cumulative, the last
        past every bound; sum; count)."""
        self._head(name, "histogram", help_text)
        lines = self._lines
        les = [_number(bound) for bound in bounds] + ["+Inf"]
        for labels, counts, total, count in series:
            base = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            sep = "," if base else ""
            cumulative = 0
            for le, n in zip(les, counts):
                cumulative += n
                lines.append(f'{name}_bucket{{{base}{sep}le="{le}"}} {cumulative}')
            lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
            lines.append(f"{name}_count{_labels(labels)} {count}")

    def text(self) -> bytes:
        return ("\n".join(self._lines) + "\n").encode()
