"""Targets and figures: how many replicas (and leaderships) each node should hold, how far a state is
from that, and how many replica moves any plan must make at least.

Pure and deterministic; ties are broken by rendezvous hashing of the node id, never by ``hash()``.

Eligible nodes are those with status ``"up"`` that the caller neither excludes (drains) nor holds.
Each partition wants ``min(replication_factor, eligible nodes)`` replicas on distinct eligible
nodes spanning ``min(wanted, zones with eligible nodes)`` zones. A held node (cordoned, or one
whose re-replication waits; see :mod:`hacoord.placement.rebalance`) keeps its replicas and has no
share: a partition with replicas on held nodes wants that many fewer of the eligible nodes, and
none in the zones those replicas already cover (a :data:`DemandKey` with a residual count), which
the rank below accounts for exactly, so shares, targets and lower bound stay those of what the
eligible nodes must hold.

Shares. The ideal is capacity-proportional: ``total * capacity / total capacity`` (the *flat*
share). Distinct nodes and zone spread can forbid it: a lone node in a third zone must hold one
replica of every RF-3 partition, however small its capacity. For one partition, the replica sets
that satisfy both rules are the bases of a matroid (at most one replica per zone, truncated to the
wanted count; or, when it wants more replicas than there are zones, the sets that cover every zone),
so the vectors of feasible per-node replica counts are the integer points of a polymatroid whose
rank is the sum of the partitions' matroid ranks. The share used here is that polymatroid's
lexicographically optimal base for the capacity weights (Fujishige): the flat share whenever it is
feasible, otherwise the most capacity-proportional feasible one. Because the share lies in the
polymatroid, some assignment puts every node within ``[floor(share), ceil(share)]`` at once; the
planner aims for exactly that range (``low``/``high``), which is within one replica of the integer
``target``.

The rank only depends on how many nodes of each zone a set contains, and only up to
``wanted - zones + 1``, so the minimising sets are enumerated exactly over per-zone prefixes of the
nodes ordered by capacity. Up to ``MAX_CANDIDATE_SETS`` candidates (that is 12 zones when no
partition wants more replicas than there are zones) the result is exact; above that only the whole
zones and single zones are tried, which can leave a target that no assignment reaches.

Leader shares are capacity-proportional too, capped by the replicas a node holds (a node leads only
partitions it holds); that cap is exact for the common cases and approximate in general.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from hacoord.core.model import ClusterState, Node
from hacoord.placement.assign import rendezvous

#: Candidate sets examined per step of the lexicographically optimal base; see the module doc.
MAX_CANDIDATE_SETS = 4096
_EPS = 1e-9


def node_rank(node_id: str) -> int:
    """Stable tie-break score of a node (higher wins), independent of registration order."""
    return rendezvous("\x00balance", 0, node_id)


def eligible_nodes(state: ClusterState, exclude: Iterable[str] = frozenset()) -> list[Node]:
    """Nodes that may hold replicas: status ``"up"`` and not in ``exclude``, sorted by id."""
    excluded = frozenset(exclude)
    return sorted((n for n in state.nodes.values() if n.status == "up" and n.id not in excluded),
                  key=lambda n: n.id)


def replica_demand(state: ClusterState, eligible: int) -> dict[int, int]:
    """Partitions per wanted replica count ``min(replication_factor, eligible)`` (0 omitted)."""
    classes: dict[int, int] = {}
    for res in state.resources.values():
        wanted = min(res.replication_factor, eligible)
        if wanted > 0 and res.partitions:
            classes[wanted] = classes.get(wanted, 0) + len(res.partitions)
    return dict(sorted(classes.items()))


@dataclass(frozen=True)
class Targets:
    """Per-node shares of ``total`` items (replicas or leaderships), aligned with ``nodes``.

    ``flat`` is the capacity-proportional share, ``share`` the one used (equal to ``flat`` unless
    ``constrained``), ``low``/``high`` its floor and ceiling, ``target`` the integer targets: each
    ``low`` or ``high``, summing exactly to ``total``, the remainder going to the largest
    fractional parts (ties by :func:`node_rank`).
    """

    nodes: tuple[str, ...]
    capacity: tuple[float, ...]
    total: int
    share: tuple[float, ...]
    flat: tuple[float, ...]
    low: tuple[int, ...]
    high: tuple[int, ...]
    target: tuple[int, ...]

    @property
    def constrained(self) -> bool:
        """True when some share differs from the flat one by more than rounding noise."""
        return any(abs(s - f) > 1e-6 * max(1.0, f) for s, f in zip(self.share, self.flat, strict=True))

    def of(self, node_id: str) -> dict[str, Any]:
        i = self.nodes.index(node_id)
        return {"share": self.share[i], "flat": self.flat[i], "low": self.low[i],
                "high": self.high[i], "target": self.target[i]}

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "constrained": self.constrained,
                "nodes": {n: self.of(n) for n in self.nodes}}


def _rounded(nodes: Sequence[str], capacity: Sequence[float], total: int, share: Sequence[float],
             flat: Sequence[float]) -> Targets:
    low = [math.floor(s + _EPS) for s in share]
    high = [math.ceil(s - _EPS) for s in share]
    target = list(low)
    rest = total - sum(low)
    if rest > 0:
        ranks = [node_rank(n) for n in nodes]
        order = sorted((i for i in range(len(nodes)) if high[i] > low[i]),
                       key=lambda i: (low[i] - share[i], -ranks[i]))
        for i in order[:rest]:
            target[i] += 1
    return Targets(tuple(nodes), tuple(capacity), total, tuple(share), tuple(flat), tuple(low),
                   tuple(high), tuple(target))


def flat_shares(capacity: Sequence[float], total: float) -> list[float]:
    """``total`` split in proportion to ``capacity``."""
    whole = sum(capacity)
    return [total * c / whole for c in capacity] if whole > 0 else [0.0] * len(capacity)


#: A class of partitions in a replica demand: ``wanted`` (an int: replicas on the given nodes), or
#: ``(residual, covered)`` for partitions that keep replicas on held nodes (cordoned, or whose
#: re-replication waits): ``residual`` more replicas on the given nodes, where the zones named in
#: ``covered`` already hold one of the partition's replicas and so need none from these nodes.
DemandKey = int | tuple[int, tuple[str, ...]]

#: One class of partitions for the rank: (replicas wanted on these nodes, covered zone indexes,
#: partitions).
_Item = tuple[int, frozenset[int], int]


def _replica_rank(items: Sequence[_Item], zones: int) -> Any:
    """Rank of the feasible-count polymatroid for a set given by its node count in each zone.

    For one partition wanting ``r`` replicas here, whose replicas elsewhere already cover the
    zones ``covered``, ``u = zones - len(covered)`` zones still want one: the replica sets it may
    get are those of ``r`` nodes, one in each of ``min(r, u)`` uncovered zones, the rest anywhere.
    A set of nodes holding ``size`` nodes in all and reaching ``out`` uncovered zones holds at
    most ``min(size, r, max(r - u, 0) + out)`` of them. With nothing covered that is
    ``min(r, zones reached)`` when ``r <= zones``, and ``min(size, r - zones + zones reached)``
    (every zone covered, the rest anywhere) otherwise. Covered replicas that share a zone cover
    it once, so such a partition is counted for the replicas it can still get."""

    def rank(counts: Sequence[int]) -> int:
        reached = sum(1 for c in counts if c)
        size = sum(counts)
        total = 0
        for r, covered, partitions in items:
            out = reached - sum(1 for z in covered if counts[z]) if covered else reached
            total += partitions * min(size, r, max(r - zones + len(covered), 0) + out)
        return total

    return rank


def _demand_items(demand: Mapping[DemandKey, int], zone_names: Sequence[str]) -> list[_Item]:
    """The rank's classes of ``demand`` (see :data:`DemandKey`), in a fixed order; covered zones
    without a node here are dropped (they cover a zone these nodes do not have)."""
    where = {z: k for k, z in enumerate(zone_names)}
    items = []
    for key, partitions in demand.items():
        r, covered = (key, ()) if isinstance(key, int) else key
        if r > 0 and partitions > 0:
            items.append((r, frozenset(where[z] for z in covered if z in where), partitions))
    items.sort(key=lambda item: (item[0], sorted(item[1]), item[2]))
    return items


def demand_total(demand: Mapping[DemandKey, int], nodes: int) -> int:
    """Replicas ``demand`` puts on ``nodes`` nodes: each class's wanted count, at most ``nodes``."""
    return sum(min(key if isinstance(key, int) else key[0], nodes) * p for key, p in demand.items()
               if p > 0)


