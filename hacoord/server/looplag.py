"""How late the member's event loop runs: a histogram for ``/metrics`` and a log line for every
stall over ``STALL`` seconds, naming the longest steps that ran meanwhile
(:mod:`hacoord.replication.steps`).

The monitor asks to be woken every ``interval`` seconds and measures how much later it actually
runs: that lateness is what a Raft tick, a heartbeat or a request waiting on the loop suffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from hacoord.replication.steps import STEPS, Steps, describe

log = logging.getLogger(__name__)

INTERVAL = 0.05
STALL = 0.1
#: Lag above this is kept, with its time, in :attr:`LagMonitor.recent` (``/v1/status?lag=true``).
NOTED = 0.02
#: How many such samples are kept (the oldest go first).
HISTORY = 10_000
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LagMonitor:
    """Measures event-loop lag into ``hacoord_event_loop_lag_seconds`` (on ``registry``)."""

    def __init__(self, registry: CollectorRegistry, steps: Steps = STEPS,
                 interval: float = INTERVAL) -> None:
        self.histogram = Histogram("hacoord_event_loop_lag_seconds",
                                   "How late the member's event loop ran a timer",
                                   registry=registry, buckets=BUCKETS)
        self.steps = steps
        self.interval = interval
        self.worst = 0.0
        self.stalls = 0
        #: (wall-clock time, lag, the longest steps noted since the last sample, longest first,
        #: as "raft tick 25 ms, apply X 20 ms"; or None) of the samples over :data:`NOTED`,
        #: oldest first.
        self.recent: deque[tuple[float, float, str | None]] = deque(maxlen=HISTORY)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - due)
            self.histogram.observe(lag)
            self.worst = max(self.worst, lag)
            steps = self.steps.take()
            named = describe(steps)
            if lag > NOTED:
                self.recent.append((time.time(), lag, named or None))
            if lag > STALL:
                self.stalls += 1
                log.warning("event loop stalled %.0f ms (longest steps: %s)", lag * 1000,
                            named or "none noted")

    def report(self, since: float = 0.0) -> dict[str, Any]:
        """The worst lag so far, how many stalls were logged, and the samples over
        :data:`NOTED` taken after ``since`` (seconds since the epoch), as ``[time, lag, steps]``
        (the longest steps noted meanwhile, longest first, as ``"raft tick 25 ms, apply X 20
        ms"``; None if none took :data:`~hacoord.replication.steps.NOTE_ABOVE`: the process
        waited for a CPU, or many short steps ran). A step may contain the next one."""
        return {"interval": self.interval, "noted_over": NOTED, "worst": self.worst,
                "stalls": self.stalls, "kept": HISTORY,
                "samples": [[t, lag, step] for t, lag, step in self.recent if t > since]}
