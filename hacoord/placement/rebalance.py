"""The rebalance planner: from the current assignment, the fewest replica moves (and leadership
changes) that restore every placement rule after a change.

Pure and deterministic: the same state, ``exclude`` and ``resources`` give the same plan on any
machine. Nodes are visited in id order, resources in name order, and every remaining tie is broken
by rendezvous hashing of the node id (:func:`hacoord.placement.balance.node_rank`); nothing iterates
over a set of strings or uses ``hash()``. It never mutates the state it is given.

Rules, for the eligible nodes (status ``"up"``, not excluded), in order of precedence:

1. a partition wants ``min(replication_factor, eligible nodes)`` replicas, on distinct eligible
   nodes; replicas on nodes that are down, excluded or unknown move to eligible ones, missing ones
   are added. A replica stays where it is when no eligible node can take it (it is reported in
   ``Plan.stuck``): the planner never lowers the number of copies.
2. its replicas span ``min(wanted, zones with eligible nodes)`` zones; no move ever lowers a
   partition's zone spread, and a partition short of zones gets a replica moved into a new one.
3. every eligible node ends within ``[low, high]`` of its share
   (:mod:`hacoord.placement.balance`): overloaded nodes give replicas to underloaded ones, cheapest
   first: re-homing a replica this plan already placed costs nothing (the two steps merge into one
   move), so such steps come first; then a direct move; then the cheapest chain of single-replica
   moves (each intermediate node gives one and takes one). Sources take turns, so that one source
   does not use up the destinations another source could reach only directly.
4. leaders: among each partition's eligible replicas, balanced the same way against leadership
   targets. Leadership changes are not data moves and are listed apart.

A partition moves only for one of those reasons, recorded in each move: ``node_down``,
``node_excluded``, ``node_unknown``, ``under_replicated``, ``zone_spread``, ``overloaded`` (its
source node held more than its ``high`` at that point of the plan, possibly because of replicas
the plan placed there first), ``underloaded`` (its destination held fewer than its ``low``) or
``chain`` (an intermediate step of a chain that relieves an overloaded or underloaded node). Steps
that move one partition twice are merged into one move.

The planner reads the state once (one pass over all replicas, into integer-indexed arrays) and
then does a small amount of work per move; it never copies the state.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from hacoord.core.model import ClusterState
from hacoord.placement.balance import (
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

#: Move reasons, in the order the planner considers them.
MOVE_REASONS = ("node_down", "node_excluded", "node_unknown", "under_replicated", "zone_spread",
                "overloaded", "underloaded", "chain")
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
    against ``targets`` (the replica targets of the planned cluster).
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "moves": [m.to_dict() for m in self.moves],
            "leader_changes": [c.to_dict() for c in self.leader_changes],
            "lower_bound": self.lower_bound,
            "bound": self.bound.to_dict(),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "exclude": list(self.exclude),
            "stuck": [s.to_dict() for s in self.stuck],
        }


class _Planner:
    """Working arrays of one planning run (private; see :func:`plan_rebalance`)."""

    def __init__(self, state: ClusterState, exclude: frozenset[str],
                 resources: frozenset[str] | None) -> None:
        self.ids: list[str] = sorted(state.nodes)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.ids)}
        nodes = [state.nodes[n] for n in self.ids]
        self.why_ineligible: list[str | None] = [
            "node_excluded" if n.id in exclude else (None if n.status == "up" else "node_down")
            for n in nodes]
        self.elig = [w is None for w in self.why_ineligible]
        self.eligible = [i for i, ok in enumerate(self.elig) if ok]
        self.eligible_nodes = [nodes[i] for i in self.eligible]
        zone_names = sorted({nodes[i].zone for i in self.eligible})
        zone_of = {z: k for k, z in enumerate(zone_names)}
        self.zones = len(zone_names)
        self.zone = [zone_of[n.zone] if ok else -1 for n, ok in zip(nodes, self.elig, strict=True)]
        self.cap = [n.capacity for n in nodes]
        self.rank = [node_rank(n) for n in self.ids]
        self.count = [0] * len(nodes)
        self.held: list[dict[int, None]] = [{} for _ in nodes]
        # Replicas this plan placed on each node: moving one on again costs no extra move.
        self.fresh: list[dict[int, None]] = [{} for _ in nodes]
        # Partitions, indexed by pid in (resource name, partition index) order.
        self.keys: list[tuple[str, int]] = []
        self.reps: list[list[int]] = []
        self.leader: list[int | None] = []
        self.movable: list[bool] = []
        self.repair: list[tuple[int, int]] = []
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
        self.forced_slots: list[tuple[tuple[int, ...], int, int]] = []
        self.spread_short = 0
        # Destination heap of the repair phase (entries are stale when their key is not _key[n]).
        self._heap: list[tuple[tuple[int, int, float, int], int]] | None = None
        self._key: dict[int, tuple[int, int, float, int]] = {}
        self._scan(state, resources)
        self.targets = targets = targets_for(self.eligible_nodes, self.demand)
        self.low, self.high = [0] * len(self.ids), [0] * len(self.ids)
        for k, i in enumerate(self.eligible):
            self.low[i], self.high[i] = targets.low[k], targets.high[k]

    # --- reading the state ----------------------------------------------------------------

    def _node(self, node_id: str) -> int:
        """Index of ``node_id``, registering an unknown one (not eligible)."""
        i = self.index.get(node_id)
        if i is None:
            i = len(self.ids)
            self.ids.append(node_id)
            self.index[node_id] = i
            self.why_ineligible.append("node_unknown")
            self.elig.append(False)
            self.zone.append(-1)
            self.cap.append(1.0)
            self.rank.append(node_rank(node_id))
            self.count.append(0)
            self.held.append({})
            self.fresh.append({})
            self.lead_count.append(0)
            self.sole.append(0)
            self.led.append({})
        return i

    def _scan(self, state: ClusterState, resources: frozenset[str] | None) -> None:
        """One pass over every replica: per-node counts and partitions, leadership tallies, and
        the partitions that need repair. The planner's only O(replicas) step."""
        index, elig, zone, count, held = self.index, self.elig, self.zone, self.count, self.held
        n_elig, zones = len(self.eligible), self.zones
        lead, sole, led = self.lead_count, self.sole, self.led
        keys, reps_of, leaders, movables = self.keys, self.reps, self.leader, self.movable
        demand: dict[int, int] = {}
        total = stranded = 0
        pid = 0
        for name in sorted(state.resources):
            res = state.resources[name]
            movable = resources is None or name in resources
            wanted = min(res.replication_factor, n_elig)
            spread_wanted = min(wanted, zones)
            if wanted and res.partitions:
                demand[wanted] = demand.get(wanted, 0) + len(res.partitions)
            keys.extend((name, i) for i in range(len(res.partitions)))
            movables.extend([movable] * len(res.partitions))
            for part in res.partitions:
                try:
                    reps = [index[n] for n in part.replicas]
                    ld = None if part.leader is None else index[part.leader]
                except KeyError:
                    reps = [self._node(n) for n in part.replicas]
                    ld = None if part.leader is None else self._node(part.leader)
                reps_of.append(reps)
                leaders.append(ld)
                good = 0
                last = -1
                for r in reps:
                    if elig[r]:
                        good += 1
                        last = r
                        count[r] += 1
                        if movable:
                            held[r][pid] = None
                if good:
                    total += 1
                    if good == 1:
                        sole[last] += 1
                    if ld is not None and elig[ld] and ld in reps:
                        lead[ld] += 1
                        if movable:
                            led[ld][pid] = None
                    elif movable:
                        self.lead_forced[pid] = None
                if good == len(reps) == wanted and good <= 1:
                    pid += 1
                    continue
                stranded += len(reps) - good
                spread = len({zone[r] for r in reps if elig[r]})
                need = max(0, wanted - good)
                short = max(0, spread_wanted - spread)
                if movable and good < len(reps) and not need:
                    for r in reps:
                        if not elig[r]:
                            self.stuck.append(Stuck(keys[pid][0], keys[pid][1], self.ids[r],
                                                    "no eligible node can take it"))
                if movable and (need or short):
                    self.repair.append((pid, wanted))
                    if need:
                        self.forced_slots.append((tuple(r for r in reps if elig[r]), wanted, need))
                    self.spread_short += max(0, short - need)
                pid += 1
        self.demand = dict(sorted(demand.items()))
        self.lead_total, self.stranded = total, stranded
        self.before = (list(count), list(lead), list(sole), stranded)

    # --- small helpers ----------------------------------------------------------------------

    def _fits(self, pid: int, src: int, dst: int) -> bool:
        """Moving ``pid``'s replica from ``src`` to ``dst`` keeps nodes distinct and spread."""
        reps = self.reps[pid]
        if dst in reps or src not in reps or not self.elig[dst]:
            return False
        zs, zd = self.zone[src], self.zone[dst]
        if zs == zd or zs < 0:
            return True
        others = [self.zone[r] for r in reps if r != src and self.elig[r]]
        return zs in others or zd not in others

    def _record(self, pid: int, src: int | None, dst: int, reason: str) -> None:
        reps = self.reps[pid]
        orig = self.saved.get(pid)
        if orig is None:
            orig = self.saved[pid] = tuple(reps)
        if src is None:
            reps.append(dst)
        else:
            reps[reps.index(src)] = dst
            if self.elig[src]:
                self.count[src] -= 1
                self.held[src].pop(pid, None)
                self.fresh[src].pop(pid, None)
            if src in orig:
                self.removed_why.setdefault((pid, src), reason)
        self.count[dst] += 1
        self.held[dst][pid] = None
        if dst not in orig:
            self.fresh[dst][pid] = None
        if self._heap is not None:
            self._push(dst)
            if src is not None and self.elig[src]:
                self._push(src)

    # --- destinations: a lazily updated heap of eligible nodes, best first --------------------

    def _dest_key(self, n: int) -> tuple[int, int, float, int]:
        c, lo, hi = self.count[n], self.low[n], self.high[n]
        tier = 0 if c < lo else (1 if c < hi else 2)
        return (tier, c - lo, (c + 1) / self.cap[n], -self.rank[n])

    def _push(self, n: int) -> None:
        assert self._heap is not None
        key = self._dest_key(n)
        self._key[n] = key
        heapq.heappush(self._heap, (key, n))

    def _best_dest(self, reps: list[int], zones: set[int] | None) -> int | None:
        """Best eligible node not in ``reps``, in ``zones`` when given."""
        assert self._heap is not None
        heap, aside, found = self._heap, [], None
        while heap:
            key, n = heapq.heappop(heap)
            if self._key[n] != key:
                continue  # stale entry
            aside.append((key, n))
            if n not in reps and (zones is None or self.zone[n] in zones):
                found = n
                break
        for entry in aside:
            heapq.heappush(heap, entry)
        return found

    # --- phase 1: forced placements and zone spread -------------------------------------------

    def repair_partitions(self) -> None:
        if not self.repair:
            return
        self._heap = []
        for n in self.eligible:
            self._push(n)
        all_zones = set(range(self.zones))
        for pid, wanted in self.repair:
            reps = self.reps[pid]
            spread_wanted = min(wanted, self.zones)
            bad = [r for r in reps if not self.elig[r]]
            good = len(reps) - len(bad)
            for _ in range(max(0, wanted - good)):
                used = {self.zone[r] for r in reps if self.elig[r]}
                zones = all_zones - used if len(used) < spread_wanted else None
                dst = self._best_dest(reps, zones)
                if dst is None:
                    break
                if bad:
                    src = bad.pop(0)
                    self._record(pid, src, dst, self.why_ineligible[src] or "node_unknown")
                else:
                    self._record(pid, None, dst, "under_replicated")
            for src in bad:
                self.stuck.append(Stuck(*self.keys[pid], self.ids[src], "no eligible node can take it"))
            if len(reps) - len(bad) < wanted:
                self.stuck.append(Stuck(*self.keys[pid], None, "under-replicated: too few eligible nodes"))
            self._fix_spread(pid, spread_wanted, all_zones)
        self._heap = None

    def _fix_spread(self, pid: int, spread_wanted: int, all_zones: set[int]) -> None:
        reps = self.reps[pid]
        while True:
            good = [r for r in reps if self.elig[r]]
            used = [self.zone[r] for r in good]
            if len(set(used)) >= spread_wanted:
                return
            doubled = [r for r in good if used.count(self.zone[r]) > 1]
            src = max(doubled, key=lambda n: (self.count[n] - self.high[n], self.count[n] - self.low[n],
                                              self.count[n] / self.cap[n], self.rank[n]))
            dst = self._best_dest(reps, all_zones - set(used))
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
        zone, elig, reps_of, leader = self.zone, self.elig, self.reps, self.leader
        zs, zd = zone[src], zone[dst]
        fallback, leaders_seen = None, 0
        for pid in self.held[src]:
            reps = reps_of[pid]
            if dst in reps:
                continue
            if zs != zd:
                alone, has_zd = True, False
                for r in reps:
                    if r != src and elig[r]:
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
        zone, elig, zones = self.zone, self.elig, self.zones
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
                used = [zone[r] for r in reps if elig[r] and r != u]
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
                end = expand(u, [p for p in self.held[u] if p not in self.fresh[u]], level)
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

    # --- phase 3: leaders ---------------------------------------------------------------------

    def balance_leaders(self) -> None:
        """Fix leaders that left or sit on nodes that may not lead, then balance leaderships.
        Starts from the scan's tallies and revisits only the partitions whose replicas changed."""
        elig, reps_of = self.elig, self.reps
        lead, sole, led = self.lead_count, self.sole, self.led
        self.lead_why: dict[int, str] = {}
        self.final_leader = final = list(self.leader)
        total, stranded = self.lead_total, self.stranded
        for pid, orig in self.saved.items():
            ld, reps = final[pid], reps_of[pid]
            before = [r for r in orig if elig[r]]
            after = [r for r in reps if elig[r]]
            stranded += (len(reps) - len(after)) - (len(orig) - len(before))
            total += bool(after) - bool(before)
            if len(before) == 1:
                sole[before[0]] -= 1
            if len(after) == 1:
                sole[after[0]] += 1
            was_valid = bool(before) and ld is not None and elig[ld] and ld in orig
            is_valid = bool(after) and ld is not None and elig[ld] and ld in reps
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
        goal = leader_targets(self.targets.nodes, self.targets.capacity,
                              [self.count[i] for i in self.eligible], total, [sole[i] for i in self.eligible])
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
            new = min((r for r in reps if elig[r]), key=key)
            if cur is None:
                why = "no_leader"
            elif cur not in reps:
                why = "leader_moved"
            else:
                why = (self.why_ineligible[cur] or "node_unknown").replace("node_", "leader_")
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
        elig, reps_of, final, movable = self.elig, self.reps, self.final_leader, self.movable
        paths: dict[int, list[tuple[int, int]]] = {start: []}
        queue = deque([start])
        while queue:
            u = queue.popleft()
            if forward:
                steps = [(pid, v) for pid in self.led[u] if movable[pid] for v in reps_of[pid]]
                for pid, v in steps:
                    if v not in paths and elig[v]:
                        paths[v] = [*paths[u], (pid, v)]
                        queue.append(v)
            else:
                for pid in self.held[u]:
                    w = final[pid]
                    if w is not None and w not in paths and elig[w]:
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
                for pid in self.held[dst]:
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
        elig, reps_of = self.elig, self.reps
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
                    if v in seen or not elig[v]:
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


