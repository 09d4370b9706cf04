"""Balancing on a node metric: a resource may choose a metric its data nodes report
(``Node.metrics[name]``, a float such as disk bytes) as its balance dimension instead of replica
count (``plan_rebalance(..., balance_metric={resource: metric})``).

Resources that name the same metric form one group; the metric a node reports is taken to be what
that group's replicas on the node weigh. Groups are balanced one after another (by metric name),
each on its own: their replicas count neither toward the replica-count targets nor toward another
group (they do count toward leadership caps, and leaderships of every resource are balanced
together, by count).

Estimate. A replica's weight is not reported: the planner estimates each partition's weight
and each node's load when it reads the state (:func:`hacoord.placement.estimate.estimate`), and
a move shifts the partition's weight from one node to the other.

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

from collections.abc import Callable, Iterator

from hacoord.placement.draft import Draft, MetricTally
from hacoord.placement.plan import METRIC_REASON

#: A node may sit this far (relative) from the mean metric per capacity before replicas move.
METRIC_TOLERANCE = 0.10
#: A replica lighter than this share of the group's mean replica weight is not worth a move.
METRIC_MIN_STEP = 0.01


def _pairs(order: list[int], ratio: Callable[[int], float], upper: float, lower: float
           ) -> Iterator[tuple[int, int]]:
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


def _pick(draft: Draft, dim: MetricTally, src: int, dst: int, least: float, candidates: list[int]
          ) -> int | None:
    """Of ``candidates`` (partitions on ``src`` whose replica may go to ``dst``'s zone), the one
    weighing at least ``least`` whose move to ``dst`` lowers ``sum(load**2 / capacity)`` most
    without overshooting (module doc), or None."""
    cap, load = draft.view.cap, dim.load
    gap = load[src] / cap[src] - load[dst] / cap[dst]
    inv = 1 / cap[src] + 1 / cap[dst]
    most = gap * min(cap[src], cap[dst])
    fresh, leader, weight, reps_of = dim.fresh[src], draft.view.leader, dim.weight, draft.reps
    best, best_key = None, None
    for pid in candidates:
        w = weight[pid]
        if not least <= w < most or dst in reps_of[pid]:
            continue
        key = (pid in fresh, w * (2 * gap - w * inv), leader[pid] != src)
        if best_key is None or key > best_key:
            best, best_key = pid, key
    return best


def balance_metric(draft: Draft, dim: MetricTally) -> list[int]:
    """Even out ``dim``'s load per capacity over the eligible nodes of ``draft`` (module doc).
    Returns the nodes left outside the band because no move helps (empty when balanced)."""
    view = draft.view
    nodes, cap, rank, load = view.eligible, view.cap, view.rank, dim.load
    whole = sum(cap[n] for n in nodes)
    total = sum(load[n] for n in nodes)
    if len(nodes) < 2 or whole <= 0 or total <= 0:
        return []
    mean = total / whole
    upper, lower = mean * (1 + METRIC_TOLERANCE), mean * (1 - METRIC_TOLERANCE)
    least = METRIC_MIN_STEP * total / max(1, sum(dim.good[n] for n in nodes))
    good, zone, reps_of = view.good, view.zone, draft.reps
    # Partitions on a node whose replica there may go to a zone (:meth:`Draft.fits` but for the
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
            pid = _pick(draft, dim, src, dst, least, movable_to(src, zone[dst]))
            if pid is None:
                failed.add((src, dst))
                continue
            touched = set(reps_of[pid])
            draft.record(pid, src, dst, METRIC_REASON)
            touched.update(reps_of[pid])
            failed = {(s, d) for s, d in failed if s not in touched and d not in touched}
            tallies.pop(pid, None)
            for key in [key for key in movable if key[0] in touched]:
                del movable[key]
            break
        else:
            break
    return [n for n in nodes if not lower <= ratio(n) <= upper]


def balance_metrics(draft: Draft) -> None:
    """Balance each metric group of ``draft`` in turn (:func:`balance_metric`), reporting the
    nodes left outside the band."""
    for dim in draft.metric_dims:
        for n in balance_metric(draft, dim):
            draft.stick(None, n, f"metric {dim.metric}: no replica move narrows the gap")
