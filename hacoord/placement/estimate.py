"""Reading a node metric for balancing (:mod:`hacoord.placement.metric`): which reported values
count, and the estimated weight of each partition of a metric group and load of each node.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def reported(value: Any) -> float | None:
    """A node's metric as the planner uses it: a finite non-negative number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def estimate(values: Sequence[float | None], seen: Sequence[int], pids: Sequence[int],
             reps_of: Sequence[Sequence[int]]) -> tuple[list[float], list[float]]:
    """A metric group's partition weights (by pid, 0 for the partitions not in ``pids``) and node
    loads, from the metric each node reports (``values``, None where it does not) and the group's
    replicas ``seen`` on each node.

    A replica's weight is not reported, so the planner estimates it from where the partition
    lives: a node that reports the metric and holds ``k`` replicas of the group (on any status)
    gives each of them ``metric / k``; all replicas of a partition are copies of the same data, so
    a partition weighs the mean of that figure over its replicas on reporting nodes, or, when none
    of its nodes reports, the group's mean per-replica figure (0 when no node reports). A node that
    reports the metric carries what it reports; one that does not carries the estimated weights of
    the group's replicas it holds (so a new empty node starts at 0). Metrics that are not finite or
    are negative count as not reported. Moves shift a partition's weight from one node to the
    other.
    """
    per = [v / seen[n] if v is not None and seen[n] else None for n, v in enumerate(values)]
    reporting = [n for n, v in enumerate(per) if v is not None]
    count = sum(seen[n] for n in reporting)
    mean = sum(values[n] or 0.0 for n in reporting) / count if count else 0.0
    load = [v if v is not None else 0.0 for v in values]
    weight = [0.0] * len(reps_of)
    for pid in pids:
        reps = reps_of[pid]
        known = [per[r] for r in reps if per[r] is not None]
        w = weight[pid] = sum(known) / len(known) if known else mean
        for r in reps:
            if values[r] is None:
                load[r] += w
    return weight, load
