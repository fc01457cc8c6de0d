"""Numbers read from text: the server's flags, ``IPC_SERVER_*`` variables,
strings in its TOML file, the subcommands' flags and a stored hash's
parameters. ASCII decimal digits only, with a sign, and a decimal point
and exponent where a float is read: ``int()`` and ``float()`` also take
every Unicode digit (``--port ８８８８`` listened on 8888, ``--offset ١``
was 1) and underscores (``--limit 1_0`` was 10), which no operator means
and no other tool reads so (ipc-bridge-types does not).

Pure: the standard library only.
"""

from __future__ import annotations

import re

__all__ = ["parse_int", "parse_float", "ASCII_SPACE"]

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# What ``str.strip()`` would strip of ASCII: a variable's value is trimmed of these only.
ASCII_SPACE = " \t\n\r\v\f"


def parse_int(text: str) -> int:
    """``text`` as an integer; ``ValueError`` unless it is ASCII decimal digits, signed or not."""
    if _INTEGER.fullmatch(text) is None:
        raise ValueError(f"not an integer in decimal digits: {text!r}")
    return int(text)


def parse_float(text: str) -> float:
    """``text`` as a float (``5``, ``-0.5``, ``.5``, ``1e2``); ``ValueError``
    for anything else, ``nan``, ``inf`` and non-ASCII digits included."""
    if _DECIMAL.fullmatch(text) is None:
        raise ValueError(f"not a decimal number: {text!r}")
    return float(text)
