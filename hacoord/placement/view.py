"""The indexed view of a cluster state that the rebalance planner reads: nodes, zones and
partitions as integers, what each node may do, the replicas and leaderships as they are, the
partitions that need repair, the targets, and the estimated weights of the metric groups.

:func:`scan` builds it in one pass over all replicas (the planner's only O(replicas) step) and it
never changes after: the planning phases change a :class:`~hacoord.placement.draft.Draft` of the
assignment instead, starting from the per-node :class:`Indexes` the scan builds alongside. Nodes
are indexed in id order (then the unknown nodes, in the order the scan meets them), partitions by
pid in (resource name, partition index) order, and dimensions are the replica count (0) then one
per metric group, by metric name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from hacoord.core.model import ClusterState
from hacoord.placement.balance import DemandKey, Targets, node_rank, targets_for
from hacoord.placement.estimate import estimate, reported
from hacoord.placement.plan import Stuck

#: A partition short of replicas for the lower bound (:func:`hacoord.placement.balance.forced_replica`):
#: its replicas on eligible nodes, the zones of those on held nodes, the replicas it wants, the
#: zones it may spread over, and how many replicas an eligible node must take.
ForcedSlots = tuple[tuple[int, ...], tuple[int, ...], int, int, int]


def replica_totals(goods: Sequence[Sequence[int]]) -> list[int]:
    """Good replicas of every dimension on each node (what caps the leaderships it may hold), from
    each dimension's per-node counts."""
    if len(goods) == 1:
        return list(goods[0])
    return [sum(col) for col in zip(*goods, strict=True)]


@dataclass(frozen=True)
class Dimension:
    """One balance dimension as the state has it: replica count (``metric`` None), or the group of
    ``resources`` balancing on ``metric``. Per node, the dimension's replicas on each good node
    (``good``). For a metric group, by pid, the estimated weight of each partition (0 outside the
    group), and per node the estimated load (:func:`hacoord.placement.estimate.estimate`)."""

    metric: str | None
    resources: tuple[str, ...]
    good: tuple[int, ...]
    weight: tuple[float, ...] = ()
    load: tuple[float, ...] = ()


@dataclass(frozen=True)
class View:
    """A cluster state as the planner reads it (built by :func:`scan`; see the module doc).

    Nodes, by index: ``why_bad`` is None for a good node (its replicas count where they are), else
    why its replicas move (``node_down``, ``node_excluded``, ``node_unknown``); a ``held`` node is
    good but takes nothing and gives nothing; an ``active`` node is good and not held (the
    ``eligible`` nodes, in index order); a node that ``keeps_lead`` is held and not down. ``zone``
    indexes ``zone_names`` (-1 for a node that is not good): the zones with eligible nodes first
    (the first ``zones_active``, the targets' zones, in name order), then the zones only held nodes
    use.

    Partitions, by pid: ``keys`` (resource, partition index), ``kinds`` (dimension), ``replicas``
    and ``leader`` as they are, ``movable`` (neither pinned nor outside the resources the plan may
    touch). ``repair``: (pid, wanted replicas, wanted zones) of the movable partitions short of
    either, in pid order; ``stuck``: the replicas the scan already knows no node can take.

    Leaderships over the eligible nodes: leaderships held (``lead_count``), partitions held alone
    (``sole``), the partitions whose leader must change (``lead_forced``), and the leaderships the
    eligible nodes share (``lead_total``).
    ``stranded``: replicas on nodes that are not good.

    Targets: ``targets`` over the eligible nodes for the replica-count ``demand``, with each
    node's ``low``/``high`` by index (0 for the others). Lower bound: ``forced_slots``,
    ``spread_short`` (zone-spread moves beyond the forced ones) and ``metric_forced`` (the forced
    and zone-spread moves of metric groups).
    """

    ids: tuple[str, ...]
    why_bad: tuple[str | None, ...]
    good: tuple[bool, ...]
    held: tuple[bool, ...]
    active: tuple[bool, ...]
    keeps_lead: tuple[bool, ...]
    eligible: tuple[int, ...]
    zone_names: tuple[str, ...]
    zones_active: int
    zone: tuple[int, ...]
    cap: tuple[float, ...]
    rank: tuple[int, ...]
    dims: tuple[Dimension, ...]
    keys: tuple[tuple[str, int], ...]
    kinds: tuple[int, ...]
    replicas: tuple[tuple[int, ...], ...]
    leader: tuple[int | None, ...]
    movable: tuple[bool, ...]
    repair: tuple[tuple[int, int, int], ...]
    stuck: tuple[Stuck, ...]
    lead_count: tuple[int, ...]
    sole: tuple[int, ...]
    lead_forced: tuple[int, ...]
    lead_total: int
    stranded: int
    demand: Mapping[DemandKey, int]
    forced_slots: tuple[ForcedSlots, ...]
    spread_short: int
    metric_forced: int
    targets: Targets
    low: tuple[int, ...]
    high: tuple[int, ...]

    @property
    def zones(self) -> int:
        """How many zones the good nodes use."""
        return len(self.zone_names)

    @property
    def metric_dims(self) -> tuple[Dimension, ...]:
        return self.dims[1:]

    def node_replicas(self) -> list[int]:
        """Good replicas of every dimension on each node, as the state is."""
        return replica_totals([d.good for d in self.dims])


