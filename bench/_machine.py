"""What the benchmark reads of the machine: CPU and memory of a process
from /proc, the CPU other processes use meanwhile (``LoadMeter``), and the
machine's description for a report (no third-party deps; re-exported by
``_common``)."""

from __future__ import annotations

import os
import time

_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc readers -----------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """CPU time (user + system) used so far by every thread of ``pid``, in ns.

    Uses the per-thread ``schedstat`` (nanosecond resolution) when the kernel
    has it, else ``stat`` utime + stime (clock-tick resolution).
    """
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:  # the thread just exited
                continue
        if total > 0:
            return total
    except (FileNotFoundError, PermissionError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat", "rb") as f:
        # Fields after the ")" that ends the command name; utime and stime are
        # fields 14 and 15 of the whole line.
        fields = f.read().rsplit(b")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // _CLK_TCK


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def self_cpu_ns() -> int:
    return time.process_time_ns()


class LoadMeter:
    """CPU used by processes other than this benchmark and its subprocesses,
    to flag results taken on a busy machine.

    Sums, over every other user-space process, the growth of utime + stime +
    cutime + cstime from /proc/<pid>/stat (cutime/cstime catch short-lived
    processes once their parent reaps them), plus the machine's steal time
    from /proc/stat (CPU the hypervisor gave to another machine). Kernel
    threads are left out: they mostly carry our own loopback traffic.
    """

    def __init__(self) -> None:
        self._me = os.getpid()
        self._t0 = time.monotonic()
        self._procs0 = self._others()
        self._steal0 = self._steal_ticks()

    @staticmethod
    def _steal_ticks() -> int:
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
            return int(fields[8]) if len(fields) > 8 else 0
        except (OSError, ValueError):
            return 0

    def _others(self) -> dict[tuple[int, int], int]:
        """CPU ticks of every other process, keyed by (pid, start time)."""
        stats: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, start, ticks)
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return {}
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            ppid = int(fields[1])
            if pid == 2 or ppid == 2:  # kthreadd and kernel threads
                continue
            ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            stats[pid] = (ppid, int(fields[19]), ticks)
        ours = {self._me}
        changed = True
        while changed:  # our descendants, however deep
            changed = False
            for pid, (ppid, _, _) in stats.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        return {(pid, start): ticks for pid, (_, start, ticks) in stats.items() if pid not in ours}

    def other_cores(self) -> float:
        """Average number of cores busy with other work since construction."""
        wall = time.monotonic() - self._t0
        if wall <= 0:
            return 0.0
        now = self._others()
        ticks = sum(t - self._procs0.get(key, 0) for key, t in now.items())
        ticks += self._steal_ticks() - self._steal0
        return max(0.0, ticks / _CLK_TCK / wall)


# -- machine ------------------------------------------------------------------


def machine_info() -> dict[str, object]:
    import platform

    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    try:
        import pydantic_core

        pyd = pydantic_core.__version__
    except Exception:  # pragma: no cover - reporting only
        pyd = "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "pydantic_core": pyd,
    }
