"""Balancing on a node metric: a resource may choose a metric its data nodes report
(``Node.metrics[name]``, a float such as disk bytes) as its balance dimension instead of replica
count (``plan_rebalance(..., balance_metric={resource: metric})``).

Resources that name the same metric form one group; the metric a node reports is taken to be what
that group's replicas on the node weigh. Groups are balanced one after another (by metric name),
each on its own: their replicas count neither toward the replica-count targets nor toward another
group (they do count toward leadership caps, and leaderships of every resource are balanced
together, by count).

Estimate. A replica's weight is not reported, so the planner estimates it from where the
partition lives: a node that reports the metric and holds ``k`` replicas of the group (on any
status) gives each of them ``metric / k``; all replicas of a partition are copies of the same data,
so a partition weighs the mean of that figure over its replicas on reporting nodes, or, when none
of its nodes reports, the group's mean per-replica figure (0 when no node reports). A node that
reports the metric carries what it reports; one that does not carries the estimated weights of the
group's replicas it holds (so a new empty node starts at 0). Metrics that are not finite or are
negative count as not reported. Moves shift a partition's weight from one node to the other.

Balancing, over the eligible nodes (up, neither excluded nor held), after repairs and replica-count
balance: while some node's ``load / capacity`` is more than ``METRIC_TOLERANCE`` (10%) above or
below the mean of the eligible nodes, move the replica that lowers ``sum(load**2 / capacity)``
most from a node above the band to the lowest node it fits on (or onto a node below the band from
the highest node that has one that fits), reason ``metric_overloaded``. A replica moves only if it
does not overshoot (the destination stays below the source's old ratio and the source above the
destination's), and if it weighs at least ``METRIC_MIN_STEP`` (1%) of the group's mean replica on
the eligible nodes (a lighter one would cost a move and change nothing); so the highest ratio never
rises, the lowest never falls, every move lowers ``sum(load**2 / capacity)``, and the run ends.
Replicas this plan already placed move first (that merges into their first move, at no cost),
then the heaviest relief, then followers before leaders. Moves obey every placement rule:
distinct nodes, never a lower zone spread, no held node as destination or source, pinned
partitions untouched. Nodes still outside the band when no move helps are reported in
``Plan.stuck``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hacoord.placement.rebalance import _Planner

#: A node may sit this far (relative) from the mean metric per capacity before replicas move.
METRIC_TOLERANCE = 0.10
#: A replica lighter than this share of the group's mean replica weight is not worth a move.
METRIC_MIN_STEP = 0.01
#: Move reason of the metric balance.
METRIC_REASON = "metric_overloaded"


@dataclass(frozen=True)
class MetricFigures:
    """How even one metric group is over the ``nodes`` eligible nodes: the largest and smallest
    ``load / capacity`` over the mean, as the state is (``before``) and as planned (``after``, by
    the estimate). 1.0 is perfect; balancing stops within ``METRIC_TOLERANCE`` of it."""

    metric: str
    resources: tuple[str, ...]
    nodes: int
    max_over_mean_before: float
    max_over_mean_after: float
    min_over_mean_before: float
    min_over_mean_after: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                ((k, getattr(self, k)) for k in self.__dataclass_fields__)}


def spread(load: Sequence[float], capacity: Sequence[float], nodes: Iterable[int]) -> tuple[float, float]:
    """``(max, min)`` of ``load / capacity`` over ``nodes``, each over their mean; (1, 1) when
    there is nothing to compare."""
    pick = list(nodes)
    whole = sum(capacity[n] for n in pick)
    total = sum(load[n] for n in pick)
    mean = total / whole if pick and whole > 0 else 0.0
    if not pick or total <= 0 or mean <= 0:  # mean 0: loads so small that the ratio underflows
        return 1.0, 1.0
    ratios = [load[n] / capacity[n] / mean for n in pick]
    return max(ratios), min(ratios)


def reported(value: Any) -> float | None:
    """A node's metric as the planner uses it: a finite non-negative number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


