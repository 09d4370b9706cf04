"""Phase 1 of a rebalance: repair. Each partition the scan found short of replicas or zones gets
them: replicas on nodes that are not good move to eligible nodes, missing ones are added, and a
replica moves into a new zone while the partition spans fewer zones than it should (rules 1 and 2
of :mod:`hacoord.placement.rebalance`). A destination is the best eligible node of the
partition's dimension: by replica count against the targets, or lowest in the group's metric per
capacity. What cannot be repaired is reported stuck.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from hacoord.placement.draft import Draft


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

    def best(self, reps: list[int], zones: set[int] | None, zone: tuple[int, ...]) -> int | None:
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


def _record(draft: Draft, heap: _Heap, pid: int, src: int | None, dst: int, reason: str) -> None:
    """:meth:`Draft.record`, keeping ``heap`` (the partition's dimension's) up to date."""
    draft.record(pid, src, dst, reason)
    heap.push(dst)
    if src is not None and draft.view.active[src]:
        heap.push(src)


def _source_key(draft: Draft, kind: int) -> Callable[[int], Any]:
    """Of a partition's replicas that could move, the one to move first (the highest)."""
    cap, rank = draft.view.cap, draft.view.rank
    if kind:
        load = draft.dims[kind].load  # type: ignore[attr-defined]
        return lambda n: (load[n] / cap[n], rank[n])
    count, high, low = draft.count, draft.view.high, draft.view.low
    return lambda n: (count[n] - high[n], count[n] - low[n], count[n] / cap[n], rank[n])


def repair(draft: Draft) -> None:
    """Repair every partition the scan found short of replicas or zones (module doc)."""
    view = draft.view
    if not view.repair:
        return
    cap, rank, zone, good = view.cap, view.rank, view.zone, view.good
    heaps = [_Heap(draft.dest_key, view.eligible)]
    for dim in draft.metric_dims:
        heaps.append(_Heap(lambda n, load=dim.load: (load[n] / cap[n], -rank[n]), view.eligible))
    all_zones = set(range(view.zones))
    for pid, wanted, spread_wanted in view.repair:
        heap = heaps[view.kinds[pid]]
        reps = draft.own_replicas(pid)
        bad = [r for r in reps if not good[r]]
        n_ok = len(reps) - len(bad)
        for _ in range(max(0, wanted - n_ok)):
            used = {zone[r] for r in reps if good[r]}
            zones = all_zones - used if len(used) < spread_wanted else None
            dst = heap.best(reps, zones, zone)
            if dst is None:
                break
            if bad:
                src = bad.pop(0)
                _record(draft, heap, pid, src, dst, view.why_bad[src] or "node_unknown")
            else:
                _record(draft, heap, pid, None, dst, "under_replicated")
        for src in bad:
            draft.stick(pid, src, "no eligible node can take it")
        if len(reps) - len(bad) < wanted:
            draft.stick(pid, None, "under-replicated: too few eligible nodes")
        _fix_spread(draft, pid, spread_wanted, all_zones, heap)


def _fix_spread(draft: Draft, pid: int, spread_wanted: int, all_zones: set[int], heap: _Heap) -> None:
    view = draft.view
    reps, zone = draft.own_replicas(pid), view.zone
    while True:
        good = [r for r in reps if view.good[r]]
        used = [zone[r] for r in good]
        if len(set(used)) >= spread_wanted:
            return
        doubled = [r for r in good if view.active[r] and used.count(zone[r]) > 1]
        if not doubled:
            draft.stick(pid, None, "zone spread: the replicas sharing a zone are on held nodes")
            return
        src = max(doubled, key=_source_key(draft, view.kinds[pid]))
        dst = heap.best(reps, all_zones - set(used), zone)
        if dst is None:
            draft.stick(pid, None, "zone spread: no free node in another zone")
            return
        _record(draft, heap, pid, src, dst, "zone_spread")
