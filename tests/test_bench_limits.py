"""bench/limits.py's ``prefixes`` scenario end to end, against this
checkout's server in its own process: sockets that send a 16 MiB length
prefix and 3 bytes, open ones and ones before their handshake, make the
server hold what they sent, not 16 MiB each (docs/security.md, "Sizing")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_length_prefix_alone_does_not_grow_the_servers_memory_by_what_it_announced() -> None:
    connections = 4
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "limits.py"), "prefixes", "--connections", str(connections)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    rss = json.loads(proc.stdout.splitlines()[-1])["rss_mib"]
    opened, waiting = rss[f"after_{connections}_open"], rss[f"after_{connections}_before_handshake"]
    # Each announced 16 MiB: holding that would add 64 MiB per group. Less
    # than one frame's worth leaves room for the allocator's own noise.
    assert opened - rss["before"] < 16
    assert waiting - opened < 16
