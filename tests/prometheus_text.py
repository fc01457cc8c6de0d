"""A strict reader of the Prometheus text exposition format 0.0.4, for the
tests: it refuses what Prometheus would refuse and what the format only
tolerates (blank lines, a family's samples split, a duplicate series, a
counter without ``_total``, a histogram whose buckets are not cumulative,
do not end in ``+Inf`` or disagree with ``_count``). ``prometheus_client``'s
own parser reads the same text in the tests as a second opinion.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["Family", "parse", "FormatError"]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"({_NAME})(?:\{{((?:{_LABEL}={_VALUE})(?:,{_LABEL}={_VALUE})*)?\}})? (\S+)(?: (-?\d+))?")
_PAIR = re.compile(rf"({_LABEL})=({_VALUE})")
_KINDS = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(AssertionError):
    pass


@dataclass
class Family:
    name: str
    kind: str = "untyped"
    help: str | None = None
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    def value(self, suffix: str = "", **labels: str) -> float:
        """The sample ``name + suffix`` with exactly these labels (KeyError if none)."""
        return self.samples[(self.name + suffix, frozenset(labels.items()))]

    def matching(self, suffix: str = "", **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of ``name + suffix`` whose labels include these."""
        out = []
        for (name, pairs), value in self.samples.items():
            d = dict(pairs)
            if name == self.name + suffix and all(d.get(k) == v for k, v in labels.items()):
                out.append((d, value))
        return out


def _unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], quoted[1:-1])


def _number(text: str, line: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise FormatError(f"not a number: {line!r}")
    return float(text)


def _family_of(name: str, families: dict[str, Family]) -> Family | None:
    if name in families:
        return families[name]
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            family = families[name[: -len(suffix)]]
            if family.kind in ("histogram", "summary"):
                return family
    return None


def parse(text: str) -> dict[str, Family]:
    if not text.endswith("\n"):
        raise FormatError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    done: set[str] = set()
    for line in text[:-1].split("\n"):
        if not line:
            raise FormatError("blank line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                raise FormatError(f"stray comment: {line!r}")
            name = parts[2]
            if not re.fullmatch(_NAME, name) or name in done:
                raise FormatError(f"bad or repeated family {name!r}")
            if current is None or current.name != name:
                if current is not None:
                    done.add(current.name)
                if name in families:
                    raise FormatError(f"family {name} split")
                current = families[name] = Family(name)
            if parts[1] == "HELP":
                if current.help is not None:
                    raise FormatError(f"two HELP lines for {name}")
                current.help = parts[3] if len(parts) > 3 else ""
            else:
                if current.kind != "untyped" or current.samples or len(parts) != 4 or parts[3] not in _KINDS:
                    raise FormatError(f"bad TYPE line: {line!r}")
                current.kind = parts[3]
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise FormatError(f"malformed sample: {line!r}")
        name, labels_text, value_text, _ts = match.groups()
        family = _family_of(name, families)
        if family is None or family is not current:
            raise FormatError(f"sample {name} outside its family's block (missing TYPE or split family)")
        labels = {k: _unescape(v) for k, v in _PAIR.findall(labels_text or "")}
        if len(labels) != len(_PAIR.findall(labels_text or "")):
            raise FormatError(f"repeated label: {line!r}")
        key = (name, frozenset(labels.items()))
        if key in family.samples:
            raise FormatError(f"duplicate series: {line!r}")
        family.samples[key] = _number(value_text, line)
    for family in families.values():
        _check(family)
    return families


def _check(family: Family) -> None:
    if family.kind == "counter":
        if not family.name.endswith("_total"):
            raise FormatError(f"counter {family.name} must end in _total")
        if any(v < 0 or math.isnan(v) for v in family.samples.values()):
            raise FormatError(f"negative counter {family.name}")
    if family.kind != "histogram":
        return
    series: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    for (name, pairs), value in family.samples.items():
        if name == family.name + "_bucket":
            labels = dict(pairs)
            if "le" not in labels:
                raise FormatError(f"bucket without le in {family.name}")
            le = labels.pop("le")
            series.setdefault(frozenset(labels.items()), []).append((_number(le, le), value))
        elif name not in (family.name + "_sum", family.name + "_count"):
            raise FormatError(f"{name} in histogram {family.name}")
    for labels, buckets in series.items():
        les = [le for le, _ in buckets]
        if les != sorted(les) or les[-1] != math.inf:
            raise FormatError(f"{family.name}{dict(labels)}: buckets out of order or no +Inf")
        counts = [n for _, n in buckets]
        if counts != sorted(counts):
            raise FormatError(f"{family.name}{dict(labels)}: buckets not cumulative")
        count = family.samples.get((family.name + "_count", labels))
        if count is None or (family.name + "_sum", labels) not in family.samples or count != counts[-1]:
            raise FormatError(f"{family.name}{dict(labels)}: _count/_sum missing or _count != +Inf bucket")
