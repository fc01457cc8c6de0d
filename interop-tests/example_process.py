"""One example script (examples/...) run as a user would run it, in its own
process group, with its stdout kept line by line for the smoke tests.

The ``run_example`` fixture in conftest.py starts these and kills each one,
with whatever it started, on teardown. Every wait here is bounded and waits
on an output line or an exit, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import LINE_LIMIT, ROOT, WAIT_S


async def wait_for_output(
    changed: asyncio.Event, ready: Callable[[], Any], ended: Callable[[], bool], failure: Callable[[], str], timeout: float
) -> Any:
    """What ``ready()`` finds (not None) in a process's output, checked again
    each time ``changed`` is set; AssertionError with ``failure()`` once the
    output has ended or ``timeout`` seconds have passed without it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = ready()
        if found is not None:
            return found
        remaining = deadline - loop.time()
        if remaining <= 0 or (ended() and ready() is None):
            raise AssertionError(failure())
        changed.clear()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(changed.wait(), remaining)


class ExampleProcess:
    """One example script in its own process; stdout is collected line by line.
    ``cwd`` is the repository root unless given."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.lines: list[str] = []
        self.log = tempfile.TemporaryFile()
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._eof = False
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> ExampleProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=self.log, cwd=self.cwd, env=self.env, limit=LINE_LIMIT,
            start_new_session=True,  # its own process group, so kill() also reaches a server it started
        )
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._eof = True
        self._changed.set()

    def describe(self) -> str:
        """The command, its last stdout lines and the tail of its stderr, for failure messages."""
        self.log.seek(0)
        stderr = self.log.read().decode(errors="replace")[-3000:]
        name = " ".join(os.path.relpath(a, ROOT) if a.startswith(str(ROOT)) else a for a in self.argv[1:])
        return f"{name}\n--- stdout ---\n" + "\n".join(self.lines[-60:]) + f"\n--- stderr ---\n{stderr}"

    async def _until(self, ready: Callable[[], Any], what: str, timeout: float) -> Any:
        return await wait_for_output(self._changed, ready, lambda: self._eof, lambda: f"{what} within {timeout} s: {self.describe()}", timeout)

    async def wait_line(self, pattern: str, *, timeout: float = WAIT_S) -> re.Match[str]:
        """The first line (printed so far or later) that matches ``pattern`` in full."""
        regex = re.compile(pattern)

        def find() -> re.Match[str] | None:
            return next((m for line in self.lines if (m := regex.fullmatch(line))), None)

        return await self._until(find, f"no line matching {pattern!r}", timeout)

    def matching(self, pattern: str) -> list[re.Match[str]]:
        """Every line printed so far that matches ``pattern`` in full."""
        regex = re.compile(pattern)
        return [m for line in self.lines if (m := regex.fullmatch(line))]

    async def wait_exit(self, *, timeout: float = WAIT_S) -> int:
        """The exit code, once the process has exited and all its output is read."""
        assert self.proc is not None and self._reader is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
            await asyncio.wait_for(self._reader, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"did not exit within {timeout} s: {self.describe()}") from None
        return code

    async def kill(self) -> None:
        """SIGKILL to the example and whatever it started (its process group):
        they vanish without closing anything themselves."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await asyncio.wait_for(self.proc.wait(), WAIT_S)
        if self._reader is not None:
            self._reader.cancel()
