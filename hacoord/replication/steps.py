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
import time
from collections.abc import Iterator
from contextlib import contextmanager

NOTE_ABOVE = 0.005  # seconds: shorter steps are not worth remembering


class Steps:
    """The longest steps since the last :meth:`take` (a few, the longest kept)."""

    KEEP = 8

    def __init__(self) -> None:
        self._recent: list[tuple[float, str]] = []

    def note(self, name: str, seconds: float) -> None:
        if seconds < NOTE_ABOVE:
            return
        recent = self._recent
        recent.append((seconds, name))
        if len(recent) > 4 * self.KEEP:
            recent.sort(reverse=True)
            del recent[self.KEEP:]

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.note(name, time.perf_counter() - started)

    def take(self, count: int = 3) -> list[tuple[float, str]]:
        """The ``count`` longest steps noted since the last call, longest first; forgets them."""
        recent, self._recent = sorted(self._recent, reverse=True), []
        return recent[:count]


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
