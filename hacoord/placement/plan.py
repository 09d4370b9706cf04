"""What a rebalance plan is made of: replica moves, leadership changes, the rules it could not
satisfy, its figures (:class:`Plan`), and the reasons a move or a leadership change gives.

Plain frozen data, JSON-ready through ``to_dict``; :func:`hacoord.placement.rebalance.plan_rebalance`
makes it (see that module for what each reason means).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hacoord.placement.balance import Figures, LowerBound, Targets

#: Move reason of the metric balance (:mod:`hacoord.placement.metric`).
METRIC_REASON = "metric_overloaded"
#: Move reasons, in the order the planner considers them.
MOVE_REASONS = ("node_down", "node_excluded", "node_unknown", "under_replicated", "zone_spread",
                "overloaded", "underloaded", "chain", METRIC_REASON)
#: Leadership change reasons.
LEADER_REASONS = ("leader_down", "leader_excluded", "leader_unknown", "leader_moved", "no_leader",
                  "leader_balance")


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
class MetricFigures:
    """How even one metric group is over the ``nodes`` eligible nodes: the largest and smallest
    ``load / capacity`` over the mean, as the state is (``before``) and as planned (``after``, by
    the estimate). 1.0 is perfect; balancing stops within
    :data:`~hacoord.placement.metric.METRIC_TOLERANCE` of it."""

    metric: str
    resources: tuple[str, ...]
    nodes: int
    max_over_mean_before: float
    max_over_mean_after: float
    min_over_mean_before: float
    min_over_mean_after: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                ((k, getattr(self, k)) for k in self.__dataclass_fields__)}


@dataclass(frozen=True)
class Plan:
    """The moves, leadership changes and figures of one rebalance.

    ``lower_bound`` is the least number of moves any plan needs (balance.LowerBound, detailed in
    ``bound``); ``before``/``after`` are the balance figures of the current and planned assignment
    against ``targets`` (the replica targets of the planned cluster, over the eligible nodes and
    the replicas of resources balanced by count); ``metrics`` the same for each metric group.
    ``exclude``, ``hold``, ``pinned`` and ``balance_metric`` are the arguments the plan was made
    with (nodes the state does not know left out).
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
    hold: tuple[str, ...] = ()
    pinned: tuple[tuple[str, int], ...] = ()
    balance_metric: tuple[tuple[str, str], ...] = ()
    metrics: tuple[MetricFigures, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "moves": [m.to_dict() for m in self.moves],
            "leader_changes": [c.to_dict() for c in self.leader_changes],
            "lower_bound": self.lower_bound,
            "bound": self.bound.to_dict(),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "exclude": list(self.exclude),
            "hold": list(self.hold),
            "pinned": [list(p) for p in self.pinned],
            "balance_metric": dict(self.balance_metric),
            "metrics": [m.to_dict() for m in self.metrics],
            "stuck": [s.to_dict() for s in self.stuck],
        }