@dataclass
class Indexes:
    """Per-node indexes of the assignment that :func:`scan` builds in the same pass, handed over
    to the phases that keep them up to date (the view keeps none of them): each dimension's
    movable partitions with a replica on each eligible node (``parts``, by dimension, for the
    :class:`~hacoord.placement.draft.Draft`), and the movable partitions each eligible node leads
    (``led``, for :mod:`hacoord.placement.leaders`)."""

    parts: list[list[dict[int, None]]]
    led: list[dict[int, None]]


class _DimensionScan:
    """One dimension's counts while the scan runs, per node index."""

    def __init__(self, size: int, metric: str | None = None, resources: tuple[str, ...] = ()) -> None:
        self.metric, self.resources = metric, resources
        self.parts: list[dict[int, None]] = [{} for _ in range(size)]
        self.good = [0] * size
        self.seen: list[int] | None = None if metric is None else [0] * size
        self.pids: list[int] = []

    def grow(self) -> None:
        """Room for one more node (an unknown one the scan met)."""
        self.parts.append({})
        self.good.append(0)
        if self.seen is not None:
            self.seen.append(0)


class _Scan:
    """The arrays :func:`scan` fills, the node arrays growing by the unknown nodes it meets."""

    def __init__(self, state: ClusterState, exclude: frozenset[str], hold: frozenset[str],
                 metric_of: Mapping[str, str] | None) -> None:
        self.ids: list[str] = sorted(state.nodes)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.ids)}
        nodes = [state.nodes[n] for n in self.ids]
        # good: its replicas count where they are; held: good, but takes nothing and gives nothing;
        # active: good and not held (the eligible nodes). keeps_lead: held, and not down.
        self.why_bad: list[str | None] = [
            "node_excluded" if n.id in exclude else
            (None if n.status == "up" or n.id in hold else "node_down") for n in nodes]
        self.good = [w is None for w in self.why_bad]
        self.held = [ok and n.id in hold for n, ok in zip(nodes, self.good, strict=True)]
        self.active = [ok and not h for ok, h in zip(self.good, self.held, strict=True)]
        self.keeps_lead = [h and n.status != "down" for n, h in zip(nodes, self.held, strict=True)]
        self.eligible = [i for i, ok in enumerate(self.active) if ok]
        self.eligible_nodes = [nodes[i] for i in self.eligible]
        # Zones with eligible nodes first (the targets' zones, in name order), then the zones only
        # held nodes use.
        zone_names = sorted({nodes[i].zone for i in self.eligible})
        self.zones_active = len(zone_names)
        zone_names += sorted({n.zone for n, h in zip(nodes, self.held, strict=True) if h} - set(zone_names))
        self.zone_names = zone_names
        zone_of = {z: k for k, z in enumerate(zone_names)}
        self.zones = len(zone_names)
        self.zone = [zone_of[n.zone] if ok else -1 for n, ok in zip(nodes, self.good, strict=True)]
        self.cap = [n.capacity for n in nodes]
        self.rank = [node_rank(n) for n in self.ids]
        # Dimensions: replica count (0), then one per metric group, by metric name.
        metric_of = {r: m for r, m in sorted((metric_of or {}).items()) if r in state.resources}
        groups = sorted(set(metric_of.values()))
        self.kind_of = {r: groups.index(m) + 1 for r, m in metric_of.items()}
        self.dims = [_DimensionScan(len(nodes))]
        self.dims += [_DimensionScan(len(nodes), m, tuple(r for r in metric_of if metric_of[r] == m))
                      for m in groups]
        # Partitions, indexed by pid in (resource name, partition index) order.
        self.keys: list[tuple[str, int]] = []
        self.reps: list[tuple[int, ...]] = []
        self.leader: list[int | None] = []
        self.movable: list[bool] = []
        self.kinds: list[int] = []
        self.repair: list[tuple[int, int, int]] = []
        # Leadership tallies over eligible nodes: leaderships held, partitions held alone, and the
        # movable partitions each node leads; partitions whose leader must change.
        self.lead_count = [0] * len(nodes)
        self.sole = [0] * len(nodes)
        self.led: list[dict[int, None]] = [{} for _ in nodes]
        self.lead_forced: dict[int, None] = {}
        self.stuck: list[Stuck] = []
        self.forced_slots: list[ForcedSlots] = []
        self.spread_short = self.metric_forced = 0

    def node(self, node_id: str) -> int:
        """Index of ``node_id``, registering an unknown one (not eligible)."""
        i = self.index.get(node_id)
        if i is None:
            i = len(self.ids)
            self.ids.append(node_id)
            self.index[node_id] = i
            self.why_bad.append("node_unknown")
            for flags in (self.good, self.held, self.active, self.keeps_lead):
                flags.append(False)
            self.zone.append(-1)
            self.cap.append(1.0)
            self.rank.append(node_rank(node_id))
            for dim in self.dims:
                dim.grow()
            self.lead_count.append(0)
            self.sole.append(0)
            self.led.append({})
        return i

    def run(self, state: ClusterState, resources: frozenset[str] | None,
            pinned: frozenset[tuple[str, int]]) -> None:
        """One pass over every replica: per-node counts and partitions, leadership tallies, and
        the partitions that need repair."""
        index, good, active, held, zone = self.index, self.good, self.active, self.held, self.zone
        keeps, zone_names = self.keeps_lead, self.zone_names
        n_active, za, held_zones = len(self.eligible), self.zones_active, self.zones > self.zones_active
        n_good = sum(good)
        lead, sole, led = self.lead_count, self.sole, self.led
        keys, reps_of, leaders, movables = self.keys, self.reps, self.leader, self.movable
        pins: dict[str, set[int]] = {}
        for name, i in pinned:
            pins.setdefault(name, set()).add(i)
        demand: dict[DemandKey, int] = {}
        total = stranded = 0
        pid = 0
        for name in sorted(state.resources):
            res = state.resources[name]
            kind = self.kind_of.get(name, 0)
            dim = self.dims[kind]
            tally, parts, seen = dim.good, dim.parts, dim.seen
            if seen is not None:
                dim.pids.extend(range(pid, pid + len(res.partitions)))
            res_movable = resources is None or name in resources
            pins_here = pins.get(name, ())
            wanted = min(res.replication_factor, n_good)
            plain = len(res.partitions)
            keys.extend((name, i) for i in range(len(res.partitions)))
            self.kinds.extend([kind] * len(res.partitions))
            for i, part in enumerate(res.partitions):
                movable = res_movable and i not in pins_here
                movables.append(movable)
                try:
                    reps = tuple([index[n] for n in part.replicas])
                    ld = None if part.leader is None else index[part.leader]
                except KeyError:
                    reps = tuple([self.node(n) for n in part.replicas])
                    ld = None if part.leader is None else self.node(part.leader)
                reps_of.append(reps)
                leaders.append(ld)
                n_ok = n_act = 0
                last = -1
                for r in reps:
                    if good[r]:
                        n_ok += 1
                        tally[r] += 1
                        if active[r]:
                            n_act += 1
                            last = r
                            if movable:
                                parts[r][pid] = None
                if seen is not None:
                    for r in reps:
                        seen[r] += 1
                n_held = n_ok - n_act
                if n_held and not kind:
                    plain -= 1
                    covered = tuple(sorted({zone_names[zone[r]] for r in reps if held[r]}))
                    key = (max(0, wanted - n_held), covered)
                    demand[key] = demand.get(key, 0) + 1
                if n_ok and not (ld is not None and keeps[ld] and ld in reps):
                    # Leadership tallies, unless a held node keeps the leadership. A partition
                    # that may not change (pinned, or outside ``resources``) and is led by no
                    # eligible node keeps that leader: it is no leadership the eligible nodes
                    # can share, and counting it would set targets no plan can reach.
                    valid = ld is not None and active[ld] and ld in reps
                    if n_act and (valid or movable):
                        total += 1
                        if n_act == 1:
                            sole[last] += 1
                        if valid:
                            lead[ld] += 1
                            if movable:
                                led[ld][pid] = None
                        else:
                            self.lead_forced[pid] = None
                if n_ok == len(reps) == wanted and n_ok <= 1:
                    pid += 1
                    continue
                stranded += len(reps) - n_ok
                used = {zone[r] for r in reps if good[r]}
                zones = za + sum(1 for z in used if z >= za) if n_held and held_zones else za
                spread_wanted = min(wanted, zones)
                need = max(0, wanted - n_ok)
                short = max(0, spread_wanted - len(used))
                if movable and n_ok < len(reps) and not need:
                    for r in reps:
                        if not good[r]:
                            self.stuck.append(Stuck(keys[pid][0], keys[pid][1], self.ids[r],
                                                    "no eligible node can take it"))
                if movable and (need or short):
                    self.repair.append((pid, wanted, spread_wanted))
                    placeable = min(need, n_active - n_act)
                    if kind:
                        self.metric_forced += placeable + max(0, short - need)
                    else:
                        if placeable:
                            self.forced_slots.append((tuple(r for r in reps if active[r]),
                                                      tuple(zone[r] for r in reps if held[r]), wanted,
                                                      zones, placeable))
                        self.spread_short += max(0, short - need)
                pid += 1
            if wanted and plain and not kind:
                demand[wanted] = demand.get(wanted, 0) + plain
        self.demand = demand
        self.lead_total, self.stranded = total, stranded

    def dimension(self, state: ClusterState, dim: _DimensionScan) -> Dimension:
        good = tuple(dim.good)
        if dim.seen is None:
            return Dimension(None, (), good)
        metric = dim.metric
        values = [reported(state.nodes[n].metrics.get(metric)) if n in state.nodes else None
                  for n in self.ids]
        weight, load = estimate(values, dim.seen, dim.pids, self.reps)
        return Dimension(metric, dim.resources, good, tuple(weight), tuple(load))