def feasible_shares(nodes: Sequence[Node], demand: Mapping[DemandKey, int]) -> list[float]:
    """The capacity-weighted lexicographically optimal feasible replica shares (module doc)."""
    if not nodes:
        return []
    zone_names = sorted({n.zone for n in nodes})
    zones = len(zone_names)
    items = _demand_items(demand, zone_names)
    rank = _replica_rank(items, zones)
    # Counts in a zone matter up to the replicas a partition may put beyond one per zone it wants.
    depth = max([r - zones + len(c) + 1 for r, c, _ in items if r > zones - len(c)], default=1)
    members: list[list[int]] = [[] for _ in zone_names]
    for i, node in enumerate(nodes):
        members[zone_names.index(node.zone)].append(i)
    ranks = [node_rank(n.id) for n in nodes]
    for group in members:
        group.sort(key=lambda i: (-nodes[i].capacity, -ranks[i]))
    shares = [0.0] * len(nodes)
    taken = [0] * zones
    base = rank(taken)
    while any(taken[z] < len(members[z]) for z in range(zones)):
        left = [len(members[z]) - taken[z] for z in range(zones)]
        options = [sorted(set(range(min(m, depth - 1) + 1)) | {m}) for m in left]
        if math.prod(len(o) for o in options) <= MAX_CANDIDATE_SETS:
            candidates: Iterable[tuple[int, ...]] = product(*options)
        else:
            whole = tuple(left)
            singles = [tuple(k if z == y else 0 for z in range(zones)) for y in range(zones)
                       for k in options[y] if k]
            candidates = [whole, *singles]
        prefix = []
        for z in range(zones):
            sums = [0.0]
            for i in members[z][taken[z]:]:
                sums.append(sums[-1] + nodes[i].capacity)
            prefix.append(sums)
        best = math.inf
        best_k: list[int] = []
        for ks in candidates:
            weight = sum(prefix[z][k] for z, k in enumerate(ks))
            if weight <= 0:
                continue
            ratio = (rank([taken[z] + k for z, k in enumerate(ks)]) - base) / weight
            if not best_k or ratio < best * (1 - 1e-12) - 1e-15:
                best, best_k = ratio, list(ks)
            elif ratio <= best * (1 + 1e-12) + 1e-15:
                best_k = [max(a, b) for a, b in zip(best_k, ks, strict=True)]  # union of minimisers
        for z in range(zones):
            group, k = members[z], best_k[z]
            # Nodes of equal capacity in a zone are interchangeable: a minimiser holds all or none.
            while 0 < k < left[z] and (nodes[group[taken[z] + k]].capacity
                                       == nodes[group[taken[z] + k - 1]].capacity):
                k += 1
            for i in group[taken[z]:taken[z] + k]:
                shares[i] = best * nodes[i].capacity
            taken[z] += k
        base = rank(taken)
    return shares


