"""The rebalance planner: from the current assignment, the fewest replica moves (and leadership
changes) that restore every placement rule after a change.

Pure and deterministic: the same state and arguments give the same plan on any machine. Nodes are
visited in id order, resources in name order, and every remaining tie is broken by rendezvous
hashing of the node id (:func:`hacoord.placement.balance.node_rank`); nothing iterates over a set
of strings or uses ``hash()``. It never mutates the state it is given.

Nodes, as the caller describes them:

* *excluded* (``exclude``, drained): everything moves off; it takes nothing. Exclusion wins over
  ``hold``.
* *held* (``hold``: cordoned nodes, and nodes that are suspect or down whose re-replication the
  caller delays): its replicas count as good where they are, whatever its status (they count
  toward the partition's replicas and zone spread, and no move ever takes them off), but it gets
  no new replica and no new leadership, and it has no share (it is never over or under one). It
  keeps the leaderships it has unless its status is ``"down"`` (then they go to an eligible
  replica, reason ``leader_down``, if the partition has one); it is not a source of leadership
  balance either.
* *eligible*: up, neither excluded nor held. Only these take replicas and leaderships, and the
  replica and leadership targets are theirs.
* any other node (down or suspect, not held; or unknown): its replicas move to eligible nodes.

Partitions in ``pinned`` (a move of theirs is in flight) and partitions of resources outside
``resources`` are not touched (no move, no leadership change); their replicas count as they are.

Rules, for the eligible nodes, in order of precedence:

1. a partition wants ``min(replication_factor, eligible + held nodes)`` replicas, on distinct
   good (eligible or held) nodes; replicas on other nodes move to eligible ones, missing ones are
   added. A replica stays where it is when no eligible node can take it (it is reported in
   ``Plan.stuck``): the planner never lowers the number of copies.
2. its replicas span ``min(wanted, zones)`` zones, where ``zones`` counts the zones with eligible
   nodes and the other zones its held replicas use; no move ever lowers a partition's zone spread,
   and a partition short of zones gets a replica (never a held one) moved into a new one.
3. every eligible node ends within ``[low, high]`` of its share
   (:mod:`hacoord.placement.balance`): overloaded nodes give replicas to underloaded ones, cheapest
   first: re-homing a replica this plan already placed costs nothing (the two steps merge into one
   move), so such steps come first; then a direct move; then the cheapest chain of single-replica
   moves (each intermediate node gives one and takes one). Sources take turns, so that one source
   does not use up the destinations another source could reach only directly. The shares are
   those of the replicas the eligible nodes must hold: a partition's replicas on held nodes are
   subtracted from what it wants of them, and the zones they use need none of its replicas
   (:data:`hacoord.placement.balance.DemandKey`), so targets and lower bound stay exact.
4. resources in ``balance_metric`` balance on a node metric instead of replica count
   (:mod:`hacoord.placement.metric`): their replicas are repaired like all others (rules 1 and 2,
   the destination being the eligible node lowest in that metric per capacity), do not count
   toward rule 3, and are then moved until each eligible node's metric per capacity is within 10%
   of the mean, or no move helps.
5. leaders: among each partition's eligible replicas, balanced the same way against leadership
   targets (all resources, by count). Leadership changes are not data moves and are listed apart.

A partition moves only for one of those reasons, recorded in each move: ``node_down``,
``node_excluded``, ``node_unknown``, ``under_replicated``, ``zone_spread``, ``overloaded`` (its
source node held more than its ``high`` at that point of the plan, possibly because of replicas
the plan placed there first), ``underloaded`` (its destination held fewer than its ``low``),
``chain`` (an intermediate step of a chain that relieves an overloaded or underloaded node) or
``metric_overloaded`` (rule 4). Steps that move one partition twice are merged into one move.

The planner reads the state once (one pass over all replicas, into integer-indexed arrays) and
then does a small amount of work per move; it never copies the state.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hacoord.core.model import ClusterState
from hacoord.placement.balance import (
    DemandKey,
    Figures,
    LowerBound,
    Targets,
    bound_for,
    figures,
    forced_replica,
    leader_targets,
    node_rank,
    targets_for,
)
from hacoord.placement.metric import (
    METRIC_REASON,
    Dimension,
    MetricDim,
    MetricFigures,
    balance_metric,
    reported,
)

#: Move reasons, in the order the planner considers them.
MOVE_REASONS = ("node_down", "node_excluded", "node_unknown", "under_replicated", "zone_spread",
                "overloaded", "underloaded", "chain", METRIC_REASON)
#: Leadership change reasons.
LEADER_REASONS = ("leader_down", "leader_excluded", "leader_unknown", "leader_moved", "no_leader",
                  "leader_balance")

# A replica that is the partition's leader moves only if no follower replica on the same source
# fits; this many fitting leader replicas are looked at before settling for one.
_LEADER_SCAN = 64


@dataclass(frozen=True)
class _Change:
    """Something that happens to ``resource``/``partition``: from ``from_node`` to ``to_node``."""

    resource: str
    partition: int
    from_node: str | None
    to_node: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "partition": self.partition, "from_node": self.from_node,
                "to_node": self.to_node, "reason": self.reason}


@dataclass(frozen=True)
class Move(_Change):
    """Replace ``from_node``'s replica of ``resource``/``partition`` by one on ``to_node``
    (``from_node`` is None when a missing replica is added)."""


@dataclass(frozen=True)
class LeaderChange(_Change):
    """Hand the leadership of ``resource``/``partition`` from ``from_node`` to ``to_node``."""


@dataclass(frozen=True)
class Stuck:
    """A rule the plan could not satisfy, and why: for one partition (``resource``/``partition``
    set), or for one node's balance (``resource`` and ``partition`` None)."""

    resource: str | None
    partition: int | None
    node: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "partition": self.partition, "node": self.node,
                "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """The moves, leadership changes and figures of one rebalance.

    ``lower_bound`` is the least number of moves any plan needs (balance.LowerBound, detailed in
    ``bound``); ``before``/``after`` are the balance figures of the current and planned assignment
    against ``targets`` (the replica targets of the planned cluster, over the eligible nodes and
    the replicas of resources balanced by count); ``metrics`` the same for each metric group.
    ``exclude``, ``hold``, ``pinned`` and ``balance_metric`` are the arguments the plan was made
    with (nodes the state does not know left out).
    """

    moves: tuple[Move, ...]
    leader_changes: tuple[LeaderChange, ...]
    lower_bound: int
    before: Figures
    after: Figures
    bound: LowerBound
    targets: Targets
    exclude: tuple[str, ...] = ()
    stuck: tuple[Stuck, ...] = ()
    leader_goal: Targets | None = field(default=None, compare=False)
    hold: tuple[str, ...] = ()
    pinned: tuple[tuple[str, int], ...] = ()
    balance_metric: tuple[tuple[str, str], ...] = ()
    metrics: tuple[MetricFigures, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "moves": [m.to_dict() for m in self.moves],
            "leader_changes": [c.to_dict() for c in self.leader_changes],
            "lower_bound": self.lower_bound,
            "bound": self.bound.to_dict(),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "exclude": list(self.exclude),
            "hold": list(self.hold),
            "pinned": [list(p) for p in self.pinned],
            "balance_metric": dict(self.balance_metric),
            "metrics": [m.to_dict() for m in self.metrics],
            "stuck": [s.to_dict() for s in self.stuck],
        }


class _Heap:
    """Eligible nodes, best first by ``key``, updated lazily: ``push`` a node again whenever its
    key changes; entries whose key is no longer the node's are stale and skipped."""

    def __init__(self, key: Callable[[int], Any], nodes: Iterable[int]) -> None:
        self.key = key
        self.heap: list[tuple[Any, int]] = []
        self.current: dict[int, Any] = {}
        for n in nodes:
            self.push(n)

    def push(self, n: int) -> None:
        key = self.current[n] = self.key(n)
        heapq.heappush(self.heap, (key, n))

    def best(self, reps: list[int], zones: set[int] | None, zone: list[int]) -> int | None:
        """Best node not in ``reps``, in ``zones`` when given."""
        heap, aside, found = self.heap, [], None
        while heap:
            key, n = heapq.heappop(heap)
            if self.current[n] != key:
                continue  # stale entry
            aside.append((key, n))
            if n not in reps and (zones is None or zone[n] in zones):
                found = n
                break
        for entry in aside:
            heapq.heappush(heap, entry)
        return found


