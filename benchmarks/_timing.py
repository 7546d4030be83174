"""What the throughput benchmarks share: racing vaekit against PyTorch, telling a disturbed epoch from a quiet one.

The machine may be shared: an epoch during which other processes took more than
:data:`DISTURBED` of the CPU (read from ``/proc/stat`` on Linux) is marked ``*`` and left
out of the summary, unless every epoch of a side was disturbed.
"""

from __future__ import annotations

import os
import pathlib
import statistics
from typing import Callable, NamedTuple

import vaekit as vk

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


Round = Callable[[Callable[..., object]], list[float]]  # trains, calls its argument after each epoch, returns images/s


class Standings(NamedTuple):
    """Images/s of the best and median undisturbed epochs of each side."""

    best: float
    median: float
    reference_best: float
    reference_median: float


def race(ours: Round, theirs: Round, *, rounds: int) -> Standings:
    """Alternates a round of vaekit and one of PyTorch ``rounds`` times, printing every epoch and a summary.

    Each side's round trains one or more epochs, calling the given function after each (so
    that each epoch is checked for disturbance on its own) and returns their images/s.

    Returns:
      vaekit's and PyTorch's best and median undisturbed epochs.
    """
    cpu = CpuShare()
    epochs: dict[str, list[tuple[float, bool]]] = {"vaekit": [], "pytorch": []}
    for r in range(rounds):
        line = []
        for side, run in (("vaekit", ours), ("pytorch", theirs)):
            snapshots = [cpu.snapshot()]
            speeds = run(lambda *_: snapshots.append(cpu.snapshot()))
            timed = [(v, cpu.others(a, b) > DISTURBED) for v, a, b in zip(speeds, snapshots, snapshots[1:])]
            epochs[side] += timed
            line.append(f"{side} {' '.join(marked(v, d) for v, d in timed)}")
        print(f"  round {r + 1}/{rounds}: {' | '.join(line)} images/s", flush=True)
    (best, median, quiet), (best_ref, median_ref, quiet_ref) = (
        summary([v for v, _ in epochs[side]], [d for _, d in epochs[side]]) for side in ("vaekit", "pytorch"))
    print(f"  vaekit  images/s: best {best:,.0f}  median {median:,.0f}  ({quiet} of {len(epochs['vaekit'])} epochs "
          f"undisturbed)\n  pytorch images/s: best {best_ref:,.0f}  median {median_ref:,.0f}  ({quiet_ref} of "
          f"{len(epochs['pytorch'])} epochs undisturbed)\n  ratio vaekit/pytorch: best {best / best_ref:.2f}x  "
          f"median {median / median_ref:.2f}x", flush=True)
    return Standings(best, median, best_ref, median_ref)


class FitRounds:
    """vaekit's side of a race: each call trains ``config.epochs`` more epochs of ``model`` with ``vaekit.fit``.

    The optimizer state carries over from call to call, so the rounds continue one training
    run; each call compiles afresh (excluded from its images/s, kept in ``compile_seconds``).
    """

    def __init__(self, model, train_data, config, *, objective=None):
        self.model, self.train_data, self.config, self.objective = model, train_data, config, objective
        self.opt_state, self.next_epoch, self.compile_seconds = None, 1, []

    def __call__(self, on_epoch_end: Callable[..., object]) -> list[float]:
        result = vk.fit(self.model, self.train_data, None, self.config, objective=self.objective,
                        opt_state=self.opt_state, first_epoch=self.next_epoch, progress=False, on_epoch_end=on_epoch_end)
        self.opt_state, self.next_epoch = result.opt_state, self.next_epoch + self.config.epochs
        self.compile_seconds.append(result.compile_seconds)
        return [entry["images_per_s"] for entry in result.history]
