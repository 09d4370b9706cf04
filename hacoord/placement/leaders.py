"""Phase 4 of a rebalance, last: leaders. Once the replicas are planned, each partition whose
leader left (or sits on a node that may not lead) gets an eligible replica as leader, and then
leaderships are handed over among each partition's eligible replicas until every eligible node is
within its leadership range (rule 5 of :mod:`hacoord.placement.rebalance`), all resources
together, by count. Leadership changes are not data moves: :meth:`Leadership.changes` lists them
apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from hacoord.placement.balance import Targets, leader_targets
from hacoord.placement.draft import Draft
from hacoord.placement.plan import LeaderChange


class Leadership:
    """Leaderships over the eligible nodes of a :class:`~hacoord.placement.draft.Draft` whose
    replicas are planned: leaderships held (``count``), partitions held alone (``sole``), the
    movable partitions each node leads (``led``), the partitions whose leader must change
    (``forced``), each partition's planned leader (``final``) and why it changed (``why``), and
    the leadership targets (``goal``, with each node's ``low``/``high`` by index).

    Starts from the scan's tallies and revisits only the partitions whose replicas changed."""

    def __init__(self, draft: Draft, led: list[dict[int, None]]) -> None:
        self.draft = draft
        view = draft.view
        active, keeps, reps_of = view.active, view.keeps_lead, draft.reps
        self.count = lead = list(view.lead_count)
        self.sole = sole = list(view.sole)
        self.led = led
        self.forced = dict.fromkeys(view.lead_forced)
        self.why: dict[int, str] = {}
        self.final = final = list(view.leader)
        total = view.lead_total
        for pid, orig in draft.saved.items():
            ld, reps = final[pid], reps_of[pid]
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
                self.forced.pop(pid, None)
            elif after:
                self.forced[pid] = None
        pos = {node: k for k, node in enumerate(view.eligible)}
        replicas = draft.node_replicas()
        targets = view.targets
        self.goal: Targets = leader_targets(targets.nodes, targets.capacity,
                                            [replicas[i] for i in view.eligible], total,
                                            [sole[i] for i in view.eligible])
        self.low, self.high = [0] * len(view.ids), [0] * len(view.ids)
        for i in view.eligible:
            self.low[i], self.high[i] = self.goal.low[pos[i]], self.goal.high[pos[i]]

    def balance(self) -> None:
        """Fix leaders that left or sit on nodes that may not lead, then balance leaderships."""
        view = self.draft.view
        active, rank, cap = view.active, view.rank, view.cap
        lead, lo, hi = self.count, self.low, self.high

        def key(i: int) -> tuple[int, int, float, int]:
            c = lead[i]
            return (0 if c < lo[i] else (1 if c < hi[i] else 2), c - lo[i], (c + 1) / cap[i], -rank[i])

        for pid in sorted(self.forced):
            cur = self.final[pid]
            reps = self.draft.reps[pid]
            new = min((r for r in reps if active[r]), key=key)
            if cur is None:
                why = "no_leader"
            elif cur not in reps:
                why = "leader_moved"
            else:  # an ineligible node, or a held one that is down
                why = (view.why_bad[cur] or "node_down").replace("node_", "leader_")
            self._lead(pid, new, why)
        self._balance()

    def _lead(self, pid: int, new: int, why: str) -> None:
        old = self.final[pid]
        if old is not None and pid in self.led[old]:
            del self.led[old][pid]
            self.count[old] -= 1
        self.final[pid] = new
        self.led[new][pid] = None
        self.count[new] += 1
        self.why.setdefault(pid, why)

    def _balance(self) -> None:
        """Hand leaderships over until every eligible node is within its leadership range, in the
        same stages as :func:`hacoord.placement.counts.balance_counts` (direct hand-overs first,
        then chains)."""
        lead, lo, hi, rank = self.count, self.low, self.high, self.draft.view.rank
        eligible = self.draft.view.eligible

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
            if any(self._chain(srcs, set(sinks)) for srcs, sinks, _, _ in stages):
                continue
            self._polish(over, under)
            return

    def _polish(self, over: list[int], under: list[int]) -> None:
        """The leadership targets come from per-node bounds only, so a group of nodes can be held
        off its range by the partitions it shares. For such a node, hand leadership along the
        chain that lowers ``sum(leaders**2 / capacity)`` most, while one does (each step lowers
        it, so this ends)."""
        lead, cap, rank = self.count, self.draft.view.cap, self.draft.view.rank
        for _ in range(len(self.draft.view.eligible) * 4):
            changed = False
            for u in over:
                path = self._reach(u, forward=True)
                best = min(path, key=lambda v: ((2 * lead[v] + 1) / cap[v], -rank[v]), default=None)
                if best is not None and (2 * lead[best] + 1) / cap[best] < (2 * lead[u] - 1) / cap[u]:
                    for pid, v in path[best]:
                        self._lead(pid, v, "leader_balance")
                    changed = True
            for v in under:
                path = self._reach(v, forward=False)
                best = max(path, key=lambda u: ((2 * lead[u] - 1) / cap[u], rank[u]), default=None)
                if best is not None and (2 * lead[v] + 1) / cap[v] < (2 * lead[best] - 1) / cap[best]:
                    for pid, w in path[best]:
                        self._lead(pid, w, "leader_balance")
                    changed = True
            if not changed:
                return
            over = [n for n in over if lead[n] > self.high[n]]
            under = [n for n in under if lead[n] < self.low[n]]

    def _reach(self, start: int, forward: bool) -> dict[int, list[tuple[int, int]]]:
        """Nodes ``start`` can hand a leadership to along a chain (``forward``), or that can hand
        one to ``start`` (not ``forward``), each with the hand-overs of its shortest chain."""
        view = self.draft.view
        active, reps_of, final, movable = view.active, self.draft.reps, self.final, view.movable
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
                for pid in self.draft.on(u):
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
        lead, rank, final, reps_of = self.count, self.draft.view.rank, self.final, self.draft.reps
        movable = self.draft.view.movable
        sink_set, src_set = set(sinks), set(srcs)
        progressed = False
        if len(sinks) <= len(srcs):
            # Few sinks (a new node, say): walk the partitions each sink holds.
            for dst in sinks:
                for pid in self.draft.on(dst):
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
                if not movable[pid]:
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

    def _chain(self, srcs: list[int], sinks: set[int]) -> bool:
        """Hand leaderships along the shortest chain from a node in ``srcs`` to one in ``sinks``
        (each step to a replica of a partition the previous node leads); False if there is none."""
        active, reps_of, movable = self.draft.view.active, self.draft.reps, self.draft.view.movable
        start = set(srcs)
        parent: dict[int, tuple[int, int]] = {}
        seen = set(start)
        queue = deque(srcs)
        while queue:
            u = queue.popleft()
            for pid in self.led[u]:
                if not movable[pid]:
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

    def changes(self) -> list[LeaderChange]:
        """The leadership changes from the state to the plan, by pid."""
        view = self.draft.view
        out = []
        for pid in sorted(self.why):
            old, new = view.leader[pid], self.final[pid]
            if new is None or new == old:
                continue
            name, i = view.keys[pid]
            out.append(LeaderChange(name, i, None if old is None else view.ids[old], view.ids[new],
                                    self.why[pid]))
        return out


def balance_leaders(draft: Draft, led: list[dict[int, None]]) -> Leadership:
    """The leaderships of ``draft``'s planned replicas (``led``: the movable partitions each node
    leads, from the scan's :class:`~hacoord.placement.view.Indexes`), fixed where they must
    change, then balanced (module doc)."""
    leadership = Leadership(draft, led)
    leadership.balance()
    return leadership
