"""Why a partition's replicas are where they are, and why a plan moves them or not.

:func:`explain` returns plain JSON-ready data (strings, numbers, booleans, lists, dicts) for one
partition: per replica, the placement rules it meets, its node's load against its target, the
node the planner would pick next for it (the runner-up) and why that node does not hold it; and,
given a :class:`~hacoord.placement.rebalance.Plan`, whether the plan touches the partition and why.
Pure: it reads the state and the plan, and changes neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hacoord.core.model import ClusterState
from hacoord.placement.balance import eligible_nodes, node_rank, replica_targets
from hacoord.placement.rebalance import Plan

REASON_TEXT = {
    "node_down": "its node is down",
    "node_excluded": "its node is being drained (excluded)",
    "node_unknown": "its node is not registered",
    "under_replicated": "the partition had fewer replicas than it wants",
    "zone_spread": "the partition spanned fewer zones than it should",
    "overloaded": "its node held more replicas than its target allows",
    "underloaded": "the destination held fewer replicas than its target asks",
    "chain": "a step in a chain of moves that relieves an overloaded or underloaded node",
    "leader_down": "the leader's node is down",
    "leader_excluded": "the leader's node is being drained (excluded)",
    "leader_unknown": "the leader's node is not registered",
    "leader_moved": "the leader's replica moves away",
    "no_leader": "the partition had no leader",
    "leader_balance": "leaderships are balanced across nodes",
}


def _ratio(count: int, share: float) -> float | None:
    return round(count / share, 4) if share > 0 else None


def explain(state: ClusterState, resource: str, partition: int, plan: Plan | None = None, *,
            exclude: Iterable[str] | None = None) -> dict[str, Any]:
    """Explain ``resource``/``partition`` in ``state`` (with ``exclude`` drained: by default the
    plan's, else none). Raises KeyError/IndexError for an unknown resource or partition."""
    res = state.resources[resource]
    part = res.partitions[partition]
    excluded = frozenset(plan.exclude if exclude is None and plan is not None else (exclude or ()))
    nodes = eligible_nodes(state, excluded)
    eligible = {n.id: n for n in nodes}
    zones = sorted({n.zone for n in nodes})
    wanted = min(res.replication_factor, len(nodes))
    spread_wanted = min(wanted, len(zones))
    targets = plan.targets if plan is not None else replica_targets(state, excluded)
    at = {n: k for k, n in enumerate(targets.nodes)}
    counts = state.replica_counts()

    def load(node_id: str) -> dict[str, Any]:
        k = at[node_id]
        c = counts.get(node_id, 0)
        return {"replicas": c, "target": targets.target[k], "low": targets.low[k], "high": targets.high[k],
                "share": round(targets.share[k], 3), "load": _ratio(c, targets.share[k])}

    kept = [n for n in part.replicas if n in eligible]
    used = sorted({eligible[n].zone for n in kept})
    replicas = [_replica(state, part.replicas, node_id, part.leader == node_id, eligible, excluded,
                         spread_wanted, load) for node_id in part.replicas]
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
        "replicas": replicas,
    }
    if plan is not None:
        out["plan"] = _plan_part(plan, resource, partition, part.replicas, part.leader, kept, wanted,
                                 len(used), spread_wanted, targets, at, counts)
    return out


def _replica(state: ClusterState, replicas: list[str], node_id: str, leads: bool, eligible: dict,
             excluded: frozenset[str], spread_wanted: int, load: Any) -> dict[str, Any]:
    node = state.nodes.get(node_id)
    if node is None:
        why_not = "it is not a registered node"
    elif node_id in excluded:
        why_not = "it is excluded (draining)"
    elif node.status != "up":
        why_not = f"its status is {node.status!r}"
    else:
        why_not = None
    others = [eligible[n].zone for n in replicas if n != node_id and n in eligible]
    zone = node.zone if node is not None else None
    # Shares no zone with another replica, or the partition has more replicas than it needs zones.
    zone_ok = node_id in eligible and (zone not in others or len({*others, zone}) >= spread_wanted)
    entry: dict[str, Any] = {
        "node": node_id,
        "zone": zone,
        "leader": leads,
        "constraints": {
            "eligible": why_not is None,
            "eligible_detail": why_not or "up and not excluded",
            "distinct_node": replicas.count(node_id) == 1,
            "zone_spread": bool(zone_ok),
        },
        "score": load(node_id) if node_id in eligible else None,
    }
    entry["runner_up"] = _runner_up(replicas, node_id, eligible, load, spread_wanted, entry["score"])
    return entry


def _fits_zone(replicas: list[str], src: str, dst_zone: str, eligible: dict, spread_wanted: int) -> bool:
    """The planner's zone rule for moving ``src``'s replica into ``dst_zone``: never lower the
    partition's zone spread; a replica leaving a node that may not hold it goes to a zone the
    partition lacks while it spans fewer zones than it should."""
    others = [eligible[n].zone for n in replicas if n != src and n in eligible]
    if src not in eligible:
        return dst_zone not in others or len(set(others)) >= spread_wanted
    src_zone = eligible[src].zone
    return src_zone == dst_zone or src_zone in others or dst_zone not in others


def _runner_up(replicas: list[str], node_id: str, eligible: dict, load: Any, spread_wanted: int,
               score: dict[str, Any] | None) -> dict[str, Any] | None:
    """The node the planner would choose for this replica if it had to move, and why it does not
    hold it."""
    candidates = [n for n in eligible.values()
                  if n.id not in replicas and _fits_zone(replicas, node_id, n.zone, eligible, spread_wanted)]
    if not candidates:
        return {"node": None, "why_not": "no other eligible node can take it without holding two replicas "
                                         "of the partition or lowering its zone spread"}

    def key(n: Any) -> tuple[int, int, float, int]:
        s = load(n.id)
        c = s["replicas"]
        tier = 0 if c < s["low"] else (1 if c < s["high"] else 2)
        return (tier, c - s["low"], (c + 1) / n.capacity, -node_rank(n.id))

    best = min(candidates, key=key)
    theirs = load(best.id)
    if score is None:
        why = "it is where this replica goes: its current node may not hold replicas"
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


def _plan_part(plan: Plan, resource: str, partition: int, replicas: list[str], leader: str | None,
               kept: list[str], wanted: int, zones_used: int, spread_wanted: int, targets: Any,
               at: dict[str, int], counts: dict[str, int]) -> dict[str, Any]:
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
    facts = [f"{len(kept)} of {wanted} replicas on eligible nodes",
             f"{zones_used} of {spread_wanted} zones"]
    busy = [n for n in replicas if n in at and counts.get(n, 0) > targets.high[at[n]]]
    if stuck:
        out["why"] = "not moved: " + "; ".join(s["reason"] for s in stuck)
    elif busy:
        out["why"] = ("not moved: " + ", ".join(facts) + f"; {', '.join(busy)} had to give replicas up, "
                      "and the plan moved other partitions (it moves as few as it can, preferring "
                      "followers and replicas it had already placed)")
    else:
        out["why"] = ("not moved: " + ", ".join(facts) + "; none of its nodes is over its target, so "
                      "moving it would only cost a data copy")
    if leader is not None and not changes:
        out["leader_why"] = ("leader kept: it is an eligible replica and its node is within its "
                             "leadership range" if leader in kept else
                             "leader kept: no eligible replica can take the leadership")
    return out
