"""Why a partition's replicas are where they are, and why a plan moves them or not.

:func:`explain` returns plain JSON-ready data (strings, numbers, booleans, lists, dicts) for one
partition: per replica, the placement rules it meets, its node's load against its target (or, for
a resource that balances on a node metric, the node's metric per capacity), the node the planner
would pick next for it (the runner-up) and why that node does not hold it; what the resource
balances on; and, given a :class:`~hacoord.placement.plan.Plan`, whether the plan touches the
partition and why. Nodes the plan holds (cordoned, or waiting before re-replication) keep their
replicas and are never a runner-up. Pure: it reads the state and the plan, and changes neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hacoord.core.model import ClusterState, Node
from hacoord.placement.balance import Targets, eligible_nodes, node_rank, replica_targets
from hacoord.placement.estimate import reported
from hacoord.placement.metric import METRIC_TOLERANCE
from hacoord.placement.plan import Plan
from hacoord.placement.rebalance import plan_rebalance

REASON_TEXT = {
    "node_down": "its node is down",
    "node_excluded": "its node is being drained (excluded)",
    "node_unknown": "its node is not registered",
    "under_replicated": "the partition had fewer replicas than it wants",
    "zone_spread": "the partition spanned fewer zones than it should",
    "overloaded": "its node held more replicas than its target allows",
    "underloaded": "the destination held fewer replicas than its target asks",
    "chain": "a step in a chain of moves that relieves an overloaded or underloaded node",
    "metric_overloaded": ("the resource balances on a node metric: its node held more of it per capacity "
                          f"than {round(100 * METRIC_TOLERANCE)}% above the mean (or the destination "
                          "that much less)"),
    "leader_down": "the leader's node is down",
    "leader_excluded": "the leader's node is being drained (excluded)",
    "leader_unknown": "the leader's node is not registered",
    "leader_moved": "the leader's replica moves away",
    "no_leader": "the partition had no leader",
    "leader_balance": "leaderships are balanced across nodes",
}

_HELD = "held (cordoned, or its re-replication waits): keeps its replicas, takes no new ones"


def _ratio(count: int, share: float) -> float | None:
    return round(count / share, 4) if share > 0 else None


@dataclass(frozen=True)
class _View:
    """What explaining one partition needs to know of the cluster."""

    state: ClusterState
    eligible: dict[str, Node]  # up, neither excluded nor held: may take replicas
    good: dict[str, Node]  # eligible or held: replicas there count
    excluded: frozenset[str]
    spread_wanted: int
    metric: str | None
    score: Callable[[str], dict[str, Any]]
    order: Callable[[Node], Any]  # runner-up order, best first


def explain(state: ClusterState, resource: str, partition: int, plan: Plan | None = None, *,
            exclude: Iterable[str] | None = None, hold: Iterable[str] | None = None,
            balance_metric: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Explain ``resource``/``partition`` in ``state`` with ``exclude`` drained, ``hold`` held and
    resources balancing on ``balance_metric`` (each by default the plan's, else none). Raises
    KeyError/IndexError for an unknown resource or partition."""
    res = state.resources[resource]
    part = res.partitions[partition]

    def given(value: Any, planned: Any) -> Any:
        return planned if value is None and plan is not None else (value or ())

    excluded = frozenset(given(exclude, plan and plan.exclude))
    held = frozenset(given(hold, plan and plan.hold)) - excluded
    metric_of = dict(given(balance_metric, plan and plan.balance_metric))
    metric = metric_of.get(resource)
    nodes = eligible_nodes(state, excluded | held)
    eligible = {n.id: n for n in nodes}
    good = dict(eligible, **{n: state.nodes[n] for n in sorted(held) if n in state.nodes})
    wanted = min(res.replication_factor, len(good))
    zones = {n.zone for n in nodes} | {good[n].zone for n in part.replicas if n in held and n in good}
    spread_wanted = min(wanted, len(zones))
    if plan is not None:
        targets = plan.targets
    elif held or metric_of:
        targets = plan_rebalance(state, exclude=excluded, hold=held, balance_metric=metric_of).targets
    else:
        targets = replica_targets(state, excluded)
    counts = {n: 0 for n in state.nodes}
    for name, other in state.resources.items():
        if name not in metric_of:
            for p in other.partitions:
                for n in p.replicas:
                    counts[n] = counts.get(n, 0) + 1
    score, order = (_metric_score(metric, nodes) if metric is not None else _count_score(targets, counts))
    view = _View(state, eligible, good, excluded, spread_wanted, metric, score, order)

    kept = [n for n in part.replicas if n in good]
    used = sorted({good[n].zone for n in kept})
    out: dict[str, Any] = {
        "resource": resource,
        "partition": partition,
        "replication_factor": res.replication_factor,
        "wanted": wanted,
        "replicas_on_eligible_nodes": len(kept),
        "zones_required": spread_wanted,
        "zones_used": used,
        "leader": part.leader,
        "epoch": part.epoch,
        "excluded": sorted(excluded),
        "held": sorted(held & set(state.nodes)),
        "balance": ({"dimension": "metric", "metric": metric,
                     "detail": f"balances on node metric {metric!r} per capacity, not on replica count"}
                    if metric is not None else {"dimension": "replicas",
                                                "detail": "balances on replica count per capacity"}),
        "replicas": [_replica(view, part.replicas, n, part.leader == n) for n in part.replicas],
    }
    if plan is not None:
        out["plan"] = _plan_part(plan, resource, partition, part, kept, wanted, len(used), view, targets,
                                 counts)
    return out


