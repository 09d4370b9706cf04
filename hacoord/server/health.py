"""The health summary of a member's state, computed once per change it can see (status pages,
metrics and probes ask for it often; nodes' metric reports do not count). At 100,000 partitions
one pass costs 20-40 ms: on a large state it is computed in a forked child
(:class:`~hacoord.server.reads.HeavyReads`), never on the loop."""

from __future__ import annotations

import json
from typing import Any

from hacoord.core.health import summary
from hacoord.replication.base import Replicator
from hacoord.server.coordinator import replica_count
from hacoord.server.reads import HeavyReads


def _health_body(state: Any) -> dict[str, Any]:
    return {"revision": state.revision, **summary(state)}


class HealthCache:
    """:func:`hacoord.core.health.summary` of the replicator's state: :meth:`current` brings it
    up to the state's revision (off the loop when the state is large), :meth:`summary` returns
    the last one computed (for a synchronous reader such as the metrics collector, which is
    brought up to date before each scrape)."""

    def __init__(self, replicator: Replicator, heavy: HeavyReads) -> None:
        self.replicator = replicator
        self.heavy = heavy
        self._key: tuple[int, int] | None = None
        self._value: dict[str, Any] | None = None

    async def current(self) -> dict[str, Any]:
        """The summary at the state's revision now (or later, if it moved meanwhile). A change
        the summary cannot see (a node's metric report, a token) keeps the last one
        (``ClusterState.planning_revision``: the summary reads what the planner reads)."""
        state = self.replicator.state
        key = (id(state), state.planning_revision)
        if key == self._key and self._value is not None:
            return self._value
        _, body = await self.heavy.answer(("health",), state.revision, _health_body, state,
                                          size=replica_count(state), name="health summary",
                                          keep=False)
        value = json.loads(body)
        del value["revision"]
        if self._key is None or key[1] >= self._key[1] or key[0] != self._key[0]:
            self._key, self._value = key, value
        return value

    def summary(self) -> dict[str, Any]:
        """The last summary :meth:`current` computed (computed here if there is none yet)."""
        if self._value is None:
            state = self.replicator.state
            self._key, self._value = (id(state), state.planning_revision), summary(state)
        return self._value