def targets_for(nodes: Sequence[Node], demand: Mapping[DemandKey, int]) -> Targets:
    """Replica targets of the eligible ``nodes`` (sorted by id) for partitions wanting
    ``demand`` = {wanted replicas (or a :data:`DemandKey`): partitions}."""
    total = demand_total(demand, len(nodes))
    capacity = [n.capacity for n in nodes]
    return _rounded([n.id for n in nodes], capacity, total, feasible_shares(nodes, demand),
                    flat_shares(capacity, total))


def replica_targets(state: ClusterState, exclude: Iterable[str] = frozenset()) -> Targets:
    """Replica targets for ``state`` with ``exclude`` drained."""
    nodes = eligible_nodes(state, exclude)
    return targets_for(nodes, replica_demand(state, len(nodes)))


def water_fill(capacity: Sequence[float], upper: Sequence[float], total: float,
               lower: Sequence[float] | None = None) -> list[float]:
    """Shares ``clamp(level * capacity, lower, upper)`` summing to ``total`` (clipped to the
    reachable range), for the one ``level`` that does it. The sum is piecewise linear in
    ``level``: find the piece by bisection over its break points, then solve it."""
    low = list(lower) if lower is not None else [0.0] * len(capacity)
    rows = list(zip(capacity, low, upper, strict=True))
    total = min(max(total, sum(low)), sum(upper))

    def filled(level: float) -> float:
        return sum(min(max(level * c, lo), up) for c, lo, up in rows)

    points = sorted({x for c, lo, up in rows for x in (lo / c, up / c)})
    if not points:
        return []
    first, last = 0, len(points) - 1  # invariant: filled(points[first]) <= total, or first == 0
    while first < last:
        mid = (first + last + 1) // 2
        if filled(points[mid]) <= total:
            first = mid
        else:
            last = mid - 1
    start = points[first]
    slope = sum(c for c, lo, up in rows if lo <= start * c < up)
    level = start + (total - filled(start)) / slope if slope > 0 else start
    return [min(max(level * c, lo), up) for c, lo, up in rows]


