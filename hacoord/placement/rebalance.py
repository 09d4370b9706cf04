"""The rebalance planner: from the current assignment, the fewest replica moves (and leadership
changes) that restore every placement rule after a change.

Pure and deterministic: the same state and arguments give the same plan on any machine. Nodes are
visited in id order, resources in name order, and every remaining tie is broken by rendezvous
hashing of the node id (:func:`hacoord.placement.balance.node_rank`); nothing iterates over a set
of strings or uses ``hash()``. It never mutates the state it is given.

Nodes, as the caller describes them:

* *excluded* (``exclude``, drained): everything moves off; it takes nothing. Exclusion wins over
  ``hold``.
* *held* (``hold``: cordoned nodes, and nodes that are suspect or down whose re-replication the
  caller delays): its replicas count as good where they are, whatever its status (they count
  toward the partition's replicas and zone spread, and no move ever takes them off), but it gets
  no new replica and no new leadership, and it has no share (it is never over or under one). It
  keeps the leaderships it has unless its status is ``"down"`` (then they go to an eligible
  replica, reason ``leader_down``, if the partition has one); it is not a source of leadership
  balance either.
* *eligible*: up, neither excluded nor held. Only these take replicas and leaderships, and the
  replica and leadership targets are theirs.
* any other node (down or suspect, not held; or unknown): its replicas move to eligible nodes.

Partitions in ``pinned`` (a move of theirs is in flight) and partitions of resources outside
``resources`` are not touched (no move, no leadership change); their replicas count as they are.

Rules, for the eligible nodes, in order of precedence:

1. a partition wants ``min(replication_factor, eligible + held nodes)`` replicas, on distinct
   good (eligible or held) nodes; replicas on other nodes move to eligible ones, missing ones are
   added. A replica stays where it is when no eligible node can take it (it is reported in
   ``Plan.stuck``): the planner never lowers the number of copies.
2. its replicas span ``min(wanted, zones)`` zones, where ``zones`` counts the zones with eligible
   nodes and the other zones its held replicas use; no move ever lowers a partition's zone spread,
   and a partition short of zones gets a replica (never a held one) moved into a new one.
3. every eligible node ends within ``[low, high]`` of its share
   (:mod:`hacoord.placement.balance`): overloaded nodes give replicas to underloaded ones, cheapest
   first: re-homing a replica this plan already placed costs nothing (the two steps merge into one
   move), so such steps come first; then a direct move; then the cheapest chain of single-replica
   moves (each intermediate node gives one and takes one). Sources take turns, so that one source
   does not use up the destinations another source could reach only directly. The shares are
   those of the replicas the eligible nodes must hold: a partition's replicas on held nodes are
   subtracted from what it wants of them, and the zones they use need none of its replicas
   (:data:`hacoord.placement.balance.DemandKey`), so targets and lower bound stay exact.
4. resources in ``balance_metric`` balance on a node metric instead of replica count
   (:mod:`hacoord.placement.metric`): their replicas are repaired like all others (rules 1 and 2,
   the destination being the eligible node lowest in that metric per capacity), do not count
   toward rule 3, and are then moved until each eligible node's metric per capacity is within 10%
   of the mean, or no move helps.
5. leaders: among each partition's eligible replicas, balanced the same way against leadership
   targets (all resources, by count). Leadership changes are not data moves and are listed apart.

A partition moves only for one of those reasons, recorded in each move: ``node_down``,
``node_excluded``, ``node_unknown``, ``under_replicated``, ``zone_spread``, ``overloaded`` (its
source node held more than its ``high`` at that point of the plan, possibly because of replicas
the plan placed there first), ``underloaded`` (its destination held fewer than its ``low``),
``chain`` (an intermediate step of a chain that relieves an overloaded or underloaded node) or
``metric_overloaded`` (rule 4). Steps that move one partition twice are merged into one move.

The planner reads the state once (one pass over all replicas, into the integer-indexed
:class:`~hacoord.placement.view.View`) and then does a small amount of work per move on a
:class:`~hacoord.placement.draft.Draft` of the assignment; it never copies the state. This module
runs the phases in order, one module each: :mod:`~hacoord.placement.repair` (rules 1 and 2),
:mod:`~hacoord.placement.counts` (3), :mod:`~hacoord.placement.metric` (4) and
:mod:`~hacoord.placement.leaders` (5); the plan is made of :mod:`hacoord.placement.plan`'s types.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from hacoord.core.model import ClusterState
from hacoord.placement.balance import Figures, LowerBound, bound_for, figures, forced_replica, leader_targets
from hacoord.placement.counts import balance_counts
from hacoord.placement.draft import Draft
from hacoord.placement.leaders import balance_leaders
from hacoord.placement.metric import balance_metrics
from hacoord.placement.plan import Plan
from hacoord.placement.repair import repair
from hacoord.placement.view import View, scan


def _figures(view: View, counts: Sequence[int], lead: Sequence[int], sole: Sequence[int], stranded: int,
             replicas: Sequence[int]) -> Figures:
    """The balance figures of per-node ``counts``, leaderships ``lead`` (``sole``: partitions held
    alone) and good ``replicas``, over the eligible nodes of ``view``."""
    pick = view.eligible
    leaders = [lead[i] for i in pick]
    targets = view.targets
    goal = leader_targets(targets.nodes, targets.capacity, [replicas[i] for i in pick], sum(leaders),
                          [sole[i] for i in pick])
    return figures(targets, [counts[i] for i in pick], leaders, stranded, goal)


def _lower_bound(view: View) -> LowerBound:
    """The least number of moves any plan for ``view`` needs."""
    pos = {node: k for k, node in enumerate(view.eligible)}
    zone_of = [view.zone[i] for i in view.eligible]
    forced = []
    for kept, held_zones, wanted, zones, need in view.forced_slots:
        forced.extend([forced_replica([pos[r] for r in kept], zone_of, wanted, zones, held_zones)] * need)
    counts = view.dims[0].good
    return bound_for([counts[i] for i in view.eligible], view.targets, zone_of, forced, view.spread_short,
                     view.metric_forced)


def plan_rebalance(state: ClusterState, *, exclude: Iterable[str] = frozenset(),
                   resources: Collection[str] | None = None, hold: Iterable[str] = frozenset(),
                   pinned: Collection[tuple[str, int]] = frozenset(),
                   balance_metric: Mapping[str, str] | None = None) -> Plan:
    """The rebalance plan for ``state`` with the nodes in ``exclude`` drained.

    ``resources`` limits the partitions the plan may move (default: all), and ``pinned``
    (``(resource, partition)`` pairs, e.g. those with a move in flight) names partitions it may
    neither move nor change the leader of; the others count toward each node's load as they are.
    Nodes in ``hold`` keep their replicas (which count as good, whatever the node's status) but
    get no new replicas or leaderships; ``exclude`` wins over ``hold``. ``balance_metric`` maps a
    resource name to the node metric (``Node.metrics`` key) it balances on instead of replica
    count. The state is not modified. See the module doc for the rules.
    """
    excluded = frozenset(exclude)
    held = frozenset(hold) - excluded
    pins = frozenset((name, int(i)) for name, i in pinned)
    view, indexes = scan(state, excluded, None if resources is None else frozenset(resources), held, pins,
                         balance_metric)
    bound = _lower_bound(view)
    before = _figures(view, view.dims[0].good, view.lead_count, view.sole, view.stranded,
                      view.node_replicas())

    draft = Draft(view, indexes.parts)
    repair(draft)
    balance_counts(draft)
    balance_metrics(draft)
    leadership = balance_leaders(draft, indexes.led)

    after = _figures(view, draft.count, leadership.count, leadership.sole, draft.stranded(),
                     draft.node_replicas())
    return Plan(
        moves=tuple(draft.moves()),
        leader_changes=tuple(leadership.changes()),
        lower_bound=bound.total,
        before=before,
        after=after,
        bound=bound,
        targets=view.targets,
        exclude=tuple(sorted(excluded & set(state.nodes))),
        stuck=tuple(draft.stuck),
        leader_goal=leadership.goal,
        hold=tuple(sorted(held & set(state.nodes))),
        pinned=tuple(sorted(pins)),
        balance_metric=tuple(sorted((r, dim.metric) for dim in draft.metric_dims for r in dim.resources)),
        metrics=tuple(dim.figures(view.eligible, view.cap) for dim in draft.metric_dims),
    )