class Dimension:
    """Working state of one balance dimension (replica count, or one metric group) in one
    planning run, per node index of the planner: the movable partitions of the dimension each
    eligible node may give (``parts``), those of them this plan placed there (``fresh``: moving
    one on merges into its first move), and the dimension's replicas on each good node
    (``good``)."""

    def __init__(self, size: int) -> None:
        self.parts: list[dict[int, None]] = [{} for _ in range(size)]
        self.fresh: list[dict[int, None]] = [{} for _ in range(size)]
        self.good = [0] * size

    def grow(self) -> None:
        """Room for one more node (an unknown one the scan met)."""
        self.parts.append({})
        self.fresh.append({})
        self.good.append(0)

    def take(self, node: int, pid: int) -> None:
        """``pid``'s replica leaves the good ``node``."""
        self.parts[node].pop(pid, None)
        self.fresh[node].pop(pid, None)
        self.good[node] -= 1

    def give(self, node: int, pid: int, fresh: bool) -> None:
        """``pid`` gets a replica on the eligible ``node`` (``fresh``: not one it had)."""
        self.parts[node][pid] = None
        if fresh:
            self.fresh[node][pid] = None
        self.good[node] += 1


class MetricDim(Dimension):
    """A metric group's :class:`Dimension`, with the group's replicas seen on each node (any
    status), the estimated weight of each partition and load of each node."""

    def __init__(self, metric: str, resources: tuple[str, ...], size: int) -> None:
        super().__init__(size)
        self.metric, self.resources = metric, resources
        self.seen = [0] * size
        self.pids: list[int] = []
        self.weight: dict[int, float] = {}
        self.load: list[float] = []
        self.before: list[float] = []

    def grow(self) -> None:
        super().grow()
        self.seen.append(0)

    def estimate(self, values: Sequence[float | None], reps_of: Sequence[Sequence[int]]) -> None:
        """Partition weights and node loads from the reported ``values`` (see the module doc)."""
        seen = self.seen
        per = [v / seen[n] if v is not None and seen[n] else None for n, v in enumerate(values)]
        reporting = [n for n, v in enumerate(per) if v is not None]
        count = sum(seen[n] for n in reporting)
        mean = sum(values[n] or 0.0 for n in reporting) / count if count else 0.0
        load = [v if v is not None else 0.0 for v in values]
        for pid in self.pids:
            reps = reps_of[pid]
            known = [per[r] for r in reps if per[r] is not None]
            w = self.weight[pid] = sum(known) / len(known) if known else mean
            for r in reps:
                if values[r] is None:
                    load[r] += w
        self.load, self.before = load, list(load)

    def take(self, node: int, pid: int) -> None:
        super().take(node, pid)
        self.load[node] -= self.weight[pid]

    def give(self, node: int, pid: int, fresh: bool) -> None:
        super().give(node, pid, fresh)
        self.load[node] += self.weight[pid]

    def figures(self, nodes: Sequence[int], capacity: Sequence[float]) -> MetricFigures:
        hi0, lo0 = spread(self.before, capacity, nodes)
        hi1, lo1 = spread(self.load, capacity, nodes)
        return MetricFigures(self.metric, self.resources, len(nodes), hi0, hi1, lo0, lo1)


def _pairs(order: list[int], ratio: Any, upper: float, lower: float) -> Iterator[tuple[int, int]]:
    """Source/destination pairs to try, best first: each node above the band with the lowest
    nodes, then each node below the band with the highest."""
    for src in reversed(order):
        if ratio(src) <= upper:
            break
        for dst in order:
            if ratio(dst) >= ratio(src):
                break
            yield src, dst
    for dst in order:
        if ratio(dst) >= lower:
            break
        for src in reversed(order):
            if ratio(src) <= ratio(dst):
                break
            yield src, dst