def leader_targets(nodes: Sequence[str], capacity: Sequence[float], replicas: Sequence[int],
                   total: int, sole: Sequence[int] | None = None) -> Targets:
    """Leadership targets: capacity-proportional, at most the replicas each node holds and at
    least the partitions it holds alone (``sole``)."""
    return _rounded(nodes, capacity, total, water_fill(capacity, replicas, total, sole),
                    flat_shares(capacity, total))


@dataclass(frozen=True)
class Figures:
    """How balanced an assignment is, over the eligible nodes.

    ``replicas_max_over_mean`` is the largest replicas-per-capacity over the cluster's
    replicas-per-capacity (1.0 is perfect; for equal capacities it is max/mean), ``max_deviation``
    the largest distance from an integer target, ``outside_range`` the nodes outside
    ``[low, high]``; ``stranded`` counts replicas on nodes that are not eligible. The leader figures
    are the same, for leaderships.
    """

    nodes: int
    replicas: int
    stranded: int
    replicas_max_over_mean: float
    max_deviation: int
    outside_range: int
    leaders: int
    leaders_max_over_mean: float
    leaders_max_deviation: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _max_over_mean(counts: Sequence[int], capacity: Sequence[float]) -> float:
    total, whole = sum(counts), sum(capacity)
    if not counts or total == 0 or whole <= 0:
        return 1.0
    return max(c / w for c, w in zip(counts, capacity, strict=True)) / (total / whole)


def figures(targets: Targets, replicas: Sequence[int], leaders: Sequence[int], stranded: int = 0,
            leader_goal: Targets | None = None) -> Figures:
    """Figures of per-node ``replicas`` and ``leaders`` (aligned with ``targets.nodes``)."""
    goal = leader_goal or leader_targets(targets.nodes, targets.capacity, replicas, sum(leaders))
    return Figures(
        nodes=len(targets.nodes),
        replicas=sum(replicas),
        stranded=stranded,
        replicas_max_over_mean=_max_over_mean(replicas, targets.capacity),
        max_deviation=max((abs(c - t) for c, t in zip(replicas, targets.target, strict=True)), default=0),
        outside_range=sum(1 for c, lo, hi in zip(replicas, targets.low, targets.high, strict=True)
                          if not lo <= c <= hi),
        leaders=sum(leaders),
        leaders_max_over_mean=_max_over_mean(leaders, targets.capacity),
        leaders_max_deviation=max((abs(c - t) for c, t in zip(leaders, goal.target, strict=True)),
                                  default=0),
    )