def _figures(planner: _Planner, counts: list[int], lead: list[int], sole: list[int],
             stranded: int) -> Figures:
    pick = planner.eligible
    replicas = [counts[i] for i in pick]
    leaders = [lead[i] for i in pick]
    targets = planner.targets
    goal = leader_targets(targets.nodes, targets.capacity, replicas, sum(leaders), [sole[i] for i in pick])
    return figures(targets, replicas, leaders, stranded, goal)


def plan_rebalance(state: ClusterState, *, exclude: Iterable[str] = frozenset(),
                   resources: Collection[str] | None = None) -> Plan:
    """The rebalance plan for ``state`` with the nodes in ``exclude`` drained.

    ``resources`` limits the partitions the plan may move (default: all); the others still count
    toward each node's load. The state is not modified. See the module doc for the rules.
    """
    excluded = frozenset(exclude)
    planner = _Planner(state, excluded, None if resources is None else frozenset(resources))
    targets = planner.targets
    pos = {node: k for k, node in enumerate(planner.eligible)}
    zone_of = [planner.zone[i] for i in planner.eligible]
    forced = []
    for kept, wanted, need in planner.forced_slots:
        forced.extend([forced_replica([pos[r] for r in kept], zone_of, wanted, planner.zones)] * need)
    bound = bound_for([planner.count[i] for i in planner.eligible], targets, zone_of, forced,
                      planner.spread_short)
    before = _figures(planner, *planner.before)

    planner.repair_partitions()
    planner.balance()
    planner.balance_leaders()

    after = _figures(planner, planner.count, planner.lead_count, planner.sole, planner.stranded)
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
