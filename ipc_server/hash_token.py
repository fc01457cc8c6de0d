"""``python -m ipc_server hash-token``: print the ``token_hash`` of a users
file entry (docs/security.md §3).

The token is read from stdin when stdin is not a terminal (one line, its
newline stripped: ``printf %s "$TOKEN" | python -m ipc_server hash-token``),
else prompted for twice without echo. Never from the command line, where
``ps`` and shell histories would show it. ``--generate`` makes a random
token instead and prints it on stderr, the hash on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from typing import TextIO

from .decimals import parse_int
from .program import DEFAULT_PROG, message_name
from .users import DEFAULT_SCRYPT_LOG_N, DEFAULT_SCRYPT_R, hash_token, max_log_n

# The costs the server accepts in a stored hash of hash-token's r = 8: 2^18 is 256 MiB per check.
_MAX_COST = max_log_n(DEFAULT_SCRYPT_R)

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{prog} hash-token",
        description="Print the salted scrypt hash of a token, for token_hash in the users file. "
        "The token is read from stdin (or prompted for), never from the command line.",
    )
    p.add_argument("--generate", action="store_true", help="make a random token; print it on stderr and its hash on stdout")
    p.add_argument("--cost", type=_cost, default=DEFAULT_SCRYPT_LOG_N, metavar="LOG_N",
                   help=f"scrypt cost, log2 of N, 1-{_MAX_COST} (default {DEFAULT_SCRYPT_LOG_N}: about 16 MiB and 50-100 ms per check; "
                        f"each step doubles both; {_MAX_COST}: 256 MiB, the most the server accepts)")  # fmt: skip
    return p


def _cost(text: str) -> int:
    """A cost the server will accept in a stored hash (users.check_scrypt_parameters)."""
    try:
        cost = parse_int(text)  # ASCII digits: int() takes '１４'
    except ValueError:
        cost = 0
    if not 1 <= cost <= _MAX_COST:
        raise argparse.ArgumentTypeError(f"expected log2 of scrypt's N, 1-{_MAX_COST} (the server refuses a hash that needs more than 256 MiB), got {text!r}")
    return cost


def _read(stdin: TextIO) -> str:
    if stdin.isatty():
        first = getpass.getpass("token: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two tokens differ")
        return first
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def main(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None, *, prog: str = DEFAULT_PROG) -> int:
    """``prog``: the command as it was started (``program.program_name``), in the usage and the messages."""
    args = _parser(prog).parse_args(argv)
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        if args.generate:
            token = secrets.token_urlsafe(32)
            print(token, file=stderr)
        else:
            token = _read(stdin).rstrip("\r")
        print(hash_token(token, log_n=args.cost), file=stdout)
    except ValueError as exc:
        print(f"{message_name(prog)} hash-token: {exc}", file=stderr)
        return 2
    return 0
