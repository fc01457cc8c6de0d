"""The command's signals from its first line: ``python -m ipc_server``
spends about 0.3 s importing before the server or the supervisor has a
loop to handle them, and a SIGTERM meanwhile ended the process (-15), a
SIGINT with a ``KeyboardInterrupt`` traceback, a SIGHUP silently.
Standard library only, so that ``__main__`` can install it first."""

from __future__ import annotations

import signal

TYPE_CHECKING = False  # not typing's: importing typing alone takes longer than the rest of this module
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

__all__ = ["EarlySignals"]

_CAUGHT = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class EarlySignals:
    """SIGINT, SIGTERM and SIGHUP caught until the loop's handlers replace
    them: the first SIGINT or SIGTERM is kept in ``stop`` for the command
    to act on (it exits 0 if nothing runs yet, else stops what it started,
    as the signal would have); a SIGHUP is ignored, the files it would
    reload being read as the server starts."""

    def __init__(self) -> None:
        self.stop: int | None = None
        self._saved: dict[int, Any] = {}

    def install(self) -> EarlySignals:
        for sig in _CAUGHT:
            self._saved[sig] = signal.signal(sig, self._caught)
        return self

    def _caught(self, sig: int, frame: FrameType | None) -> None:
        if sig != getattr(signal, "SIGHUP", None) and self.stop is None:
            self.stop = sig

    def restore(self) -> None:
        """The handlers from before ``install()`` (main() called in a process that goes on)."""
        for sig, handler in self._saved.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._saved.clear()
