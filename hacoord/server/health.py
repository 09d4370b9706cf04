"""The health summary of a member's state, computed once per revision (status pages, metrics and
probes ask for it often; at 100,000 partitions one pass costs tens of milliseconds of the loop)."""

from __future__ import annotations

from typing import Any

from hacoord.core.health import summary
from hacoord.replication.base import Replicator
from hacoord.replication.steps import STEPS


class HealthCache:
    """``summary()``: :func:`hacoord.core.health.summary` of the replicator's state, recomputed
    only when the state (or its revision) changed."""

    def __init__(self, replicator: Replicator) -> None:
        self.replicator = replicator
        self._key: tuple[int, int] | None = None
        self._value: dict[str, Any] = {}

    def summary(self) -> dict[str, Any]:
        state = self.replicator.state
        key = (id(state), state.revision)
        if key != self._key:
            with STEPS.timed("health summary"):
                self._value = summary(state)
            self._key = key
        return self._value
