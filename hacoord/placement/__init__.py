"""Placement: pure, deterministic decisions about where replicas live.

``place_resource`` places a new resource, ``replacements_for`` re-homes a leaving node's replicas,
``plan_rebalance`` plans the moves that restore balance after any change (with nodes drained,
held, partitions pinned while their moves are in flight, and resources balancing on a node
metric), ``explain`` says why a partition's replicas are where they are; ``balance`` holds the
targets and figures they share, ``metric`` the balancing on a node metric.
"""

from hacoord.placement.assign import place_resource, rendezvous, replacements_for
from hacoord.placement.balance import (
    DemandKey,
    Figures,
    LowerBound,
    Targets,
    lower_bound,
    replica_targets,
)
from hacoord.placement.explain import explain
from hacoord.placement.metric import METRIC_REASON, METRIC_TOLERANCE, MetricFigures
from hacoord.placement.rebalance import (
    LEADER_REASONS,
    MOVE_REASONS,
    LeaderChange,
    Move,
    Plan,
    Stuck,
    apply_plan,
    plan_rebalance,
)

__all__ = [
    "DemandKey", "Figures", "LEADER_REASONS", "LeaderChange", "LowerBound", "METRIC_REASON",
    "METRIC_TOLERANCE", "MOVE_REASONS", "MetricFigures", "Move", "Plan", "Stuck", "Targets", "apply_plan",
    "explain", "lower_bound", "place_resource", "plan_rebalance", "rendezvous", "replacements_for",
    "replica_targets",
]
