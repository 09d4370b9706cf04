"""Phase 2 of a rebalance: balance by replica count. Replicas of the resources balanced by count
move until every eligible node holds within ``[low, high]`` of its share (rule 3 of
:mod:`hacoord.placement.rebalance`; the targets come from :mod:`hacoord.placement.balance`):
overloaded nodes give replicas to underloaded ones, cheapest first (re-homing a replica the plan
already placed, then a direct move, then the cheapest chain of single-replica moves). Nodes still
outside their range when no move or chain fits are reported stuck.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from hacoord.placement.draft import Draft

# A replica that is the partition's leader moves only if no follower replica on the same source
# fits; this many fitting leader replicas are looked at before settling for one.
_LEADER_SCAN = 64


def _movable_from(draft: Draft, src: int, dst: int, free: bool) -> int | None:
    """A partition on ``src`` that can move to ``dst``. With ``free``, only one this plan placed
    there (moving it on merges into that move, at no cost); otherwise a follower replica if
    possible, then a leader."""
    if free:
        for pid in draft.fresh[src]:
            if draft.fits(pid, src, dst):
                return pid
        return None
    view = draft.view
    zone, good, reps_of, leader = view.zone, view.good, draft.reps, view.leader
    zs, zd = zone[src], zone[dst]
    fallback, leaders_seen = None, 0
    for pid in draft.parts[src]:
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


def balance_counts(draft: Draft) -> None:
    """Move replicas until every eligible node is within ``[low, high]``: first moves that
    relieve an overloaded node and fill an underloaded one at once, then moves that do either,
    then chains of moves; stop (and report) only when none exists."""
    view = draft.view
    count, low, high, rank, eligible = draft.count, view.low, view.high, view.rank, view.eligible

    def above_high(n: int) -> bool:
        return count[n] > high[n]

    def above_low(n: int) -> bool:
        return count[n] > low[n]

    def below_low(n: int) -> bool:
        return count[n] < low[n]

    def below_high(n: int) -> bool:
        return count[n] < high[n]

    def most(nodes: Iterable[int], limit: tuple[int, ...]) -> list[int]:
        return sorted(nodes, key=lambda n: (limit[n] - count[n], -rank[n]))

    def direct(stages: list[Any], free: bool) -> bool:
        return any(_direct(draft, srcs, dsts, ok_s, ok_d, why, free)
                   for srcs, dsts, ok_s, ok_d, why, _ in stages)

    def chain(stages: list[Any], free: bool) -> bool:
        return any(_chain(draft, srcs, set(dsts), why == "overloaded", fills, free)
                   for srcs, dsts, _, _, why, fills in stages)

    while True:
        over = most((n for n in eligible if count[n] > high[n]), high)
        under = sorted((n for n in eligible if count[n] < low[n]), key=draft.dest_key)
        if not over and not under:
            return
        stages = []
        if over and under:
            stages.append((over, under, above_high, below_low, "overloaded", True))
        if over:
            room = sorted((n for n in eligible if count[n] < high[n]), key=draft.dest_key)
            stages.append((over, room, above_high, below_high, "overloaded", bool(under)))
        if under:
            donors = most((n for n in eligible if count[n] > low[n]), low)
            stages.append((donors, under, above_low, below_low, "underloaded", True))
        # Cheapest first: moves that merge into moves already planned, directly then along a
        # chain; then new moves: one that relieves both ends, a chain that does, then one that
        # relieves either end, a chain that does.
        both, either = stages[:1] if over and under else [], stages[1:] if over and under else stages
        if (direct(stages, True) or chain(stages, True) or direct(both, False) or chain(both, False)
                or direct(either, False) or chain(either, False)):
            continue
        for n in over + under:
            draft.stick(None, n, "balance: no chain of moves fits")
        return


def _direct(draft: Draft, srcs: list[int], dsts: list[int], src_ok: Any, dst_ok: Any, reason: str,
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
            pid = _movable_from(draft, src, dst, free)
            if pid is not None:
                draft.record(pid, src, dst, reason)
                moved = True
                break
    return moved


def _chain(draft: Draft, srcs: list[int], sinks: set[int], over: bool, under: bool, free: bool) -> bool:
    """The cheapest chain of single moves from a source to a sink, each intermediate node
    giving one replica and taking one. A step that moves a replica this plan placed costs
    nothing (it merges into that move), any other step costs one move; among the cheapest,
    the shortest. With ``free``, only steps that cost nothing. False if there is none.

    Breadth first over nodes, one cost level at a time: free steps from everything reached so
    far, then one paid step, and so on; each node is reached once, at its lowest cost."""
    view = draft.view
    zone, good, zones, reps_of = view.zone, view.good, view.zones, draft.reps
    start = set(srcs)
    unvisited: list[dict[int, None]] = [{} for _ in range(zones)]
    for n in view.eligible:
        if n not in start:
            unvisited[zone[n]][n] = None
    parent: dict[int, tuple[int, int]] = {}
    end = None

    def expand(u: int, pids: Iterable[int], found: list[int]) -> int | None:
        zu = zone[u]
        for pid in pids:
            reps = reps_of[pid]
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
            end = expand(u, draft.fresh[u], grown)
            queue.extend(grown)
        if end is not None or free:
            break
        level = []
        for u in reached:  # one paid step
            end = expand(u, [p for p in draft.parts[u] if p not in draft.fresh[u]], level)
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
        if not draft.fits(pid, u, v):
            for pid2, u2, v2 in reversed(done):
                draft.record(pid2, v2, u2, "chain")
            return False
        first, last = k == 0, k == len(hops) - 1
        reason = "overloaded" if first and over else ("underloaded" if last and under else "chain")
        draft.record(pid, u, v, reason)
        done.append((pid, u, v))
    return True