#: One forced replica for :func:`forced_fit`: the node positions it may not use (those keeping a
#: replica of its partition) and the zones it must use (None: any zone).
ForcedReplica = tuple[tuple[int, ...], frozenset[int] | None]


def forced_fit(slots: Sequence[int], zone_of: Sequence[int], forced: Sequence[ForcedReplica]) -> int:
    """How many ``forced`` replicas at most fit into ``slots`` (free places per eligible node, by
    position; ``zone_of`` gives each position's zone). A maximum bipartite b-matching: greedy, then
    one breadth-first augmenting search per replica the greedy pass could not place."""
    free = list(slots)
    everyone = range(len(free))

    def fits(r: int, node: int) -> bool:
        barred, zones = forced[r]
        return node not in barred and (zones is None or zone_of[node] in zones)

    open_nodes = {i: None for i in everyone if free[i] > 0}
    at: dict[int, list[int]] = {}
    left = []
    for r in range(len(forced)):
        node = next((i for i in open_nodes if fits(r, i)), None)
        if node is None:
            left.append(r)
            continue
        at.setdefault(node, []).append(r)
        free[node] -= 1
        if not free[node]:
            del open_nodes[node]
    placed = len(forced) - len(left)
    for r in left:
        if not open_nodes:
            break
        # node reached -> (replica that would move onto it, node that replica leaves)
        parent: dict[int, tuple[int, int | None]] = {}
        queue: deque[int] = deque()
        end = None
        for v in everyone:
            if fits(r, v):
                parent[v] = (r, None)
                if free[v] > 0:
                    end = v
                    break
                queue.append(v)
        while queue and end is None:
            v = queue.popleft()
            for r2 in at.get(v, ()):
                for w in everyone:
                    if w not in parent and fits(r2, w):
                        parent[w] = (r2, v)
                        if free[w] > 0:
                            end = w
                            break
                        queue.append(w)
                if end is not None:
                    break
        if end is None:
            continue
        free[end] -= 1
        if not free[end]:
            open_nodes.pop(end, None)
        node: int | None = end
        while node is not None:
            r2, came_from = parent[node]
            if came_from is not None:
                at[came_from].remove(r2)
            at.setdefault(node, []).append(r2)
            node = came_from
        placed += 1
    return placed


@dataclass(frozen=True)
class LowerBound:
    """Replica moves (an added replica counts as one) that any plan must make at least.

    ``forced``: replicas that must land on an eligible node (to leave a node that is down,
    excluded or unknown, or to fill a missing one); each such placement is one move.
    ``excess``/``deficit``: replicas above ``high`` / below ``low`` summed over eligible nodes.
    ``fit_high``/``fit_low``: the most forced replicas that fit below the nodes' ``high`` / into
    their shortfall below ``low``, on nodes that do not already hold the partition
    and, when the partition's kept replicas sit in distinct zones and it wants no more replicas
    than there are zones, only in zones it does not use yet (:func:`forced_fit`). ``spread``: moves
    zone spread needs beyond the forced ones of the same partition. ``metric``: the forced and
    zone-spread moves of partitions whose resource balances on a node metric instead of replica
    count (:mod:`hacoord.placement.metric`); they do not count toward replica counts, so they
    add to the total as they are.

    Every other move relocates a replica between eligible nodes. Relocations must shed the excess
    plus the forced replicas that cannot fit below ``high`` (``excess + forced - fit_high``), fill
    the shortfall the forced ones cannot (``deficit - fit_low``), and give each partition short of
    zones one more zone per move (``spread``); one relocation counts once toward each, hence
    ``forced + metric + max(excess + forced - fit_high, deficit - fit_low, spread, 0)``. A plan that puts a
    forced replica on a kept node or zone must move that kept replica on, to a node the forced one
    could have taken directly: counting only per-node totals, that is the direct placement plus
    one relocation inside the kept replica's zone, so the bound covers it. Zone capacities are
    not counted beyond that, so where zones are tight the bound is loose.
    """

    forced: int
    excess: int
    deficit: int
    spread: int
    fit_high: int = 0
    fit_low: int = 0
    metric: int = 0

    @property
    def total(self) -> int:
        return self.forced + self.metric + max(self.excess + self.forced - self.fit_high,
                                               self.deficit - self.fit_low, self.spread, 0)

    def to_dict(self) -> dict[str, int]:
        return {"forced": self.forced, "excess": self.excess, "deficit": self.deficit,
                "spread": self.spread, "fit_high": self.fit_high, "fit_low": self.fit_low,
                "metric": self.metric, "total": self.total}