def _count_score(targets: Targets, counts: dict[str, int]) -> tuple[Callable, Callable]:
    at = {n: k for k, n in enumerate(targets.nodes)}

    def score(node_id: str) -> dict[str, Any]:
        k = at[node_id]
        c = counts.get(node_id, 0)
        return {"replicas": c, "target": targets.target[k], "low": targets.low[k], "high": targets.high[k],
                "share": round(targets.share[k], 3), "load": _ratio(c, targets.share[k])}

    def order(n: Node) -> tuple[int, int, float, int]:
        s = score(n.id)
        c = s["replicas"]
        tier = 0 if c < s["low"] else (1 if c < s["high"] else 2)
        return (tier, c - s["low"], (c + 1) / n.capacity, -node_rank(n.id))

    return score, order


def _metric_score(metric: str, nodes: list[Node]) -> tuple[Callable, Callable]:
    """Scores of a resource balancing on ``metric``: each node's reported value per capacity
    against the mean over the eligible ``nodes`` (a node that does not report counts as 0)."""
    value = {n.id: reported(n.metrics.get(metric)) for n in nodes}
    capacity = {n.id: n.capacity for n in nodes}
    whole = sum(capacity.values())
    mean = sum(v or 0.0 for v in value.values()) / whole if whole > 0 else 0.0

    def score(node_id: str) -> dict[str, Any]:
        v = value[node_id]
        per = (v or 0.0) / capacity[node_id]
        return {"metric": metric, "value": v, "per_capacity": round(per, 4),
                "over_mean": round(per / mean, 4) if mean > 0 else None}

    def order(n: Node) -> tuple[float, int]:
        return ((value[n.id] or 0.0) / n.capacity, -node_rank(n.id))

    return score, order


def _replica(view: _View, replicas: list[str], node_id: str, leads: bool) -> dict[str, Any]:
    node = view.state.nodes.get(node_id)
    held = node_id in view.good and node_id not in view.eligible
    if node is None:
        why_not = "it is not a registered node"
    elif node_id in view.excluded:
        why_not = "it is excluded (draining)"
    elif held:
        why_not = None
    elif node.status != "up":
        why_not = f"its status is {node.status!r}"
    else:
        why_not = None
    others = [view.good[n].zone for n in replicas if n != node_id and n in view.good]
    zone = node.zone if node is not None else None
    # Shares no zone with another replica, or the partition has more replicas than it needs zones.
    zone_ok = node_id in view.good and (zone not in others or len({*others, zone}) >= view.spread_wanted)
    entry: dict[str, Any] = {
        "node": node_id,
        "zone": zone,
        "leader": leads,
        "held": held,
        "constraints": {
            "eligible": why_not is None,
            "eligible_detail": why_not or (f"{_HELD}; status {node.status!r}" if held and node is not None
                                           else "up and not excluded"),
            "distinct_node": replicas.count(node_id) == 1,
            "zone_spread": bool(zone_ok),
        },
        "score": view.score(node_id) if node_id in view.eligible else None,
    }
    if held:
        entry["runner_up"] = {"node": None, "why_not": "its node is held: the replica stays where it is"}
    else:
        entry["runner_up"] = _runner_up(view, replicas, node_id, entry["score"])
    return entry


def _fits_zone(view: _View, replicas: list[str], src: str, dst_zone: str) -> bool:
    """The planner's zone rule for moving ``src``'s replica into ``dst_zone``: never lower the
    partition's zone spread; a replica leaving a node that may not hold it goes to a zone the
    partition lacks while it spans fewer zones than it should."""
    others = [view.good[n].zone for n in replicas if n != src and n in view.good]
    if src not in view.good:
        return dst_zone not in others or len(set(others)) >= view.spread_wanted
    src_zone = view.good[src].zone
    return src_zone == dst_zone or src_zone in others or dst_zone not in others


