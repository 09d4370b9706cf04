"""Placement: pure, deterministic decisions about where replicas live.

``place_resource`` places a new resource, ``replacements_for`` re-homes a leaving node's replicas,
``plan_rebalance`` plans the moves that restore balance after any change (with nodes drained,
held, partitions pinned while their moves are in flight, and resources balancing on a node
metric), ``explain`` says why a partition's replicas are where they are; ``balance`` holds the
targets and figures they share.

``rebalance`` runs the planner's phases, one module each, over the ``view`` it reads the state
into (node metrics through ``estimate``) and the ``draft`` of the assignment they change:
``repair`` (missing replicas, zone spread), ``counts`` (balance by replica count), ``metric``
(balance on a node metric) and ``leaders``; ``plan`` holds the plan they return.
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
from hacoord.placement.metric import METRIC_TOLERANCE
from hacoord.placement.plan import (
    LEADER_REASONS,
    METRIC_REASON,
    MOVE_REASONS,
    LeaderChange,
    MetricFigures,
    Move,
    Plan,
    Stuck,
)
from hacoord.placement.rebalance import plan_rebalance

__all__ = [
    "DemandKey", "Figures", "LEADER_REASONS", "LeaderChange", "LowerBound", "METRIC_REASON",
    "METRIC_TOLERANCE", "MOVE_REASONS", "MetricFigures", "Move", "Plan", "Stuck", "Targets", "explain",
    "lower_bound", "place_resource", "plan_rebalance", "rendezvous", "replacements_for", "replica_targets",
]
