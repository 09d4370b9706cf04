"""Balancing on a node metric (``plan_rebalance(..., balance_metric=...)``): the planner evens out a
reported metric per capacity instead of replica counts for the resources that ask, without
breaking a placement rule, and never makes the spread of the metric wider.

Random clusters come from ``test_rebalance.clusters``; each partition gets a random size, and each
node reports, as the metric, the sizes of the replicas it holds (a few nodes report nothing).
"""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from hacoord.core import ClusterState, apply, commands
from hacoord.core.model import Node, Partition, Resource
from hacoord.placement import MetricFigures, explain, plan_rebalance
from hacoord.placement.metric import METRIC_TOLERANCE
from hacoord.testing import apply_plan
from tests.unit.test_rebalance import (
    PROPERTY,
    SCRIPT_STATE,
    clusters,
    copy,
    outputs_across_hash_seeds,
    uniform,
)
from tests.unit.test_rebalance_hold import assert_hold_rules

REPAIRS = ("node_down", "node_excluded", "node_unknown", "under_replicated", "zone_spread")
Sizes = dict[tuple[str, int], float]


def report(state: ClusterState, sizes: Sizes, metric_of: dict[str, str], silent=frozenset()) -> None:
    """Each node (but the ``silent`` ones) reports, for each metric, what the replicas of the
    resources balancing on it weigh there."""
    for node in state.nodes.values():
        node.metrics = {m: 0.0 for m in sorted(set(metric_of.values()))} if node.id not in silent else {}
    for name, metric in metric_of.items():
        for i, part in enumerate(state.resources[name].partitions):
            for node_id in part.replicas:
                node = state.nodes.get(node_id)
                if node is not None and node_id not in silent:
                    node.metrics[metric] += sizes[(name, i)]


def real_spread(state: ClusterState, metric: str, nodes: list[str]) -> tuple[float, float]:
    """(max, min) of reported metric per capacity over ``nodes``, over the mean."""
    whole = sum(state.nodes[n].capacity for n in nodes)
    mean = sum(state.nodes[n].metrics[metric] for n in nodes) / whole
    ratios = [state.nodes[n].metrics[metric] / state.nodes[n].capacity / mean for n in nodes]
    return max(ratios), min(ratios)


def setup(state: ClusterState, seed: int) -> tuple[ClusterState, Sizes, dict[str, str], frozenset[str]]:
    rng = random.Random(seed)
    state = copy(state)
    names = sorted(state.resources)
    chosen = rng.sample(names, rng.randrange(1, len(names) + 1))
    metric_of = {name: rng.choice(["disk", "cpu"]) for name in chosen}
    sizes = {(name, i): rng.choice([1, 1, 2, 3, 10]) * 1e6 * rng.uniform(0.5, 1.5)
             for name in names for i in range(len(state.resources[name].partitions))}
    silent = frozenset(n for n in sorted(state.nodes) if rng.random() < 0.1)
    report(state, sizes, metric_of, silent)
    return state, sizes, metric_of, silent


