"""An oracle that applies a :class:`~hacoord.placement.plan.Plan` to a
:class:`~hacoord.core.model.ClusterState`, for tests and benches: the state a plan leads to, to
check the planner's rules against (production carries plans out move by move, through the
replicated commands)."""

from __future__ import annotations

from hacoord.core.model import ClusterState
from hacoord.placement.plan import Plan


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
