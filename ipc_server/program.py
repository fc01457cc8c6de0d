"""What the command is, known before anything heavy is imported: the name
it was started as, for its usage lines and messages, and its subcommands.
Standard library only: ``__main__`` reads it before catching the signals
that the imports of the server would otherwise leave to their defaults."""

from __future__ import annotations

import os
import sys

__all__ = ["DEFAULT_PROG", "SUBCOMMANDS", "VIEWS", "program_name", "message_name"]

# ``python -m ipc_server``; the installed script is ``ipc-bridge-server``.
DEFAULT_PROG = "python -m ipc_server"
# The views of a running server (cli_view, docs/operations.md §3).
VIEWS = ("stats", "connections", "channels", "services")
# Every subcommand, with the line ``--help`` shows for it.
SUBCOMMANDS = {
    "stats": "a running server's counters (docs/operations.md §3)",
    "connections": "a running server's connections, one row each",
    "channels": "the subscriptions of an app (--app) on a running server",
    "services": "the responders of an app (--app) on a running server",
    "hash-token": "the token_hash of a users file entry (docs/security.md §3)",
}


def program_name(argv0: str | None = None) -> str:
    """The command as it was started (``sys.argv[0]`` unless given): an
    installed script by its file name (``ipc-bridge-server``), else
    ``python -m ipc_server``."""
    name = os.path.basename(sys.argv[0] if argv0 is None and sys.argv else argv0 or "")
    return name if name and name not in ("__main__.py", "-c", "-m") else DEFAULT_PROG


def message_name(prog: str) -> str:
    """What the command's messages on stderr start with: ``ipc_server`` for
    ``python -m ipc_server``, else the script's name."""
    return "ipc_server" if prog == DEFAULT_PROG else prog