class _Planner:
    """Working arrays of one planning run (private; see :func:`plan_rebalance`)."""

    def __init__(self, state: ClusterState, exclude: frozenset[str], resources: frozenset[str] | None,
                 hold: frozenset[str] = frozenset(), pinned: frozenset[tuple[str, int]] = frozenset(),
                 metric_of: Mapping[str, str] | None = None) -> None:
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
        self.dims: list[Dimension] = [Dimension(len(nodes))]
        self.dims += [MetricDim(m, tuple(r for r in metric_of if metric_of[r] == m), len(nodes))
                      for m in groups]
        self.count = self.dims[0].good
        self.parts = self.dims[0].parts
        self.fresh = self.dims[0].fresh
        # Partitions, indexed by pid in (resource name, partition index) order.
        self.keys: list[tuple[str, int]] = []
        self.reps: list[list[int]] = []
        self.leader: list[int | None] = []
        self.movable: list[bool] = []
        self.kinds: list[int] = []
        self.repair: list[tuple[int, int, int]] = []
        self.removed_why: dict[tuple[int, int], str] = {}
        # Replica lists as they were, for the partitions this plan touches (copied on first change).
        self.saved: dict[int, tuple[int, ...]] = {}
        # Leadership tallies over eligible nodes: leaderships held, partitions held alone, and the
        # movable partitions each node leads; partitions whose leader must change.
        self.lead_count = [0] * len(nodes)
        self.sole = [0] * len(nodes)
        self.led: list[dict[int, None]] = [{} for _ in nodes]
        self.lead_forced: dict[int, None] = {}
        self.stuck: list[Stuck] = []
        self.forced_slots: list[tuple[tuple[int, ...], tuple[int, ...], int, int, int]] = []
        self.spread_short = self.metric_forced = 0
        # Destination heaps of the repair phase, one a dimension.
        self._heaps: list[_Heap] | None = None
        self._scan(state, resources, pinned)
        for dim in self.metric_dims:
            values = [reported(state.nodes[n].metrics.get(dim.metric)) if n in state.nodes else None
                      for n in self.ids]
            dim.estimate(values, self.reps)
        self.before = (list(self.count), list(self.lead_count), list(self.sole), self.stranded,
                       self.replicas())
        self.targets = targets = targets_for(self.eligible_nodes, self.demand)
        self.low, self.high = [0] * len(self.ids), [0] * len(self.ids)
        for k, i in enumerate(self.eligible):
            self.low[i], self.high[i] = targets.low[k], targets.high[k]

    @property
    def metric_dims(self) -> list[MetricDim]:
        return self.dims[1:]  # type: ignore[return-value]

    def replicas(self) -> list[int]:
        """Good replicas of every dimension on each node (what caps the leaderships it may hold)."""
        if len(self.dims) == 1:
            return list(self.count)
        return [sum(col) for col in zip(*(d.good for d in self.dims), strict=True)]

    def _on(self, node: int) -> Iterable[int]:
        """Movable partitions with a replica on the eligible ``node``, every dimension."""
        if len(self.dims) == 1:
            return self.parts[node]
        return [pid for d in self.dims for pid in d.parts[node]]

    # --- reading the state ----------------------------------------------------------------

    def _node(self, node_id: str) -> int:
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

    def _scan(self, state: ClusterState, resources: frozenset[str] | None,
              pinned: frozenset[tuple[str, int]]) -> None:
        """One pass over every replica: per-node counts and partitions, leadership tallies, and
        the partitions that need repair. The planner's only O(replicas) step."""
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
            tally, parts = dim.good, dim.parts
            seen = dim.seen if isinstance(dim, MetricDim) else None
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
                    reps = [index[n] for n in part.replicas]
                    ld = None if part.leader is None else index[part.leader]
                except KeyError:
                    reps = [self._node(n) for n in part.replicas]
                    ld = None if part.leader is None else self._node(part.leader)
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

    # --- small helpers ----------------------------------------------------------------------

    def _fits(self, pid: int, src: int, dst: int) -> bool:
        """Moving ``pid``'s replica from ``src`` to ``dst`` keeps nodes distinct and spread."""
        reps = self.reps[pid]
        if dst in reps or src not in reps or not self.active[dst] or self.held[src]:
            return False
        zs, zd = self.zone[src], self.zone[dst]
        if zs == zd or zs < 0:
            return True
        others = [self.zone[r] for r in reps if r != src and self.good[r]]
        return zs in others or zd not in others

    def _record(self, pid: int, src: int | None, dst: int, reason: str) -> None:
        reps = self.reps[pid]
        orig = self.saved.get(pid)
        if orig is None:
            orig = self.saved[pid] = tuple(reps)
        dim = self.dims[self.kinds[pid]]
        if src is None:
            reps.append(dst)
        else:
            reps[reps.index(src)] = dst
            if self.good[src]:
                dim.take(src, pid)
            if src in orig:
                self.removed_why.setdefault((pid, src), reason)
        dim.give(dst, pid, dst not in orig)
        if self._heaps is not None:
            heap = self._heaps[self.kinds[pid]]
            heap.push(dst)
            if src is not None and self.active[src]:
                heap.push(src)

    # --- destinations -------------------------------------------------------------------------

    def _dest_key(self, n: int) -> tuple[int, int, float, int]:
        c, lo, hi = self.count[n], self.low[n], self.high[n]
        tier = 0 if c < lo else (1 if c < hi else 2)
        return (tier, c - lo, (c + 1) / self.cap[n], -self.rank[n])

    def _source_key(self, kind: int) -> Callable[[int], Any]:
        """Of a partition's replicas that could move, the one to move first (the highest)."""
        if kind:
            load = self.dims[kind].load  # type: ignore[attr-defined]
            return lambda n: (load[n] / self.cap[n], self.rank[n])
        count, high, low = self.count, self.high, self.low
        return lambda n: (count[n] - high[n], count[n] - low[n], count[n] / self.cap[n], self.rank[n])

    # --- phase 1: forced placements and zone spread -------------------------------------------

    def repair_partitions(self) -> None:
        if not self.repair:
            return
        cap, rank = self.cap, self.rank
        self._heaps = [_Heap(self._dest_key, self.eligible)]
        for dim in self.metric_dims:
            self._heaps.append(_Heap(lambda n, load=dim.load: (load[n] / cap[n], -rank[n]), self.eligible))
        all_zones = set(range(self.zones))
        good = self.good
        for pid, wanted, spread_wanted in self.repair:
            heap = self._heaps[self.kinds[pid]]
            reps = self.reps[pid]
            bad = [r for r in reps if not good[r]]
            n_ok = len(reps) - len(bad)
            for _ in range(max(0, wanted - n_ok)):
                used = {self.zone[r] for r in reps if good[r]}
                zones = all_zones - used if len(used) < spread_wanted else None
                dst = heap.best(reps, zones, self.zone)
                if dst is None:
                    break
                if bad:
                    src = bad.pop(0)
                    self._record(pid, src, dst, self.why_bad[src] or "node_unknown")
                else:
                    self._record(pid, None, dst, "under_replicated")
            for src in bad:
                self.stuck.append(Stuck(*self.keys[pid], self.ids[src], "no eligible node can take it"))
            if len(reps) - len(bad) < wanted:
                self.stuck.append(Stuck(*self.keys[pid], None, "under-replicated: too few eligible nodes"))
            self._fix_spread(pid, spread_wanted, all_zones, heap)
        self._heaps = None

    def _fix_spread(self, pid: int, spread_wanted: int, all_zones: set[int], heap: _Heap) -> None:
        reps = self.reps[pid]
        while True:
            good = [r for r in reps if self.good[r]]
            used = [self.zone[r] for r in good]
            if len(set(used)) >= spread_wanted:
                return
            doubled = [r for r in good if self.active[r] and used.count(self.zone[r]) > 1]
            if not doubled:
                self.stuck.append(Stuck(*self.keys[pid], None, "zone spread: the replicas sharing a zone "
                                                               "are on held nodes"))
                return
            src = max(doubled, key=self._source_key(self.kinds[pid]))
            dst = heap.best(reps, all_zones - set(used), self.zone)
            if dst is None:
                self.stuck.append(Stuck(*self.keys[pid], None, "zone spread: no free node in another zone"))
                return
            self._record(pid, src, dst, "zone_spread")
    # --- phase 2: balance ---------------------------------------------------------------------

    def _movable_from(self, src: int, dst: int, free: bool) -> int | None:
        """A partition on ``src`` that can move to ``dst``. With ``free``, only one this plan placed
        there (moving it on merges into that move, at no cost); otherwise a follower replica if
        possible, then a leader."""
        if free:
            for pid in self.fresh[src]:
                if self._fits(pid, src, dst):
                    return pid
            return None
        zone, good, reps_of, leader = self.zone, self.good, self.reps, self.leader
        zs, zd = zone[src], zone[dst]
        fallback, leaders_seen = None, 0
        for pid in self.parts[src]:
            reps = reps_of[pid]
            if dst in reps:
                continue
            if zs != zd:
                alone, has_zd = True, False
                for r in reps:
                    if r != src and good[r]:
                        z = zone[r]
                        if z == zs:
                            alone = False
                        elif z == zd:
                            has_zd = True
                if alone and has_zd:
                    continue  # would lower the zone spread
            if leader[pid] != src:
                return pid
            if fallback is None:
                fallback = pid
            leaders_seen += 1
            if leaders_seen >= _LEADER_SCAN:
                break
        return fallback

    def balance(self) -> None:
        """Move replicas until every eligible node is within ``[low, high]``: first moves that
        relieve an overloaded node and fill an underloaded one at once, then moves that do either,
        then chains of moves; stop (and report) only when none exists."""
        count, low, high, rank, eligible = self.count, self.low, self.high, self.rank, self.eligible

        def above_high(n: int) -> bool:
            return count[n] > high[n]

        def above_low(n: int) -> bool:
            return count[n] > low[n]

        def below_low(n: int) -> bool:
            return count[n] < low[n]

        def below_high(n: int) -> bool:
            return count[n] < high[n]

        def most(nodes: Iterable[int], limit: list[int]) -> list[int]:
            return sorted(nodes, key=lambda n: (limit[n] - count[n], -rank[n]))

        while True:
            over = most((n for n in eligible if count[n] > high[n]), high)
            under = sorted((n for n in eligible if count[n] < low[n]), key=self._dest_key)
            if not over and not under:
                return
            stages = []
            if over and under:
                stages.append((over, under, above_high, below_low, "overloaded", True))
            if over:
                room = sorted((n for n in eligible if count[n] < high[n]), key=self._dest_key)
                stages.append((over, room, above_high, below_high, "overloaded", bool(under)))
            if under:
                donors = most((n for n in eligible if count[n] > low[n]), low)
                stages.append((donors, under, above_low, below_low, "underloaded", True))
            # Cheapest first: moves that merge into moves already planned, directly then along a
            # chain; then new moves: one that relieves both ends, a chain that does, then one that
            # relieves either end, a chain that does.
            if any(self._direct(srcs, dsts, ok_s, ok_d, why, free=True)
                   for srcs, dsts, ok_s, ok_d, why, _ in stages):
                continue
            if any(self._chain(srcs, set(dsts), why == "overloaded", fills, free=True)
                   for srcs, dsts, _, _, why, fills in stages):
                continue
            both, either = stages[:1] if over and under else [], stages[1:] if over and under else stages
            if any(self._direct(srcs, dsts, ok_s, ok_d, why, free=False)
                   for srcs, dsts, ok_s, ok_d, why, _ in both):
                continue
            if any(self._chain(srcs, set(dsts), True, True, free=False) for srcs, dsts, *_ in both):
                continue
            if any(self._direct(srcs, dsts, ok_s, ok_d, why, free=False)
                   for srcs, dsts, ok_s, ok_d, why, _ in either):
                continue
            if any(self._chain(srcs, set(dsts), why == "overloaded", fills, free=False)
                   for srcs, dsts, _, _, why, fills in either):
                continue
            for n in over + under:
                self.stuck.append(Stuck(None, None, self.ids[n], "balance: no chain of moves fits"))
            return

    def _direct(self, srcs: list[int], dsts: list[int], src_ok: Any, dst_ok: Any, reason: str,
                free: bool) -> bool:
        """One pass: each source that still qualifies gives one replica to the first destination
        that still qualifies and can take one. Sources take turns, so that no source fills the
        destinations with partitions that another source, with fewer choices, would have needed.
        False if nothing moved."""
        moved = False
        for src in srcs:
            if not src_ok(src):
                continue
            for dst in dsts:
                if not dst_ok(dst):
                    continue
                pid = self._movable_from(src, dst, free)
                if pid is not None:
                    self._record(pid, src, dst, reason)
                    moved = True
                    break
        return moved

    def _chain(self, srcs: list[int], sinks: set[int], over: bool, under: bool, free: bool) -> bool:
        """The cheapest chain of single moves from a source to a sink, each intermediate node
        giving one replica and taking one. A step that moves a replica this plan placed costs
        nothing (it merges into that move), any other step costs one move; among the cheapest,
        the shortest. With ``free``, only steps that cost nothing. False if there is none.

        Breadth first over nodes, one cost level at a time: free steps from everything reached so
        far, then one paid step, and so on; each node is reached once, at its lowest cost."""
        zone, good, zones = self.zone, self.good, self.zones
        start = set(srcs)
        unvisited: list[dict[int, None]] = [{} for _ in range(zones)]
        for n in self.eligible:
            if n not in start:
                unvisited[zone[n]][n] = None
        parent: dict[int, tuple[int, int]] = {}
        end = None

        def expand(u: int, pids: Iterable[int], found: list[int]) -> int | None:
            zu = zone[u]
            for pid in pids:
                reps = self.reps[pid]
                used = [zone[r] for r in reps if good[r] and r != u]
                allowed = range(zones) if zu in used else [
                    z for z in range(zones) if z == zu or z not in used]
                for z in allowed:
                    bucket = unvisited[z]
                    for v in [v for v in bucket if v not in reps]:
                        del bucket[v]
                        parent[v] = (u, pid)
                        if v in sinks:
                            return v
                        found.append(v)
            return None

        level = list(srcs)
        while level and end is None:
            reached: list[int] = []
            queue = deque(level)
            while queue and end is None:  # free steps
                u = queue.popleft()
                reached.append(u)
                grown: list[int] = []
                end = expand(u, self.fresh[u], grown)
                queue.extend(grown)
            if end is not None or free:
                break
            level = []
            for u in reached:  # one paid step
                end = expand(u, [p for p in self.parts[u] if p not in self.fresh[u]], level)
                if end is not None:
                    break
        if end is None:
            return False
        hops = []
        v = end
        while v not in start:
            u, pid = parent[v]
            hops.append((pid, u, v))
            v = u
        hops.reverse()
        done = []
        for k, (pid, u, v) in enumerate(hops):
            if not self._fits(pid, u, v):
                for pid2, u2, v2 in reversed(done):
                    self._record(pid2, v2, u2, "chain")
                return False
            first, last = k == 0, k == len(hops) - 1
            reason = "overloaded" if first and over else ("underloaded" if last and under else "chain")
            self._record(pid, u, v, reason)
            done.append((pid, u, v))
        return True

    # --- phase 3: metric balance ------------------------------------------------------------------

    def balance_metrics(self) -> None:
        """Balance each metric group in turn (:func:`hacoord.placement.metric.balance_metric`)."""
        for dim in self.metric_dims:
            for n in balance_metric(self, dim):
                self.stuck.append(Stuck(None, None, self.ids[n],
                                        f"metric {dim.metric}: no replica move narrows the gap"))

    # --- phase 4: leaders ---------------------------------------------------------------------

    def balance_leaders(self) -> None:
        """Fix leaders that left or sit on nodes that may not lead, then balance leaderships.
        Starts from the scan's tallies and revisits only the partitions whose replicas changed."""
        active, good, keeps, reps_of = self.active, self.good, self.keeps_lead, self.reps
        lead, sole, led = self.lead_count, self.sole, self.led
        self.lead_why: dict[int, str] = {}
        self.final_leader = final = list(self.leader)
        total, stranded = self.lead_total, self.stranded
        for pid, orig in self.saved.items():
            ld, reps = final[pid], reps_of[pid]
            stranded += sum(1 for r in reps if not good[r]) - sum(1 for r in orig if not good[r])
            # A held node that keeps its leadership keeps the partition out of the tallies; its
            # replica never moves, so that is the same before and after.
            kept = ld is not None and keeps[ld] and ld in reps
            before = [] if kept else [r for r in orig if active[r]]
            after = [] if kept else [r for r in reps if active[r]]
            total += bool(after) - bool(before)
            if len(before) == 1:
                sole[before[0]] -= 1
            if len(after) == 1:
                sole[after[0]] += 1
            was_valid = bool(before) and ld is not None and active[ld] and ld in orig
            is_valid = bool(after) and ld is not None and active[ld] and ld in reps
            if was_valid and not is_valid:
                lead[ld] -= 1
                led[ld].pop(pid, None)
            elif is_valid and not was_valid:
                lead[ld] += 1
                led[ld][pid] = None
            if is_valid:
                self.lead_forced.pop(pid, None)
            elif after:
                self.lead_forced[pid] = None
        self.lead_total, self.stranded = total, stranded
        forced = sorted(self.lead_forced)
        n = len(self.ids)
        pos = {node: k for k, node in enumerate(self.eligible)}
        replicas = self.replicas()
        goal = leader_targets(self.targets.nodes, self.targets.capacity,
                              [replicas[i] for i in self.eligible], total, [sole[i] for i in self.eligible])
        self.leader_goal = goal
        lo = self.lead_low = [0] * n
        hi = self.lead_high = [0] * n
        for i in self.eligible:
            lo[i], hi[i] = goal.low[pos[i]], goal.high[pos[i]]
        rank, cap = self.rank, self.cap

        def key(i: int) -> tuple[int, int, float, int]:
            c = lead[i]
            return (0 if c < lo[i] else (1 if c < hi[i] else 2), c - lo[i], (c + 1) / cap[i], -rank[i])

        for pid in forced:
            cur = final[pid]
            reps = reps_of[pid]
            new = min((r for r in reps if active[r]), key=key)
            if cur is None:
                why = "no_leader"
            elif cur not in reps:
                why = "leader_moved"
            else:  # an ineligible node, or a held one that is down
                why = (self.why_bad[cur] or "node_down").replace("node_", "leader_")
            self._lead(pid, new, why)
        self._balance_leaders()

    def _lead(self, pid: int, new: int, why: str) -> None:
        old = self.final_leader[pid]
        if old is not None and pid in self.led[old]:
            del self.led[old][pid]
            self.lead_count[old] -= 1
        self.final_leader[pid] = new
        self.led[new][pid] = None
        self.lead_count[new] += 1
        self.lead_why.setdefault(pid, why)

    def _balance_leaders(self) -> None:
        """Hand leaderships over until every eligible node is within its leadership range, in the
        same stages as :meth:`balance` (direct hand-overs first, then chains)."""
        lead, lo, hi, rank = self.lead_count, self.lead_low, self.lead_high, self.rank
        eligible = self.eligible

        def most(nodes: Iterable[int], limit: list[int]) -> list[int]:
            return sorted(nodes, key=lambda n: (limit[n] - lead[n], -rank[n]))

        while True:
            over = most((n for n in eligible if lead[n] > hi[n]), hi)
            under = most((n for n in eligible if lead[n] < lo[n]), lo)
            if not over and not under:
                return
            stages = []
            if over and under:
                stages.append((over, under, hi, lo))
            if over:
                stages.append((over, [n for n in eligible if lead[n] < hi[n]], hi, hi))
            if under:
                stages.append((most((n for n in eligible if lead[n] > lo[n]), lo), under, lo, lo))
            if any(self._hand_over(*stage) for stage in stages):
                continue
            if any(self._leader_chain(srcs, set(sinks)) for srcs, sinks, _, _ in stages):
                continue
            self._polish_leaders(over, under)
            return

    def _polish_leaders(self, over: list[int], under: list[int]) -> None:
        """The leadership targets come from per-node bounds only, so a group of nodes can be held
        off its range by the partitions it shares. For such a node, hand leadership along the
        chain that lowers ``sum(leaders**2 / capacity)`` most, while one does (each step lowers
        it, so this ends)."""
        lead, cap, rank = self.lead_count, self.cap, self.rank
        for _ in range(len(self.eligible) * 4):
            changed = False
            for u in over:
                path = self._leader_reach(u, forward=True)
                best = min(path, key=lambda v: ((2 * lead[v] + 1) / cap[v], -rank[v]), default=None)
                if best is not None and (2 * lead[best] + 1) / cap[best] < (2 * lead[u] - 1) / cap[u]:
                    for pid, v in path[best]:
                        self._lead(pid, v, "leader_balance")
                    changed = True
            for v in under:
                path = self._leader_reach(v, forward=False)
                best = max(path, key=lambda u: ((2 * lead[u] - 1) / cap[u], rank[u]), default=None)
                if best is not None and (2 * lead[v] + 1) / cap[v] < (2 * lead[best] - 1) / cap[best]:
                    for pid, w in path[best]:
                        self._lead(pid, w, "leader_balance")
                    changed = True
            if not changed:
                return
            over = [n for n in over if lead[n] > self.lead_high[n]]
            under = [n for n in under if lead[n] < self.lead_low[n]]

    def _leader_reach(self, start: int, forward: bool) -> dict[int, list[tuple[int, int]]]:
        """Nodes ``start`` can hand a leadership to along a chain (``forward``), or that can hand
        one to ``start`` (not ``forward``), each with the hand-overs of its shortest chain."""
        active, reps_of, final, movable = self.active, self.reps, self.final_leader, self.movable
        paths: dict[int, list[tuple[int, int]]] = {start: []}
        queue = deque([start])
        while queue:
            u = queue.popleft()
            if forward:
                steps = [(pid, v) for pid in self.led[u] if movable[pid] for v in reps_of[pid]]
                for pid, v in steps:
                    if v not in paths and active[v]:
                        paths[v] = [*paths[u], (pid, v)]
                        queue.append(v)
            else:
                for pid in self._on(u):
                    w = final[pid]
                    if w is not None and w not in paths and active[w]:
                        paths[w] = [(pid, u), *paths[u]]
                        queue.append(w)
        del paths[start]
        return paths

    def _hand_over(self, srcs: list[int], sinks: list[int], src_limit: list[int],
                   dst_limit: list[int]) -> bool:
        """One pass of direct hand-overs from nodes above ``src_limit`` to nodes below
        ``dst_limit``; False if none was possible."""
        lead, rank, final, reps_of = self.lead_count, self.rank, self.final_leader, self.reps
        sink_set, src_set = set(sinks), set(srcs)
        progressed = False
        if len(sinks) <= len(srcs):
            # Few sinks (a new node, say): walk the partitions each sink holds.
            for dst in sinks:
                for pid in self._on(dst):
                    if lead[dst] >= dst_limit[dst]:
                        break
                    u = final[pid]
                    if u is not None and u in src_set and lead[u] > src_limit[u]:
                        self._lead(pid, dst, "leader_balance")
                        progressed = True
            return progressed
        for src in srcs:
            for pid in list(self.led[src]):
                if lead[src] <= src_limit[src]:
                    break
                if not self.movable[pid]:
                    continue
                best = None
                for r in reps_of[pid]:
                    if r in sink_set and lead[r] < dst_limit[r] and (
                            best is None or (lead[r] - dst_limit[r], -rank[r])
                            < (lead[best] - dst_limit[best], -rank[best])):
                        best = r
                if best is not None:
                    self._lead(pid, best, "leader_balance")
                    progressed = True
        return progressed

    def _leader_chain(self, srcs: list[int], sinks: set[int]) -> bool:
        active, reps_of = self.active, self.reps
        start = set(srcs)
        parent: dict[int, tuple[int, int]] = {}
        seen = set(start)
        queue = deque(srcs)
        while queue:
            u = queue.popleft()
            for pid in self.led[u]:
                if not self.movable[pid]:
                    continue
                for v in reps_of[pid]:
                    if v in seen or not active[v]:
                        continue
                    seen.add(v)
                    parent[v] = (u, pid)
                    if v in sinks:
                        hops = []
                        while v not in start:
                            u2, pid2 = parent[v]
                            hops.append((pid2, v))
                            v = u2
                        for pid2, v2 in reversed(hops):
                            self._lead(pid2, v2, "leader_balance")
                        return True
                    queue.append(v)
        return False

    # --- output -------------------------------------------------------------------------------

    def moves(self) -> list[Move]:
        out = []
        for pid in sorted(self.saved):
            before, after = self.saved[pid], self.reps[pid]
            gone = [r for r in before if r not in after]
            new = [r for r in after if r not in before]
            name, i = self.keys[pid]
            for k, dst in enumerate(new):
                if k < len(gone):
                    out.append(Move(name, i, self.ids[gone[k]], self.ids[dst],
                                    self.removed_why.get((pid, gone[k]), "chain")))
                else:
                    out.append(Move(name, i, None, self.ids[dst], "under_replicated"))
        return out

    def leader_changes(self) -> list[LeaderChange]:
        out = []
        for pid in sorted(self.lead_why):
            old, new = self.leader[pid], self.final_leader[pid]
            if new is None or new == old:
                continue
            name, i = self.keys[pid]
            out.append(LeaderChange(name, i, None if old is None else self.ids[old], self.ids[new],
                                    self.lead_why[pid]))
        return out