def bound_for(counts: Sequence[int], targets: Targets, zone_of: Sequence[int],
              forced: Sequence[ForcedReplica], spread: int, metric: int = 0) -> LowerBound:
    """The :class:`LowerBound` for per-node ``counts`` (aligned with ``targets.nodes``, whose
    zones are ``zone_of``), one ``forced`` entry per forced replica, the ``spread`` moves and the
    ``metric`` moves."""
    excess = sum(max(0, c - hi) for c, hi in zip(counts, targets.high, strict=True))
    deficit = sum(max(0, lo - c) for c, lo in zip(counts, targets.low, strict=True))
    room = [max(0, hi - c) for c, hi in zip(counts, targets.high, strict=True)]
    short = [max(0, lo - c) for c, lo in zip(counts, targets.low, strict=True)]
    return LowerBound(len(forced), excess, deficit, spread, forced_fit(room, zone_of, forced),
                      forced_fit(short, zone_of, forced), metric)


def forced_replica(kept: Sequence[int], zone_of: Sequence[int], wanted: int, zones: int,
                   held_zones: Sequence[int] = ()) -> ForcedReplica:
    """The :data:`ForcedReplica` of a partition keeping replicas on node positions ``kept`` and on
    held nodes in the zones ``held_zones`` (one entry a held replica; held nodes have no position).
    ``zones`` is the number of zones the partition may spread over."""
    used = {zone_of[i] for i in kept}.union(held_zones)
    if wanted <= zones and len(used) == len(kept) + len(held_zones):
        return tuple(kept), frozenset(z for z in range(zones) if z not in used)
    return tuple(kept), None


def lower_bound(state: ClusterState, exclude: Iterable[str] = frozenset()) -> LowerBound:
    """The lower bound of replica moves to bring ``state`` (``exclude`` drained) into balance.

    Replicas that cannot go anywhere (fewer eligible nodes than wanted) are not counted.
    """
    nodes = eligible_nodes(state, exclude)
    targets = targets_for(nodes, replica_demand(state, len(nodes)))
    where = {n.id: i for i, n in enumerate(nodes)}
    zone_names = sorted({n.zone for n in nodes})
    zone_of = [zone_names.index(n.zone) for n in nodes]
    zone_count = len(zone_names)
    counts = [0] * len(nodes)
    forced: list[ForcedReplica] = []
    spread = 0
    for name in sorted(state.resources):
        res = state.resources[name]
        wanted = min(res.replication_factor, len(nodes))
        for part in res.partitions:
            held = tuple(where[n] for n in part.replicas if n in where)
            for i in held:
                counts[i] += 1
            need = max(0, wanted - len(held))
            missing_zones = max(0, min(wanted, zone_count) - len({nodes[i].zone for i in held}))
            if need:
                forced.extend([forced_replica(held, zone_of, wanted, zone_count)] * need)
            spread += max(0, missing_zones - need)
    return bound_for(counts, targets, zone_of, forced, spread)