def _runner_up(view: _View, replicas: list[str], node_id: str, score: dict[str, Any] | None
               ) -> dict[str, Any] | None:
    """The node the planner would choose for this replica if it had to move, and why it does not
    hold it."""
    candidates = [n for n in view.eligible.values()
                  if n.id not in replicas and _fits_zone(view, replicas, node_id, n.zone)]
    if not candidates:
        return {"node": None, "why_not": "no other eligible node can take it without holding two replicas "
                                         "of the partition or lowering its zone spread"}
    best = min(candidates, key=view.order)
    theirs = view.score(best.id)
    if score is None:
        why = "it is where this replica goes: its current node may not hold replicas"
    elif view.metric is not None:
        why = (f"it holds {theirs['per_capacity']} {view.metric} per capacity against this node's "
               f"{score['per_capacity']}: replicas of this resource move only while some eligible node is "
               f"more than {round(100 * METRIC_TOLERANCE)}% from the mean, and only if the move narrows "
               "the gap")
    elif score["replicas"] > score["high"] and theirs["replicas"] < theirs["high"]:
        why = (f"it has room ({theirs['replicas']} of at most {theirs['high']}) and this node is over its "
               f"target ({score['replicas']} > {score['high']}): a rebalance moves some replica of this "
               "node, not necessarily this one")
    elif theirs["replicas"] < theirs["low"]:
        why = (f"it is under its target ({theirs['replicas']} < {theirs['low']}): a rebalance fills it, "
               "from this node only if no node over its target can give")
    else:
        why = (f"a move costs a data copy and would fix nothing: this node holds {score['replicas']} "
               f"within [{score['low']}, {score['high']}] and {best.id} holds {theirs['replicas']} "
               f"within [{theirs['low']}, {theirs['high']}]")
    return {"node": best.id, "zone": best.zone, "score": theirs, "why_not": why}


def _plan_part(plan: Plan, resource: str, partition: int, part: Any, kept: list[str], wanted: int,
               zones_used: int, view: _View, targets: Targets, counts: dict[str, int]) -> dict[str, Any]:
    moves = [m for m in plan.moves if m.resource == resource and m.partition == partition]
    changes = [c for c in plan.leader_changes if c.resource == resource and c.partition == partition]
    stuck = [s.to_dict() for s in plan.stuck if s.resource == resource and s.partition == partition]
    out: dict[str, Any] = {
        "moves": [dict(m.to_dict(), why=REASON_TEXT.get(m.reason, m.reason)) for m in moves],
        "leader_change": [dict(c.to_dict(), why=REASON_TEXT.get(c.reason, c.reason)) for c in changes],
        "moved": bool(moves),
        "stuck": stuck,
    }
    if moves:
        out["why"] = "; ".join(f"{m.from_node or 'a new replica'} -> {m.to_node}: "
                               f"{REASON_TEXT.get(m.reason, m.reason)}" for m in moves)
        return out
    facts = [f"{len(kept)} of {wanted} replicas on eligible or held nodes",
             f"{zones_used} of {view.spread_wanted} zones"]
    at = {n: k for k, n in enumerate(targets.nodes)}
    busy = [n for n in part.replicas if n in at and counts.get(n, 0) > targets.high[at[n]]]
    if (resource, partition) in plan.pinned:
        out["why"] = "not moved: a move of this partition is in flight (pinned), so the plan leaves it alone"
    elif stuck:
        out["why"] = "not moved: " + "; ".join(s["reason"] for s in stuck)
    elif view.metric is not None:
        out["why"] = ("not moved: " + ", ".join(facts) + f"; the resource balances on {view.metric!r}, and "
                      "the plan moved other replicas or found every eligible node within "
                      f"{round(100 * METRIC_TOLERANCE)}% of the mean")
    elif busy:
        out["why"] = ("not moved: " + ", ".join(facts) + f"; {', '.join(busy)} had to give replicas up, "
                      "and the plan moved other partitions (it moves as few as it can, preferring "
                      "followers and replicas it had already placed)")
    else:
        out["why"] = ("not moved: " + ", ".join(facts) + "; none of its nodes is over its target, so "
                      "moving it would only cost a data copy")
    leader = part.leader
    if leader is not None and not changes:
        if leader in view.eligible:
            out["leader_why"] = ("leader kept: it is an eligible replica and its node is within its "
                                 "leadership range")
        elif leader in view.good and leader in part.replicas:
            out["leader_why"] = "leader kept: a held node keeps the leaderships it has while it is not down"
        else:
            out["leader_why"] = "leader kept: no eligible replica can take the leadership"
    return out
