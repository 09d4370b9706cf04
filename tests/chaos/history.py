"""Operation histories: what each client invoked, when, and what came back.

A timeout or a lost answer is *unknown*, never *failed*: the write may have been applied. Times are
``time.monotonic()`` in the test process, so "A completed before B was invoked" is meaningful
across client threads.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Op:
    """One client operation. ``status`` is ``ok``, ``fail`` (certainly not applied) or
    ``unknown`` (maybe applied); ``result`` is what an ok read returned.

    Writes carry their ``request_id`` and, once acknowledged, the ``revision`` they were applied
    at. ``resolved`` is what the cluster's record of applied request ids said after the run:
    ``applied`` (at ``revision``) or ``not_applied``; None when not asked or not answered."""

    process: str
    f: str
    value: Any
    invoked: float
    completed: float | None = None
    status: str = "pending"
    result: Any = None
    error: str | None = None
    key: str | None = None
    request_id: str | None = None
    revision: int | None = None
    resolved: str | None = None


@dataclass
class History:
    """Thread-safe list of operations plus the nemesis' own timeline."""

    ops: list[Op] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def invoke(self, process: str, f: str, value: Any) -> Op:
        op = Op(process, f, value, time.monotonic())
        with self._lock:
            self.ops.append(op)
        return op

    @staticmethod
    def complete(op: Op, status: str, result: Any = None, error: str | None = None) -> None:
        op.completed = time.monotonic()
        op.status = status
        op.result = result
        op.error = error

    def note(self, text: str) -> None:
        with self._lock:
            self.timeline.append((time.monotonic(), text))

    def save(self, directory: Path) -> Path:
        """Write the history and a readable timeline next to the member logs."""
        directory.mkdir(parents=True, exist_ok=True)
        start = min([op.invoked for op in self.ops] + [t for t, _ in self.timeline] or [0.0])
        rows = [asdict(op) for op in self.ops]
        (directory / "history.json").write_text(json.dumps(rows, indent=1, default=str))
        events = [(t, f"nemesis: {text}") for t, text in self.timeline]
        events += [(op.invoked, f"{op.process} invoke {op.f} {op.value}") for op in self.ops]
        events += [(op.completed, f"{op.process} {op.status} {op.f} {op.value}"
                    + (f" -> {op.error}" if op.error else "")
                    + (f" (resolved: {op.resolved})" if op.resolved else ""))
                   for op in self.ops if op.completed is not None]
        lines = [f"{t - start:9.3f}s  {text}" for t, text in sorted(events)]
        path = directory / "timeline.txt"
        path.write_text("\n".join(lines) + "\n")
        return path