def _figures(planner: _Planner, counts: list[int], lead: list[int], sole: list[int], stranded: int,
             replicas: list[int]) -> Figures:
    pick = planner.eligible
    leaders = [lead[i] for i in pick]
    targets = planner.targets
    goal = leader_targets(targets.nodes, targets.capacity, [replicas[i] for i in pick], sum(leaders),
                          [sole[i] for i in pick])
    return figures(targets, [counts[i] for i in pick], leaders, stranded, goal)


def plan_rebalance(state: ClusterState, *, exclude: Iterable[str] = frozenset(),
                   resources: Collection[str] | None = None, hold: Iterable[str] = frozenset(),
                   pinned: Collection[tuple[str, int]] = frozenset(),
                   balance_metric: Mapping[str, str] | None = None) -> Plan:
    """The rebalance plan for ``state`` with the nodes in ``exclude`` drained.

    ``resources`` limits the partitions the plan may move (default: all), and ``pinned``
    (``(resource, partition)`` pairs, e.g. those with a move in flight) names partitions it may
    neither move nor change the leader of; the others count toward each node's load as they are.
    Nodes in ``hold`` keep their replicas (which count as good, whatever the node's status) but
    get no new replicas or leaderships; ``exclude`` wins over ``hold``. ``balance_metric`` maps a
    resource name to the node metric (``Node.metrics`` key) it balances on instead of replica
    count. The state is not modified. See the module doc for the rules.
    """
    excluded = frozenset(exclude)
    held = frozenset(hold) - excluded
    pins = frozenset((name, int(i)) for name, i in pinned)
    planner = _Planner(state, excluded, None if resources is None else frozenset(resources), held, pins,
                       balance_metric)
    targets = planner.targets
    pos = {node: k for k, node in enumerate(planner.eligible)}
    zone_of = [planner.zone[i] for i in planner.eligible]
    forced = []
    for kept, held_zones, wanted, zones, need in planner.forced_slots:
        forced.extend([forced_replica([pos[r] for r in kept], zone_of, wanted, zones, held_zones)] * need)
    bound = bound_for([planner.count[i] for i in planner.eligible], targets, zone_of, forced,
                      planner.spread_short, planner.metric_forced)
    before = _figures(planner, *planner.before)

    planner.repair_partitions()
    planner.balance()
    planner.balance_metrics()
    planner.balance_leaders()

    after = _figures(planner, planner.count, planner.lead_count, planner.sole, planner.stranded,
                     planner.replicas())
    return Plan(
        moves=tuple(planner.moves()),
        leader_changes=tuple(planner.leader_changes()),
        lower_bound=bound.total,
        before=before,
        after=after,
        bound=bound,
        targets=targets,
        exclude=tuple(sorted(excluded & set(state.nodes))),
        stuck=tuple(planner.stuck),
        leader_goal=planner.leader_goal,
        hold=tuple(sorted(held & set(state.nodes))),
        pinned=tuple(sorted(pins)),
        balance_metric=tuple(sorted((r, dim.metric) for dim in planner.metric_dims for r in dim.resources)),
        metrics=tuple(dim.figures(planner.eligible, planner.cap) for dim in planner.metric_dims),
    )


def apply_plan(state: ClusterState, plan: Plan) -> ClusterState:
    """A copy of ``state`` with ``plan`` carried out (the input is not modified).

    Each move replaces the source replica in its slot (as ``MovePartition`` does) or appends an
    added one; then the leadership changes apply, and a partition whose leader left without a
    listed change gets its first remaining replica. Every changed partition's epoch grows by one.
    """
    out = ClusterState.from_dict(state.to_dict())
    changed: dict[tuple[str, int], None] = {}
    for move in plan.moves:
        part = out.resources[move.resource].partitions[move.partition]
        if move.from_node is None:
            part.replicas.append(move.to_node)
        else:
            part.replicas[part.replicas.index(move.from_node)] = move.to_node
        changed[(move.resource, move.partition)] = None
    for change in plan.leader_changes:
        out.resources[change.resource].partitions[change.partition].leader = change.to_node
        changed[(change.resource, change.partition)] = None
    for name, i in changed:
        part = out.resources[name].partitions[i]
        if part.leader not in part.replicas:
            part.leader = part.replicas[0] if part.replicas else None
        part.epoch += 1
    return out
