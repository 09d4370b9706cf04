"""Invariants checked after every applied change, on every member: a violation is logged,
counted and shown (status, metrics), never ignored, and never stops the log (apply is total)."""

from __future__ import annotations

import logging
from collections import deque

from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome
from hacoord.core.validate import check_changes

log = logging.getLogger(__name__)


class InvariantWatch:
    """Runs :func:`hacoord.core.validate.check_changes` on each applied outcome's events."""

    def __init__(self, keep: int = 20) -> None:
        self.violations = 0
        self.recent: deque[str] = deque(maxlen=keep)

    def observe(self, state: ClusterState, outcome: Outcome) -> None:
        if not outcome.ok or not outcome.events:
            return
        try:
            problems = check_changes(state, outcome.events)
        except Exception:  # a checker bug must not stall the log either
            log.exception("invariant check failed at revision %d", state.revision)
            return
        for problem in problems:
            self.violations += 1
            self.recent.append(f"revision {state.revision}: {problem}")
            log.error("invariant violated at revision %d: %s", state.revision, problem)
