"""One Python racer for a queue file's stale lock, for
test_js_queue_lock_race.py: the twin of node/queue_lock_racer.js, the same
lines in and out."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipc_client.queue_lock import lock_queue_file, unlock_queue_file  # noqa: E402


def main() -> None:
    held: tuple[str, int | None] | None = None
    print("ready", flush=True)
    for line in sys.stdin:
        word, *rest = line.split()
        if word == "go":
            at, file = float(rest[0]) / 1000, rest[1]
            while time.time() < at:
                pass  # a barrier: every racer tries at the same moment (at is at most a few ms away)
            try:
                held = (file, lock_queue_file(file, "q"))
                print("got", flush=True)
            except Exception as exc:  # noqa: BLE001 - reported to the test
                print(f"refused {getattr(exc, 'reason', exc)}", flush=True)
        elif word == "release":
            if held is not None:
                unlock_queue_file(*held)
            held = None
            print("released", flush=True)


if __name__ == "__main__":
    main()
