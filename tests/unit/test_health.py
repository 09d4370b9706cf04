"""The health summary: one fast pass that agrees with ``partition_health`` partition by partition."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hacoord.core.health import PARTITION_HEALTH, partition_health, summary
from tests.unit.scenarios import build_state


def slow_summary(state) -> dict:
    counts = dict.fromkeys(PARTITION_HEALTH, 0)
    listed = []
    for res in state.resources.values():
        for i, part in enumerate(res.partitions):
            health = partition_health(state, part, res.replication_factor)
            counts[health] += 1
            if health != "healthy" and len(listed) < 100:
                listed.append({"resource": res.name, "partition": i, "health": health})
    return {"partitions": counts, "unhealthy": listed}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 150), st.floats(0, 1))
def test_summary_agrees_with_partition_health(seed: int, steps: int, down_share: float) -> None:
    rng = random.Random(seed)
    state = build_state(rng, steps)
    for node in state.nodes.values():  # some nodes suspect or down, or none
        if rng.random() < down_share:
            node.status = rng.choice(["suspect", "down"])
    fast = summary(state)
    assert {k: fast[k] for k in ("partitions", "unhealthy")} == slow_summary(state)
    assert sum(fast["nodes"].values()) == len(state.nodes)
