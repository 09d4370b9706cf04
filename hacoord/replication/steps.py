"""Long steps on the member's event loop, noted by whatever ran them.

Everything a member does - Raft ticks, applying commands, HTTP handlers, planning - shares one
event loop, so a step that runs long delays all the others (and, past the election timeout,
costs the leadership). Code that may run long notes what it did and how long it took; the lag
monitor (:class:`hacoord.server.looplag.LagMonitor`) names the longest recent ones when it sees
the loop stall.

Threads: the event loop only.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

NOTE_ABOVE = 0.005  # seconds: shorter steps are not worth remembering


class Steps:
    """The longest steps since the last :meth:`take` (a few, the longest kept).

    A step is noted with its wall-clock time and, where measured, the CPU time its thread spent
    in it: on a shared machine a step can take 23 ms of which 9 ms ran, the rest waiting for a
    core, and only the 9 ms are the step's own doing."""

    KEEP = 8

    def __init__(self) -> None:
        self._recent: list[tuple[float, str, float | None]] = []

    def note(self, name: str, seconds: float, cpu: float | None = None) -> None:
        if seconds < NOTE_ABOVE:
            return
        recent = self._recent
        recent.append((seconds, name, cpu))
        if len(recent) > 4 * self.KEEP:
            recent.sort(key=_longest, reverse=True)
            del recent[self.KEEP:]

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started, ran = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.note(name, time.perf_counter() - started, time.thread_time() - ran)

    def take(self, count: int = 3) -> list[tuple[float, str, float | None]]:
        """The ``count`` longest steps noted since the last call, longest first, as
        ``(seconds, name, CPU seconds or None)``; forgets them."""
        recent, self._recent = sorted(self._recent, key=_longest, reverse=True), []
        return recent[:count]


def _longest(step: tuple[float, str, float | None]) -> float:
    return step[0]


def describe(steps: list[tuple[float, str, float | None]]) -> str:
    """Steps as a lag sample names them: ``"raft tick 23 ms (9 ms on a core), apply X 7 ms"``
    (the CPU time is given when the step waited for a core 1 ms or more)."""
    parts = []
    for seconds, name, cpu in steps:
        text = f"{name} {seconds * 1000:.0f} ms"
        if cpu is not None and seconds - cpu >= 0.001:
            text += f" ({cpu * 1000:.0f} ms on a core)"
        parts.append(text)
    return ", ".join(parts)


#: The member's registry (one event loop per process).
STEPS = Steps()


class GcTimer:
    """Notes every garbage collection in :data:`STEPS` (``gc generation N``), so that a stall
    the collector caused says so. ``install`` hooks it into ``gc.callbacks`` once."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.steps.note(f"gc generation {info.get('generation')}",
                            time.perf_counter() - self._started)

    def install(self) -> None:
        if not any(isinstance(cb, GcTimer) for cb in gc.callbacks):
            gc.callbacks.append(self)


def process_age() -> float | None:
    """Seconds since this process started, imports included (Linux, in steps of 10 ms), or None
    where ``/proc`` cannot tell."""
    try:
        with open("/proc/self/stat", "rb") as stat, open("/proc/uptime", "rb") as uptime:
            started = int(stat.read().rsplit(b")", 1)[1].split()[19])  # field 22: start time
            return float(uptime.read().split()[0]) - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
