"""``python -m ipc_server`` and the ``ipc-bridge-server`` script: the
server (``command``) or one of its subcommands (``program.SUBCOMMANDS``).

For the server, its first act is to catch SIGINT, SIGTERM and SIGHUP
(``early_signals``), before the imports that take most of the start: the
server and the ``--workers`` supervisor handle them from there on (README
"The server", docs/cluster.md §7). Only the standard library is imported
before (the package's ``__init__`` imports its names on first use).
"""

from __future__ import annotations

import os
import sys

from .early_signals import EarlySignals
from .log_sink import finish_logging
from .program import DEFAULT_PROG, VIEWS, program_name

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command; its exit code. Without ``argv``, the process's own
    command line, named as it was started (``ipc-bridge-server``, or
    ``python -m ipc_server``); with it, as ``python -m ipc_server``."""
    prog = program_name() if argv is None else DEFAULT_PROG
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hash-token"]:  # docs/security.md §3: Ctrl-C at its prompt stops it, as it should
        from .hash_token import main as hash_token_main

        return hash_token_main(argv[1:], prog=prog)
    if argv[:1] and argv[0] in VIEWS:  # stats, connections, channels, services: docs/operations.md §3
        from .cli_view import main as view_main

        return view_main(argv, prog=prog)
    early = EarlySignals().install()
    try:
        from .command import main as serve

        code = serve(argv, prog=prog, early=early)
    finally:
        early.restore()
    if not finish_logging():  # stderr a pipe nobody reads: end anyway (docs/operations.md §4)
        sys.stdout.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