@PROPERTY
@given(clusters, st.integers(0, 2**32 - 1), st.booleans())
def test_metric_balance_keeps_the_rules_and_never_widens_the_spread(state, seed, extras):
    state = apply_plan(state, plan_rebalance(state))
    state, sizes, metric_of, _ = setup(state, seed)
    rng = random.Random(seed)
    ids = sorted(n for n, node in state.nodes.items() if node.status == "up")
    hold = set(rng.sample(ids, min(len(ids), 2))) if extras else set()
    keys = [(name, i) for name, res in sorted(state.resources.items()) for i in range(len(res.partitions))]
    pinned = set(rng.sample(keys, len(keys) // 10)) if extras else set()
    before = state.to_dict()
    plan = plan_rebalance(state, balance_metric=metric_of, hold=hold, pinned=pinned)
    assert state.to_dict() == before  # pure
    assert plan.lower_bound <= len(plan.moves)
    assert_hold_rules(state, plan, hold, set(), pinned, metric_of)
    for move in plan.moves:
        if move.resource in metric_of:
            assert move.reason in (*REPAIRS, "metric_overloaded"), move
        else:
            assert move.reason != "metric_overloaded", move
    assert sorted(m.metric for m in plan.metrics) == sorted(set(metric_of.values()))
    repaired = any(m.reason in REPAIRS for m in plan.moves if m.resource in metric_of)
    for fig in plan.metrics:
        if not repaired:  # the same replicas before and after: the spread never widens
            assert fig.max_over_mean_after <= fig.max_over_mean_before + 1e-9
            assert fig.min_over_mean_after >= fig.min_over_mean_before - 1e-9
        # It stops inside the band, or says why not.
        inside = (fig.max_over_mean_after <= 1 + METRIC_TOLERANCE + 1e-9
                  and fig.min_over_mean_after >= 1 - METRIC_TOLERANCE - 1e-9)
        assert inside or any(s.reason.startswith(f"metric {fig.metric}:") for s in plan.stuck)
    json.dumps(plan.to_dict())
    # Same input, same plan: twice, the mapping in another order, nodes in another order.
    assert plan_rebalance(state, balance_metric=metric_of, hold=hold, pinned=pinned) == plan
    shuffled = copy(state)
    order = list(shuffled.nodes.items())
    random.Random(seed).shuffle(order)
    shuffled.nodes = dict(order)
    assert plan_rebalance(shuffled, balance_metric=dict(reversed(list(metric_of.items()))), hold=hold,
                          pinned=pinned) == plan


@PROPERTY
@given(clusters, st.integers(0, 2**32 - 1), st.integers(0, 10**6))
def test_metric_resources_are_repaired_like_all_others(state, seed, pick):
    state = apply_plan(state, plan_rebalance(state))
    state, _, metric_of, _ = setup(state, seed)
    victim = sorted(state.nodes)[pick % len(state.nodes)]
    state.nodes[victim].status = "down"
    plan = plan_rebalance(state, balance_metric=metric_of)
    assert plan.lower_bound <= len(plan.moves)
    assert_hold_rules(state, plan, set(), set(), set(), metric_of)
    assert victim not in {m.to_node for m in plan.moves}


# --- examples -----------------------------------------------------------------------------------

def sized_cluster(nodes: int, partitions: int, seed: int = 7) -> tuple[ClusterState, Sizes]:
    state = apply_plan(uniform(nodes, 3, partitions, 3), plan_rebalance(uniform(nodes, 3, partitions, 3)))
    rng = random.Random(seed)
    sizes = {("res", i): rng.uniform(1, 3) * 1e9 for i in range(partitions)}
    return state, sizes


def test_an_empty_node_fills_up_to_the_band():
    state, sizes = sized_cluster(12, 600)
    assert apply(state, commands.RegisterNode(node_id="new", address="new:1", zone="z3")).ok
    report(state, sizes, {"res": "disk"}, silent={"new"})  # a new node may not report yet
    plan = plan_rebalance(state, balance_metric={"res": "disk"})
    assert plan.moves and all(m.reason == "metric_overloaded" for m in plan.moves)
    assert plan.stuck == () and "new" not in {m.from_node for m in plan.moves}
    (fig,) = plan.metrics
    assert fig.min_over_mean_before == 0 and fig.min_over_mean_after >= 1 - METRIC_TOLERANCE
    assert fig.max_over_mean_after <= 1 + METRIC_TOLERANCE
    # With what the nodes report once the plan is carried out, every node is near the mean.
    after = apply_plan(state, plan)
    report(after, sizes, {"res": "disk"})
    high, low = real_spread(after, "disk", sorted(after.nodes))
    assert high <= 1.15 and low >= 0.85


def test_nodes_with_many_replicas_still_balance():
    # 400 replicas a node: one replica moves a node's load by a quarter of a percent, far less
    # than the band; moves are still worth it, since together they fill the new node.
    state, sizes = sized_cluster(6, 800)
    assert apply(state, commands.RegisterNode(node_id="new", address="new:1", zone="z3")).ok
    report(state, sizes, {"res": "disk"})
    plan = plan_rebalance(state, balance_metric={"res": "disk"})
    (fig,) = plan.metrics
    assert len(plan.moves) > 100 and plan.stuck == ()
    assert fig.min_over_mean_after >= 1 - METRIC_TOLERANCE


def test_zone_spread_bounds_the_metric_balance():
    # RF 3 over 3 zones: only the new node's zone can give to it, and that zone holds a third of
    # the data over five nodes of thirteen; the planner gets as close as it can and says so.
    state, sizes = sized_cluster(12, 600)
    assert apply(state, commands.RegisterNode(node_id="new", address="new:1", zone="z1")).ok
    report(state, sizes, {"res": "disk"})
    plan = plan_rebalance(state, balance_metric={"res": "disk"})
    zone = {n.id: n.zone for n in state.nodes.values()}
    assert all(zone[m.from_node] == zone[m.to_node] for m in plan.moves if m.to_node == "new")
    (fig,) = plan.metrics
    assert fig.min_over_mean_after > 0.8 and fig.min_over_mean_after < 1 - METRIC_TOLERANCE
    assert [s.node for s in plan.stuck if s.reason.startswith("metric disk")]
    assert_hold_rules(state, plan, set(), set(), set(), {"res": "disk"})


def test_heavy_replicas_leave_the_heaviest_node_first():
    state, _ = sized_cluster(9, 270)
    heavy = "n004"
    sizes = {("res", i): (10e9 if heavy in p.replicas else 1e9)
             for i, p in enumerate(state.resources["res"].partitions)}
    report(state, sizes, {"res": "disk"})
    plan = plan_rebalance(state, balance_metric={"res": "disk"})
    (fig,) = plan.metrics
    assert fig.max_over_mean_before > 2 and fig.max_over_mean_after < fig.max_over_mean_before
    assert plan.moves[0].from_node == heavy or any(m.from_node == heavy for m in plan.moves)
    assert all(m.reason == "metric_overloaded" for m in plan.moves)
    # A replica count balance would not move anything here.
    assert plan_rebalance(state).moves == ()


def test_equal_sizes_are_estimated_exactly_and_nothing_moves_twice():
    state, _ = sized_cluster(10, 300)
    assert apply(state, commands.RegisterNode(node_id="new", address="new:1", zone="z0")).ok
    sizes = {("res", i): 2e9 for i in range(300)}
    report(state, sizes, {"res": "disk"})
    plan = plan_rebalance(state, balance_metric={"res": "disk"})
    assert plan.moves
    after = apply_plan(state, plan)
    report(after, sizes, {"res": "disk"})
    (fig,) = plan.metrics
    high, low = real_spread(after, "disk", sorted(after.nodes))
    assert abs(high - fig.max_over_mean_after) < 1e-9 and abs(low - fig.min_over_mean_after) < 1e-9
    assert plan_rebalance(after, balance_metric={"res": "disk"}).moves == ()


def test_count_and_metric_resources_balance_apart():
    state, _ = sized_cluster(9, 90)
    assert apply(state, commands.CreateResource(
        name="blobs", partitions=90, replication_factor=3,
        assignment=[["n000", "n001", "n002"]] * 90)).ok  # all on three nodes, one zone each
    sizes = {("blobs", i): 1e9 for i in range(90)}
    report(state, sizes, {"blobs": "disk"})
    plan = plan_rebalance(state, balance_metric={"blobs": "disk"})
    assert plan.targets.total == 270  # replicas of "res" only
    assert {m.resource for m in plan.moves} == {"blobs"}
    assert all(m.reason == "metric_overloaded" for m in plan.moves)
    assert plan.after.outside_range == 0
    assert plan.balance_metric == (("blobs", "disk"),)
    # Without the metric, "blobs" is balanced by count together with "res".
    counted = plan_rebalance(state)
    assert counted.targets.total == 540 and {m.reason for m in counted.moves} <= {"overloaded", "underloaded",
                                                                                   "chain"}


def test_a_down_node_of_a_metric_resource_counts_in_the_lower_bound():
    state, sizes = sized_cluster(9, 90)
    report(state, sizes, {"res": "disk"})
    state.nodes["n003"].status = "down"
    plan = plan_rebalance(state, balance_metric={"res": "disk"})
    on_down = sum(1 for p in state.resources["res"].partitions if "n003" in p.replicas)
    assert plan.bound.metric == on_down == plan.lower_bound
    assert sum(1 for m in plan.moves if m.from_node == "n003" and m.reason == "node_down") == on_down
    assert len(plan.moves) >= plan.lower_bound


def test_metric_figures_and_explain():
    state, sizes = sized_cluster(6, 30)
    report(state, sizes, {"res": "disk"})
    state.nodes["n000"].metrics["disk"] *= 3
    plan = plan_rebalance(state, balance_metric={"res": "disk"})
    (fig,) = plan.metrics
    assert isinstance(fig, MetricFigures) and fig.resources == ("res",) and fig.nodes == 6
    out = explain(state, "res", 0, plan)
    json.dumps(out)
    assert out["balance"]["dimension"] == "metric" and out["balance"]["metric"] == "disk"
    for r in out["replicas"]:
        assert r["score"]["metric"] == "disk"
        assert r["runner_up"]["node"] not in state.resources["res"].partitions[0].replicas
    assert explain(state, "res", 0)["balance"]["dimension"] == "replicas"
    assert explain(state, "res", 0, balance_metric={"res": "disk"})["balance"]["metric"] == "disk"


def test_nodes_that_do_not_report_carry_estimated_weights():
    state = ClusterState()
    for i in range(4):
        state.nodes[f"n{i}"] = Node(id=f"n{i}", address="n:1", zone=f"z{i}")
    state.resources["r"] = Resource("r", 1, [Partition([f"n{i % 2}"], f"n{i % 2}") for i in range(8)])
    state.nodes["n0"].metrics = {"disk": 40.0}  # four replicas of 10
    # n1 reports nothing: its four replicas weigh the mean, 10 each; n2 and n3 are empty.
    plan = plan_rebalance(state, balance_metric={"r": "disk"})
    (fig,) = plan.metrics
    assert fig.max_over_mean_before == 2 and fig.min_over_mean_before == 0
    assert fig.max_over_mean_after == 1 and fig.min_over_mean_after == 1
    assert len(plan.moves) == 4 and {m.to_node for m in plan.moves} == {"n2", "n3"}


PLAN_SCRIPT = SCRIPT_STATE + r"""
rng = random.Random(3)
for node in state.nodes.values():
    node.metrics = {"disk": rng.uniform(0, 1e12)}
plan = plan_rebalance(state, exclude={"n5"}, hold={"n3", "n7", "n8"}, pinned={("a", 1), ("b", 2), ("a", 7)},
                      balance_metric={"b": "disk"})
print(hashlib.sha256(json.dumps(plan.to_dict(), sort_keys=True).encode()).hexdigest(), len(plan.moves))
"""


def test_plans_with_every_argument_are_the_same_in_fresh_interpreters():
    (output,) = outputs_across_hash_seeds(PLAN_SCRIPT)
    assert len(output.split()) == 2 and int(output.split()[1]) > 0  # a digest, and moves to digest


def test_metrics_too_small_to_divide_by_plan_like_zero() -> None:
    """A node reporting a subnormal metric (5e-324: the mean load per capacity underflows to 0)
    once made every plan raise ZeroDivisionError; found by the API fuzzer."""
    state = ClusterState()
    for k in range(2):
        assert apply(state, commands.RegisterNode(node_id=f"n{k}", address="h:1", capacity=3.0)).ok
    assert apply(state, commands.SetNodeState(node_id="n0", metrics={"disk": 5e-324})).ok
    assert apply(state, commands.CreateResource(
        name="r", partitions=2, replication_factor=1, balance_metric="disk",
        assignment=[["n0"], ["n1"]])).ok
    plan = plan_rebalance(state, balance_metric={"r": "disk"})
    assert not plan.moves and all(m.max_over_mean_before == 1.0 for m in plan.metrics)
