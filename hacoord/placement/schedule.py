"""Scheduling a rebalance: what to plan against, which planned moves to start now, how long the
rest will take. Pure and deterministic, like the planner it feeds (the leader's
:class:`~hacoord.server.rebalancer.Rebalancer` drives it; any member can report progress with it).

What the planner is told, from the replicated state and the leader's clock ``now``:

* ``exclude`` (everything moves off): draining nodes, and nodes down for at least
  ``rereplicate_after`` seconds (their replicas are re-created elsewhere);
* ``hold`` (keep what they hold, take nothing new): cordoned nodes, suspect nodes, and nodes down
  for less than ``rereplicate_after`` (they may come back; leadership already moved off them);
* ``pinned``: partitions with a pending move, planned as if the move had completed (its target in
  place of its source), so the rest of the plan accounts for it, and never touched.

Which moves start: without a rebalance run, only repairs (``REPAIR_REASONS``: replicas on
excluded, down or unknown nodes, missing replicas, zone spread); during a run, every move and
leadership change of the plan. Moves start in plan order while the throttles allow: at most
``max_moves`` pending in the cluster and ``max_moves_per_node`` per node (as source or target).

ETA: the moves left (pending and still to start) run in waves no larger than the throttles allow;
each wave takes the mean duration of the moves completed so far. Unknown (None) before the first
move completes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hacoord.core.model import ClusterState, Partition, Resource
from hacoord.placement.plan import Move, Plan
from hacoord.placement.rebalance import plan_rebalance

#: Move reasons that are repairs: they run without a rebalance run (maintenance aside).
REPAIR_REASONS = frozenset({"node_down", "node_excluded", "node_unknown", "under_replicated",
                            "zone_spread"})


@dataclass(frozen=True)
class Inputs:
    """What the planner is told (see the module doc)."""

    exclude: frozenset[str]
    hold: frozenset[str]
    pinned: frozenset[tuple[str, int]]


def inputs(state: ClusterState, now: float, drain: Iterable[str] = ()) -> Inputs:
    """The planner's ``exclude``, ``hold`` and ``pinned`` for ``state`` at leader time ``now``;
    ``drain`` adds nodes to plan as if they were draining (a dry run's what-if)."""
    delay = state.rebalance.rereplicate_after
    drained = frozenset(drain)
    exclude, hold = [], []
    for node in state.nodes.values():
        if (node.admin == "draining" or node.id in drained
                or (node.status == "down" and now - node.status_since >= delay)):
            exclude.append(node.id)
        elif node.admin == "cordoned" or node.status != "up":
            hold.append(node.id)
    pinned = frozenset((m.resource, m.partition) for m in state.moves.values())
    return Inputs(frozenset(exclude), frozenset(hold), pinned)


def planning_view(state: ClusterState) -> ClusterState:
    """``state`` with every pending move as if completed (target in place of source). Shares
    everything with ``state`` except the partitions with a pending move (copied): never mutate
    the result."""
    if not state.moves:
        return state
    resources = dict(state.resources)
    copied: dict[str, list[Partition]] = {}
    for move in state.moves.values():
        res = state.resources[move.resource]
        parts = copied.get(move.resource)
        if parts is None:
            parts = copied[move.resource] = list(res.partitions)
            resources[move.resource] = Resource(res.name, res.replication_factor, parts, res.created_at)
        old = parts[move.partition]
        replicas = list(old.replicas)
        if move.from_node is None:
            replicas.append(move.to_node)
        else:
            replicas[replicas.index(move.from_node)] = move.to_node
        leader = move.to_node if old.leader in (None, move.from_node) else old.leader
        parts[move.partition] = Partition(replicas, leader, old.epoch)
    return ClusterState(revision=state.revision, nodes=state.nodes, resources=resources,
                        last_time=state.last_time, leader_term=state.leader_term,
                        rebalance=state.rebalance)


def plan_for(state: ClusterState, given: Inputs) -> Plan:
    """The plan for ``state`` told ``given`` (see :func:`inputs`)."""
    return plan_rebalance(planning_view(state), exclude=given.exclude, hold=given.hold,
                          pinned=given.pinned, balance_metric=balance_metrics(state))


def balance_metrics(state: ClusterState) -> dict[str, str]:
    """Resource -> the node metric it balances on, for the resources that chose one."""
    return {name: res.balance_metric for name, res in state.resources.items()
            if res.balance_metric is not None}


def wanted(plan: Plan, state: ClusterState, pinned: Iterable[tuple[str, int]] = ()) -> list[Move]:
    """The plan's moves the rebalancer should make: repairs always, the rest only during a run;
    never on a partition with a pending move."""
    skip = frozenset(pinned) | {(m.resource, m.partition) for m in state.moves.values()}
    running = state.rebalance.run is not None
    return [m for m in plan.moves if (m.resource, m.partition) not in skip
            and (running or m.reason in REPAIR_REASONS)]


def admissible(moves: Sequence[Move], state: ClusterState) -> list[Move]:
    """The moves to start now, in order, within the throttles (pending moves counted; at most one
    per partition)."""
    settings = state.rebalance
    room = settings.max_moves - len(state.moves)
    per_node = state.moves_per_node()
    seen: set[tuple[str, int]] = set()
    out = []
    for move in moves:
        if room <= 0:
            break
        ends = [n for n in (move.from_node, move.to_node) if n is not None]
        key = (move.resource, move.partition)
        if key in seen or any(per_node.get(n, 0) >= settings.max_moves_per_node for n in ends):
            continue
        seen.add(key)
        for n in ends:
            per_node[n] = per_node.get(n, 0) + 1
        room -= 1
        out.append(move)
    return out


def waves(moves: Iterable[tuple[str | None, str]], max_moves: int, max_per_node: int) -> int:
    """How many rounds of moves (``(from, to)`` pairs) the throttles need at least."""
    total, per_node = 0, {}
    for frm, to in moves:
        total += 1
        for n in (frm, to):
            if n is not None:
                per_node[n] = per_node.get(n, 0) + 1
    if not total:
        return 0
    busiest = max(per_node.values(), default=0)
    return max(math.ceil(total / max_moves), math.ceil(busiest / max_per_node))


def eta_seconds(state: ClusterState, remaining: Sequence[Move], now: float) -> float | None:
    """Seconds until the pending moves and ``remaining`` ones are done (module doc); None before
    any move has completed, 0.0 when nothing is left."""
    pairs = [(m.from_node, m.to_node) for m in state.moves.values()]
    pairs += [(m.from_node, m.to_node) for m in remaining]
    settings = state.rebalance
    rounds = waves(pairs, settings.max_moves, settings.max_moves_per_node)
    if not rounds:
        return 0.0
    mean = settings.mean_move_seconds()
    if mean is None:
        return None
    # The wave in progress has been running since its oldest pending move started.
    started = min((m.started_at for m in state.moves.values()), default=now)
    return max(0.0, rounds * mean - max(0.0, now - started))


def progress(state: ClusterState, plan: Plan, given: Inputs, now: float) -> dict[str, Any]:
    """What ``GET /v1/rebalance`` and ``hacoord status`` show: settings, maintenance, the run,
    pending moves (with their age), the moves still to start, and the ETA."""
    settings = state.rebalance
    todo = wanted(plan, state, given.pinned)
    pending = [{**m.to_dict(), "age": max(0.0, now - m.started_at)} for m in state.moves.values()]
    return {
        "revision": state.revision,
        "settings": {"max_moves_per_node": settings.max_moves_per_node,
                     "max_moves": settings.max_moves, "rereplicate_after": settings.rereplicate_after},
        "maintenance": settings.maintenance,
        "run": settings.run,
        "last_run": settings.last_run,
        "pending": pending,
        "remaining": len(todo),
        "remaining_leader_changes": len(plan.leader_changes) if settings.run is not None else 0,
        # Balance moves a run would make (without one only repairs are made).
        "balance_moves_available": 0 if settings.run is not None else len(plan.moves) - len(todo),
        "completed_total": settings.completed,
        "mean_move_seconds": settings.mean_move_seconds(),
        "eta_seconds": eta_seconds(state, todo, now),
        "exclude": sorted(given.exclude),
        "hold": sorted(given.hold),
        "stuck": [s.to_dict() for s in plan.stuck[:100]],
    }
