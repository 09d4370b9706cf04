"""The draft of a planned assignment: the working copy of every partition's replicas that the
planning phases change, with the per-node tallies kept up to date as they do, the rule every
replica move keeps (:meth:`Draft.fits`), and the moves the changes add up to (:meth:`Draft.moves`).

It starts as the :class:`~hacoord.placement.view.View` has the state, and never changes the view.
The replica phases (:mod:`~hacoord.placement.repair`, :mod:`~hacoord.placement.counts`,
:mod:`~hacoord.placement.metric`) change it only through :meth:`Draft.record`; the leader phase
(:mod:`~hacoord.placement.leaders`) reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hacoord.placement.plan import MetricFigures, Move, Stuck
from hacoord.placement.view import Dimension, View, replica_totals


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


class Tally:
    """Working state of one balance dimension (replica count, or one metric group), per node
    index: the movable partitions of the dimension each eligible node may give (``parts``, from
    the scan's :class:`~hacoord.placement.view.Indexes`), those of them this plan placed there
    (``fresh``: moving one on merges into its first move), and the dimension's replicas on each
    good node (``good``)."""

    def __init__(self, dim: Dimension, parts: list[dict[int, None]]) -> None:
        self.parts = parts
        self.fresh: list[dict[int, None]] = [{} for _ in parts]
        self.good = list(dim.good)

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


class MetricTally(Tally):
    """A metric group's :class:`Tally`, with each node's estimated load; a move shifts the
    partition's estimated weight (``weight``, by pid) from one node to the other."""

    def __init__(self, dim: Dimension, parts: list[dict[int, None]]) -> None:
        super().__init__(dim, parts)
        assert dim.metric is not None
        self.metric, self.resources, self.weight = dim.metric, dim.resources, dim.weight
        self.before = dim.load
        self.load = list(dim.load)

    def take(self, node: int, pid: int) -> None:
        super().take(node, pid)
        self.load[node] -= self.weight[pid]

    def give(self, node: int, pid: int, fresh: bool) -> None:
        super().give(node, pid, fresh)
        self.load[node] += self.weight[pid]

    def figures(self, nodes: Sequence[int], capacity: Sequence[float]) -> MetricFigures:
        """The group's :class:`~hacoord.placement.plan.MetricFigures` over ``nodes``."""
        hi0, lo0 = spread(self.before, capacity, nodes)
        hi1, lo1 = spread(self.load, capacity, nodes)
        return MetricFigures(self.metric, self.resources, len(nodes), hi0, hi1, lo0, lo1)


class Draft:
    """The planned assignment while the phases build it (see the module doc).

    ``reps`` holds each partition's replicas (by pid, node indexes: the view's tuple until the
    plan changes the partition, then a list of its own, see :meth:`own_replicas`), ``dims`` the
    tallies of each dimension (``count``, ``parts`` and ``fresh`` those of the replica count),
    ``saved`` the replicas as they were of the partitions this plan changed (in the order it first
    changed them), ``removed_why`` the reason each original replica left for, and ``stuck`` the
    rules the plan could not satisfy so far (the scan's first).
    """

    def __init__(self, view: View, parts: list[list[dict[int, None]]]) -> None:
        self.view = view
        self.reps: list[Sequence[int]] = list(view.replicas)
        self.dims: list[Tally] = [Tally(view.dims[0], parts[0])]
        self.dims += [MetricTally(dim, p) for dim, p in zip(view.metric_dims, parts[1:], strict=True)]
        self.count = self.dims[0].good
        self.parts = self.dims[0].parts
        self.fresh = self.dims[0].fresh
        self.saved: dict[int, tuple[int, ...]] = {}
        self.removed_why: dict[tuple[int, int], str] = {}
        self.stuck: list[Stuck] = list(view.stuck)

    @property
    def metric_dims(self) -> list[MetricTally]:
        return self.dims[1:]  # type: ignore[return-value]

    def node_replicas(self) -> list[int]:
        """Good replicas of every dimension on each node (what caps the leaderships it may hold)."""
        return replica_totals([d.good for d in self.dims])

    def on(self, node: int) -> Iterable[int]:
        """Movable partitions with a replica on the eligible ``node``, every dimension."""
        if len(self.dims) == 1:
            return self.parts[node]
        return [pid for d in self.dims for pid in d.parts[node]]

    def stranded(self) -> int:
        """Replicas on nodes that are not good."""
        good = self.view.good
        return self.view.stranded + sum(
            sum(1 for r in self.reps[pid] if not good[r]) - sum(1 for r in orig if not good[r])
            for pid, orig in self.saved.items())

    def stick(self, pid: int | None, node: int | None, reason: str) -> None:
        """Report a rule the plan cannot satisfy, for partition ``pid`` and/or ``node``."""
        resource, partition = (None, None) if pid is None else self.view.keys[pid]
        self.stuck.append(Stuck(resource, partition, None if node is None else self.view.ids[node], reason))

    def fits(self, pid: int, src: int, dst: int) -> bool:
        """Moving ``pid``'s replica from ``src`` to ``dst`` keeps nodes distinct and spread."""
        view, reps = self.view, self.reps[pid]
        if dst in reps or src not in reps or not view.active[dst] or view.held[src]:
            return False
        zone = view.zone
        zs, zd = zone[src], zone[dst]
        if zs == zd or zs < 0:
            return True
        others = [zone[r] for r in reps if r != src and view.good[r]]
        return zs in others or zd not in others

    def own_replicas(self, pid: int) -> list[int]:
        """``pid``'s replicas as the list :meth:`record` changes in place from now on."""
        reps = self.reps[pid]
        if isinstance(reps, tuple):
            reps = self.reps[pid] = list(reps)
        return reps  # type: ignore[return-value]

    def record(self, pid: int, src: int | None, dst: int, reason: str) -> None:
        """Move ``pid``'s replica from ``src`` to ``dst`` (add one on ``dst`` when ``src`` is None),
        for ``reason``; the caller has checked that it may."""
        reps = self.own_replicas(pid)
        orig = self.saved.get(pid)
        if orig is None:
            orig = self.saved[pid] = self.view.replicas[pid]
        dim = self.dims[self.view.kinds[pid]]
        if src is None:
            reps.append(dst)
        else:
            reps[reps.index(src)] = dst
            if self.view.good[src]:
                dim.take(src, pid)
            if src in orig:
                self.removed_why.setdefault((pid, src), reason)
        dim.give(dst, pid, dst not in orig)

    def dest_key(self, n: int) -> tuple[int, int, float, int]:
        """Order of the eligible nodes as destinations of a replica counted by number, best
        first: below ``low``, then below ``high``, then the others; then the fewest replicas
        against ``low``, per capacity, and the node rank."""
        view = self.view
        c, lo, hi = self.count[n], view.low[n], view.high[n]
        tier = 0 if c < lo else (1 if c < hi else 2)
        return (tier, c - lo, (c + 1) / view.cap[n], -view.rank[n])

    def moves(self) -> list[Move]:
        """The replica moves from the state to the draft, by pid."""
        out = []
        ids = self.view.ids
        for pid in sorted(self.saved):
            before, after = self.saved[pid], self.reps[pid]
            gone = [r for r in before if r not in after]
            new = [r for r in after if r not in before]
            name, i = self.view.keys[pid]
            for k, dst in enumerate(new):
                if k < len(gone):
                    out.append(Move(name, i, ids[gone[k]], ids[dst],
                                    self.removed_why.get((pid, gone[k]), "chain")))
                else:
                    out.append(Move(name, i, None, ids[dst], "under_replicated"))
        return out
