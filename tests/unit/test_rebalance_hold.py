"""The planner's ``hold`` (cordoned nodes, and nodes whose re-replication waits) and ``pinned``
(partitions with a move in flight): what they may and may not do, on random clusters and on
examples.

Random clusters come from ``test_rebalance.clusters``; on each, a random set of nodes is held
(some of them suspect or down), sometimes one node is drained (possibly a held one: exclusion
wins), and some partitions are pinned.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import example, given
from hypothesis import strategies as st

from hacoord.core import ClusterState, apply, commands
from hacoord.core.model import Node, Partition, Resource
from hacoord.core.validate import validate
from hacoord.placement import explain, plan_rebalance
from hacoord.testing import apply_plan
from tests.unit.test_rebalance import (
    PROPERTY,
    assert_rules,
    build,
    clusters,
    copy,
    uniform,
    zones_allow,
)


def scenario(state: ClusterState, seed: int) -> tuple[ClusterState, set[str], set[str], set[tuple[str, int]]]:
    """A copy of ``state`` with some nodes to hold (a few of them suspect or down), maybe one
    node to drain, and some partitions pinned."""
    rng = random.Random(seed)
    state = copy(state)
    ids = sorted(state.nodes)
    hold = set(rng.sample(ids, rng.randrange(0, max(1, len(ids) // 5) + 1)))
    for node_id in sorted(hold):
        state.nodes[node_id].status = rng.choice(["up", "up", "suspect", "down"])
    exclude = set(rng.sample(ids, 1)) if rng.random() < 0.3 else set()
    keys = [(name, i) for name, res in sorted(state.resources.items()) for i in range(len(res.partitions))]
    pinned = set(rng.sample(keys, rng.randrange(0, len(keys) // 10 + 1)))
    return state, hold, exclude, pinned


def eligible_ids(state: ClusterState, hold: set[str], exclude: set[str]) -> set[str]:
    return {n.id for n in state.nodes.values() if n.status == "up" and n.id not in hold | exclude}


def assert_hold_rules(state: ClusterState, plan, hold: set[str], exclude: set[str],
                      pinned: set[tuple[str, int]], metric_of=()) -> None:
    """What a plan made with ``hold``/``exclude``/``pinned`` may do, and the rules of the state it
    leads to (for the partitions and nodes the plan does not report stuck). Resources in
    ``metric_of`` balance on a metric: they do not count toward the replica targets."""
    held = hold - exclude
    eligible = eligible_ids(state, hold, exclude)
    for move in plan.moves:
        assert move.to_node in eligible, move  # never onto a held (or any ineligible) node
        assert move.from_node not in held, move  # a held node never gives a replica away
        assert (move.resource, move.partition) not in pinned, move
    for change in plan.leader_changes:
        assert change.to_node in eligible, change
        assert (change.resource, change.partition) not in pinned, change
        if change.from_node in held:
            # A held node loses a leadership only when it is down.
            assert state.nodes[change.from_node].status == "down" and change.reason == "leader_down"
    assert not any(s.node in held and s.resource is None for s in plan.stuck)  # held: never under/over

    after = apply_plan(state, plan)
    assert validate(after) == []
    good = eligible | held
    stuck_parts = {(s.resource, s.partition) for s in plan.stuck}
    zone = {n.id: n.zone for n in state.nodes.values()}
    for name, res in state.resources.items():
        wanted = min(res.replication_factor, len(good))
        for i, (old, new) in enumerate(zip(res.partitions, after.resources[name].partitions, strict=True)):
            where = f"{name}/{i} {old.replicas} -> {new.replicas}"
            assert len(set(new.replicas)) == len(new.replicas), where
            # Held replicas stay where they are.
            assert [r for r in old.replicas if r in held] == [r for r in new.replicas if r in held], where
            if (name, i) in pinned:
                assert (new.replicas, new.leader) == (old.replicas, old.leader), where
                continue
            if (name, i) not in stuck_parts:
                kept = [r for r in new.replicas if r in good]
                assert len(kept) == wanted, where
                zones = {zone[r] for r in eligible} | {zone[r] for r in kept if r in held}
                assert len({zone[r] for r in kept}) == min(wanted, len(zones)), where
            if any(r in eligible for r in new.replicas):
                # The leader is eligible, or a held node that led before and is not down.
                assert new.leader in eligible or (new.leader == old.leader and new.leader in held
                                                  and state.nodes[new.leader].status != "down"), where
    complete = all(sum(1 for r in state.resources[name].partitions[i].replicas if r in good)
                   == min(state.resources[name].replication_factor, len(good)) for name, i in pinned)
    if not plan.stuck and complete:
        assert plan.after.outside_range == 0
        # The targets are those of the replicas the eligible nodes hold once the plan is done (a
        # pinned partition short of replicas counts for its missing ones but is not repaired).
        counts = Counter(r for name, res in after.resources.items() if name not in metric_of
                         for p in res.partitions for r in p.replicas if r in eligible)
        assert sum(plan.targets.target) == sum(counts.values())
        for k, node_id in enumerate(plan.targets.nodes):
            assert plan.targets.low[k] <= counts[node_id] <= plan.targets.high[k], node_id


@PROPERTY
@given(clusters, st.integers(0, 2**32 - 1), st.booleans())
# Pinned partitions led by the drained node once counted toward the leadership targets, which no
# plan could then reach: planning again moved more leaderships.
@example(build(seed=0, n=4, zones=1, skew=1.0, budget=3000, rfs=(3,), realistic=True), 0, False)
@example(build(seed=0, n=4, zones=1, skew=1.0, budget=3000, rfs=(3,), realistic=False), 0, False)
def test_hold_and_pinned_are_respected(state, seed, balanced):
    if balanced:
        state = apply_plan(state, plan_rebalance(state))
    state, hold, exclude, pinned = scenario(state, seed)
    before = state.to_dict()
    plan = plan_rebalance(state, exclude=exclude, hold=hold, pinned=pinned)
    assert state.to_dict() == before  # pure
    assert plan.lower_bound <= len(plan.moves) or plan.stuck
    assert plan.hold == tuple(sorted(hold - exclude))
    assert_hold_rules(state, plan, hold, exclude, pinned)
    # Planning again from the planned state changes nothing more.
    again = plan_rebalance(apply_plan(state, plan), exclude=exclude, hold=hold, pinned=pinned)
    assert again.moves == () and again.leader_changes == ()
    # Same input, same plan: twice, through a snapshot, arguments in another order, nodes
    # registered in another order.
    assert plan_rebalance(state, exclude=exclude, hold=hold, pinned=pinned) == plan
    shuffled = copy(state)
    order = list(shuffled.nodes.items())
    random.Random(seed).shuffle(order)
    shuffled.nodes = dict(order)
    assert plan_rebalance(shuffled, exclude=sorted(exclude, reverse=True), hold=sorted(hold, reverse=True),
                          pinned=sorted(pinned, reverse=True)) == plan


@PROPERTY
@given(clusters, st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_cordoned_node_does_not_spoil_an_added_node(state, pick, cordon):
    """Adding a node while another is cordoned: the cordoned node neither gives nor takes, and the
    plan stays near the lower bound."""
    balanced = apply_plan(state, plan_rebalance(state))
    ids = sorted(n for n, node in balanced.nodes.items() if node.status == "up")
    if len(ids) < 3:
        return
    held = ids[cordon % len(ids)]
    grown = copy(balanced)
    zones = sorted({n.zone for n in grown.nodes.values()})
    grown.nodes["added"] = Node(id="added", address="added:7000", zone=zones[pick % len(zones)])
    plan = plan_rebalance(grown, hold={held})
    assert_hold_rules(grown, plan, {held}, set(), set())
    assert plan.lower_bound <= len(plan.moves)
    assert all(m.to_node != held and m.from_node != held for m in plan.moves)
    if zones_allow(balanced, grown, (held,)):
        assert len(plan.moves) <= 1.05 * plan.lower_bound + 1, (len(plan.moves), plan.bound)


# --- examples -----------------------------------------------------------------------------------

def test_cordoning_a_balanced_node_moves_nothing():
    state = apply_plan(uniform(30, 3, 900, 3), plan_rebalance(uniform(30, 3, 900, 3)))
    plan = plan_rebalance(state, hold={"n004"})
    assert plan.moves == () and plan.leader_changes == () and plan.stuck == ()
    assert "n004" not in plan.targets.nodes
    # Drained instead: everything moves off.
    drained = plan_rebalance(state, exclude={"n004"}, hold={"n004"})
    assert drained.hold == () and drained.moves
    assert {m.from_node for m in drained.moves} == {"n004"}


def test_a_held_down_node_keeps_its_replicas_and_loses_its_leaderships():
    state = apply_plan(uniform(30, 3, 900, 3), plan_rebalance(uniform(30, 3, 900, 3)))
    state.nodes["n004"].status = "down"  # (apply would hand its leaderships over itself)
    led = sum(1 for p in state.resources["res"].partitions if p.leader == "n004")
    assert led > 0
    plan = plan_rebalance(state, hold={"n004"})
    assert plan.moves == () and plan.stuck == ()
    assert sum(1 for c in plan.leader_changes if c.from_node == "n004" and c.reason == "leader_down") == led
    assert plan.lower_bound == 0
    # Once the delay is over and the hold lifted, its replicas are re-created elsewhere.
    later = plan_rebalance(apply_plan(state, plan))
    assert later.moves and {m.from_node for m in later.moves} == {"n004"}
    assert all(m.reason == "node_down" for m in later.moves)
    # Suspect and held: keeps its leaderships too.
    state.nodes["n004"].status = "suspect"
    plan = plan_rebalance(state, hold={"n004"})
    assert plan.moves == () and not any(c.from_node == "n004" for c in plan.leader_changes)


def test_held_replicas_count_for_the_zone_spread():
    # Three zones, RF 3; the only node of zone c is cordoned. Partitions it holds keep it and need
    # one replica in each of a and b; partitions it does not hold want a and b only.
    state = ClusterState()
    for node_id, zone in [("a0", "a"), ("a1", "a"), ("b0", "b"), ("b1", "b"), ("c0", "c")]:
        state.nodes[node_id] = Node(id=node_id, address="n:1", zone=zone)
    parts = [Partition(["c0", "a0", "a1"], "c0"), Partition(["a0", "b0"], "a0"),
             Partition(["c0", "b0", "b1"], "b0")]
    state.resources["r"] = Resource("r", 3, parts)
    plan = plan_rebalance(state, hold={"c0"})
    after = apply_plan(state, plan)
    zones = [{state.nodes[r].zone for r in p.replicas} for p in after.resources["r"].partitions]
    assert zones[0] == {"a", "b", "c"} and zones[2] == {"a", "b", "c"}
    assert len(after.resources["r"].partitions[1].replicas) == 3  # a third replica, in a or b
    assert all(m.to_node != "c0" and m.from_node != "c0" for m in plan.moves)
    assert after.resources["r"].partitions[0].leader == "c0"  # a held, up node keeps its leadership
    assert_hold_rules(state, plan, {"c0"}, set(), set())


def test_a_partition_whose_only_zone_mates_are_held_is_reported():
    state = ClusterState()
    for node_id, zone in [("a0", "a"), ("a1", "a"), ("b0", "b")]:
        state.nodes[node_id] = Node(id=node_id, address="n:1", zone=zone)
    state.resources["r"] = Resource("r", 2, [Partition(["a0", "a1"], "a0")])
    plan = plan_rebalance(state, hold={"a0", "a1"})
    assert plan.moves == ()
    assert [s.reason for s in plan.stuck] == ["zone spread: the replicas sharing a zone are on held nodes"]
    # Hold only one of them: the other moves to zone b.
    plan = plan_rebalance(state, hold={"a0"})
    assert [(m.from_node, m.to_node, m.reason) for m in plan.moves] == [("a1", "b0", "zone_spread")]


def test_pinned_partitions_are_left_alone():
    state = uniform(9, 3, 27, 3)
    assert apply(state, commands.SetNodeState(node_id="n001", status="down")).ok
    on_down = [i for i, p in enumerate(state.resources["res"].partitions) if "n001" in p.replicas]
    pinned = {("res", i) for i in on_down[:2]}
    plan = plan_rebalance(state, pinned=pinned)
    touched = {(m.resource, m.partition) for m in plan.moves} | {
        (c.resource, c.partition) for c in plan.leader_changes}
    assert not touched & pinned
    assert {("res", i) for i in on_down} - pinned <= touched
    assert plan.pinned == tuple(sorted(pinned))
    assert_rules(apply_plan(state, plan_rebalance(state)))
    assert explain(state, "res", on_down[0], plan)["plan"]["why"].startswith("not moved: a move of this "
                                                                             "partition is in flight")


def test_explain_names_held_nodes():
    state = apply_plan(uniform(9, 3, 27, 3), plan_rebalance(uniform(9, 3, 27, 3)))
    plan = plan_rebalance(state, hold={"n000"})
    index = next(i for i, p in enumerate(state.resources["res"].partitions) if "n000" in p.replicas)
    out = explain(state, "res", index, plan)
    assert out["held"] == ["n000"]
    (entry,) = [r for r in out["replicas"] if r["node"] == "n000"]
    assert entry["constraints"]["eligible"] and entry["held"]
    assert "held" in entry["constraints"]["eligible_detail"]
    for r in out["replicas"]:
        assert r["runner_up"]["node"] != "n000"