def scan(state: ClusterState, exclude: frozenset[str], resources: frozenset[str] | None,
         hold: frozenset[str] = frozenset(), pinned: frozenset[tuple[str, int]] = frozenset(),
         metric_of: Mapping[str, str] | None = None) -> tuple[View, Indexes]:
    """The :class:`View` of ``state`` with ``exclude`` drained, ``hold`` held, only the partitions
    of ``resources`` (all if None) and none of ``pinned`` movable, and the resources in
    ``metric_of`` balancing on a metric (see :func:`hacoord.placement.rebalance.plan_rebalance`),
    with the :class:`Indexes` of its assignment. ``hold`` must not meet ``exclude``. The state is
    not modified."""
    read = _Scan(state, exclude, hold, metric_of)
    read.run(state, resources, pinned)
    targets = targets_for(read.eligible_nodes, read.demand)
    low, high = [0] * len(read.ids), [0] * len(read.ids)
    for k, i in enumerate(read.eligible):
        low[i], high[i] = targets.low[k], targets.high[k]
    view = View(
        ids=tuple(read.ids), why_bad=tuple(read.why_bad), good=tuple(read.good), held=tuple(read.held),
        active=tuple(read.active), keeps_lead=tuple(read.keeps_lead), eligible=tuple(read.eligible),
        zone_names=tuple(read.zone_names), zones_active=read.zones_active, zone=tuple(read.zone),
        cap=tuple(read.cap), rank=tuple(read.rank),
        dims=tuple(read.dimension(state, dim) for dim in read.dims),
        keys=tuple(read.keys), kinds=tuple(read.kinds), replicas=tuple(read.reps),
        leader=tuple(read.leader), movable=tuple(read.movable), repair=tuple(read.repair),
        stuck=tuple(read.stuck), lead_count=tuple(read.lead_count), sole=tuple(read.sole),
        lead_forced=tuple(read.lead_forced),
        lead_total=read.lead_total, stranded=read.stranded, demand=MappingProxyType(read.demand),
        forced_slots=tuple(read.forced_slots), spread_short=read.spread_short,
        metric_forced=read.metric_forced, targets=targets, low=tuple(low), high=tuple(high))
    return view, Indexes([dim.parts for dim in read.dims], read.led)