def _pick(planner: _Planner, dim: MetricDim, src: int, dst: int, least: float, candidates: list[int]
          ) -> int | None:
    """Of ``candidates`` (partitions on ``src`` whose replica may go to ``dst``'s zone), the one
    weighing at least ``least`` whose move to ``dst`` lowers ``sum(load**2 / capacity)`` most
    without overshooting (module doc), or None."""
    cap, load = planner.cap, dim.load
    gap = load[src] / cap[src] - load[dst] / cap[dst]
    inv = 1 / cap[src] + 1 / cap[dst]
    most = gap * min(cap[src], cap[dst])
    fresh, leader, weight, reps_of = dim.fresh[src], planner.leader, dim.weight, planner.reps
    best, best_key = None, None
    for pid in candidates:
        w = weight[pid]
        if not least <= w < most or dst in reps_of[pid]:
            continue
        key = (pid in fresh, w * (2 * gap - w * inv), leader[pid] != src)
        if best_key is None or key > best_key:
            best, best_key = pid, key
    return best


def balance_metric(planner: _Planner, dim: MetricDim) -> list[int]:
    """Even out ``dim``'s load per capacity over the planner's eligible nodes (module doc). Returns
    the nodes left outside the band because no move helps (empty when balanced)."""
    nodes, cap, rank, load = planner.eligible, planner.cap, planner.rank, dim.load
    whole = sum(cap[n] for n in nodes)
    total = sum(load[n] for n in nodes)
    if len(nodes) < 2 or whole <= 0 or total <= 0:
        return []
    mean = total / whole
    upper, lower = mean * (1 + METRIC_TOLERANCE), mean * (1 - METRIC_TOLERANCE)
    least = METRIC_MIN_STEP * total / max(1, sum(dim.good[n] for n in nodes))
    good, zone, reps_of = planner.good, planner.zone, planner.reps
    # Partitions on a node whose replica there may go to a zone (``_Planner._fits`` but for the
    # destination's own replicas), by (node, zone), kept until a move touches the node; under
    # them, each partition's good replicas per zone, kept until it moves.
    movable: dict[tuple[int, int], list[int]] = {}
    tallies: dict[int, dict[int, int]] = {}

    def movable_to(src: int, zd: int) -> list[int]:
        found = movable.get((src, zd))
        if found is None:
            zs, found = zone[src], []
            for pid in dim.parts[src]:
                if zs != zd:
                    used = tallies.get(pid)
                    if used is None:
                        used = tallies[pid] = {}
                        for r in reps_of[pid]:
                            if good[r]:
                                used[zone[r]] = used.get(zone[r], 0) + 1
                    if used[zs] < 2 and zd in used:
                        continue  # would lower the zone spread
                found.append(pid)
            movable[(src, zd)] = found
        return found

    def ratio(n: int) -> float:
        return load[n] / cap[n]

    # A pair that found no move finds none until a move touches one of its two nodes (the
    # outcome depends only on their loads and partitions): remembered, not tried again.
    failed: set[tuple[int, int]] = set()
    # Every move lowers sum(load**2 / capacity), so no assignment comes back and the loop ends;
    # the budget only bounds the work (two moves a movable replica).
    for _ in range(2 * sum(len(dim.parts[n]) for n in nodes) + 1):
        order = sorted(nodes, key=lambda n: (ratio(n), -rank[n]))
        if ratio(order[-1]) <= upper and ratio(order[0]) >= lower:
            break
        for src, dst in _pairs(order, ratio, upper, lower):
            if (src, dst) in failed:
                continue
            pid = _pick(planner, dim, src, dst, least, movable_to(src, zone[dst]))
            if pid is None:
                failed.add((src, dst))
                continue
            touched = set(reps_of[pid])
            planner._record(pid, src, dst, METRIC_REASON)
            touched.update(reps_of[pid])
            failed = {(s, d) for s, d in failed if s not in touched and d not in touched}
            tallies.pop(pid, None)
            for key in [key for key in movable if key[0] in touched]:
                del movable[key]
            break
        else:
            break
    return [n for n in nodes if not lower <= ratio(n) <= upper]
