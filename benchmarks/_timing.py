"""What the throughput benchmarks share: telling a disturbed epoch from a quiet one, and summarising.

The machine may be shared: an epoch during which other processes took more than
:data:`DISTURBED` of the CPU (read from ``/proc/stat`` on Linux) is marked ``*`` and left
out of the summary, unless every epoch of a side was disturbed.
"""

from __future__ import annotations

import os
import pathlib
import statistics

DISTURBED = 0.05  # share of the machine's CPU time taken by other processes


class CpuShare:
    """Snapshots of the CPU time used by the machine and by this process (Linux; elsewhere a no-op)."""

    def __init__(self):
        self.available = pathlib.Path("/proc/stat").exists()

    def snapshot(self) -> tuple[float, float, float]:
        if not self.available:
            return (0.0, 0.0, 0.0)
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        own = os.times()
        busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        return (busy, (own.user + own.system) * os.sysconf("SC_CLK_TCK"), sum(ticks))

    @staticmethod
    def others(before, after) -> float:
        """Share of all CPU time between two snapshots that other processes used."""
        total = after[2] - before[2]
        return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / total if total else 0.0


def summary(values: list[float], disturbed: list[bool]) -> tuple[float, float, int]:
    """Best and median of the undisturbed epochs (of all, if every epoch was disturbed), and how many were undisturbed."""
    quiet = [v for v, d in zip(values, disturbed) if not d]
    chosen = quiet or values
    return max(chosen), statistics.median(chosen), len(quiet)


def marked(value: float, disturbed: bool) -> str:
    """``12,345`` or ``12,345*`` for a disturbed epoch."""
    return f"{value:,.0f}{'*' if disturbed else ''}"
