"""Runs the js-client unit suite (``npm test``: ``node --test``) under pytest, so one
command covers both languages."""

from __future__ import annotations

import asyncio
import re

from conftest import ROOT


async def test_js_client_unit_suite(node):
    # Explicit files: Node 22+ reads `--test` arguments as globs, not directories.
    files = sorted(p.name for p in (ROOT / "js-client" / "test").glob("*.test.js"))
    proc = await asyncio.create_subprocess_exec(
        node, "--test", *(f"test/{f}" for f in files),
        cwd=ROOT / "js-client", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
    except (asyncio.TimeoutError, TimeoutError):
        proc.kill()
        await proc.wait()
        raise AssertionError("node --test did not finish within 300 s") from None
    text = out.decode(errors="replace")
    failed = re.search(r"^(?:#|ℹ) fail (\d+)", text, re.M)
    passed = re.search(r"^(?:#|ℹ) pass (\d+)", text, re.M)
    assert proc.returncode == 0 and failed and failed.group(1) == "0", _failures(text)
    assert passed and int(passed.group(1)) > 100



def _failures(text: str) -> str:
    """The failing subtests with their diagnostics (TAP `not ok` blocks), not the
    tail of a long log where the passing vectors would hide them."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if re.match(r"\s*not ok ", line):
            end = i + 1
            while end < len(lines) and end - i < 60 and not re.match(r"\s*(?:not )?ok \d+ ", lines[end]):
                end += 1
            blocks.append("\n".join(lines[max(0, i - 2):end]))
    return ("\n\n".join(blocks) or text[-6000:])[-12000:]
