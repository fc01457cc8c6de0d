"""What the cross-language suite's modules share: where things are and
how long anything may take (conftest.py re-exports them to the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
WAIT_S = 10.0  # upper bound for anything that should happen "soon"
LINE_LIMIT = 64 * 1024 * 1024  # JSON lines from Node can carry large payloads


async def changed_within(changed: asyncio.Event, remaining: float) -> None:
    """Wait up to ``remaining`` s for ``changed`` (cleared first): a bounded
    wait for the next frame or event, the caller looking again either way."""
    changed.clear()
    try:
        await asyncio.wait_for(changed.wait(), remaining)
    except (asyncio.TimeoutError, TimeoutError):
        pass
