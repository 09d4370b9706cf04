"""Placement policy: distinct nodes, zone spread, capacity and leader balance, determinism, up
nodes first, and replacement plans for a node that leaves."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hacoord.core import ClusterState, apply, commands
from hacoord.core.validate import validate
from hacoord.placement import place_resource, replacements_for
from tests.unit.scenarios import build_state

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cluster(specs, order=None) -> ClusterState:
    """``specs``: (node_id, zone, capacity, status) tuples, registered in ``order`` (default as
    given) through ``apply`` so the state is a reachable one."""
    state = ClusterState()
    for node_id, zone, capacity, _ in (specs if order is None else [specs[i] for i in order]):
        assert apply(state, commands.RegisterNode(node_id=node_id, address=f"{node_id}:1", zone=zone,
                                                  capacity=capacity)).ok
    for node_id, _, _, status in specs:
        if status != "up":
            assert apply(state, commands.SetNodeState(node_id=node_id, status=status)).ok
    return state


def create(state: ClusterState, name: str, partitions: int, rf: int) -> list[list[str]]:
    assignment = place_resource(state, name, partitions, rf)
    outcome = apply(state, commands.CreateResource(name=name, partitions=partitions,
                                                   replication_factor=rf, assignment=assignment))
    assert outcome.ok, outcome
    return assignment


node_specs = st.lists(
    st.tuples(st.sampled_from(["z0", "z1", "z2", "z3"]), st.sampled_from([0.5, 1, 1, 2, 3]),
              st.sampled_from(["up", "up", "up", "down"])),
    min_size=1, max_size=9,
).map(lambda rows: [(f"n{i}", zone, cap, status) for i, (zone, cap, status) in enumerate(rows)])


@PROPERTY_SETTINGS
@given(node_specs, st.integers(1, 5), st.integers(1, 20), st.integers(0, 2))
def test_replicas_on_distinct_known_nodes(specs, rf, partitions, existing):
    state = cluster(specs)
    for k in range(existing):  # some load already there
        create(state, f"pre{k}", 3, min(rf, len(specs)))
    assignment = place_resource(state, "res", partitions, rf)
    assert len(assignment) == partitions
    for replicas in assignment:
        assert len(replicas) == min(rf, len(state.nodes))
        assert len(set(replicas)) == len(replicas)
        assert all(n in state.nodes for n in replicas)


@PROPERTY_SETTINGS
@given(node_specs, st.integers(1, 4), st.integers(1, 20))
def test_spreads_across_zones_when_there_are_enough(specs, rf, partitions):
    state = cluster(specs)
    up_zones = {n.zone for n in state.nodes.values() if n.status == "up"}
    assignment = place_resource(state, "res", partitions, rf)
    for replicas in assignment:
        zones = [state.nodes[n].zone for n in replicas]
        if len(up_zones) >= rf:
            assert len(set(zones)) == rf, (replicas, zones)
        else:
            # Not enough zones: still as many distinct zones as the cluster offers, up to rf.
            all_zones = {n.zone for n in state.nodes.values()}
            assert len(set(zones)) >= min(len(up_zones), rf, len(all_zones))


@PROPERTY_SETTINGS
@given(node_specs, st.integers(1, 5), st.integers(1, 20))
def test_never_on_a_down_node_while_up_nodes_suffice(specs, rf, partitions):
    state = cluster(specs)
    up = {n.id for n in state.nodes.values() if n.status == "up"}
    for replicas in place_resource(state, "res", partitions, rf):
        if len(up) >= rf:
            assert set(replicas) <= up
        else:
            assert up <= set(replicas)  # every up node first, then down ones to fill the slots
        if set(replicas) & up:
            assert replicas[0] in up  # the leader is an up node whenever one is available


def test_zone_spread_example():
    specs = [(f"{z}-{i}", z, 1, "up") for z in ("a", "b", "c") for i in range(3)]
    state = cluster(specs)
    assignment = create(state, "res", 60, 3)
    for replicas in assignment:
        assert sorted(state.nodes[n].zone for n in replicas) == ["a", "b", "c"]
    counts = Counter(n for replicas in assignment for n in replicas)
    assert set(counts.values()) == {20}


@pytest.mark.parametrize("capacities, rf", [
    ([1, 2], 1),
    ([1, 2, 1, 2, 1, 2], 3),
    ([1, 1, 2, 2, 2], 2),
    ([1, 2, 1, 2, 1, 2, 1, 2, 1, 2], 3),
])
def test_balanced_by_capacity(capacities, rf):
    state = cluster([(f"n{i}", "default", cap, "up") for i, cap in enumerate(capacities)])
    assignment = create(state, "res", 300, rf)
    counts = Counter(n for replicas in assignment for n in replicas)
    total = 300 * rf
    for i, cap in enumerate(capacities):
        share = total * cap / sum(capacities)
        assert abs(counts[f"n{i}"] - share) <= 1, (counts, share)


def test_capacity_balance_accounts_for_existing_replicas():
    state = cluster([(f"n{i}", "default", 1 + i % 2, "up") for i in range(6)])
    create(state, "first", 100, 2)
    create(state, "second", 200, 2)
    counts = state.replica_counts()
    total = 300 * 2
    for node in state.nodes.values():
        assert abs(counts[node.id] - total * node.capacity / 9) <= 1, counts


@pytest.mark.parametrize("rf", [1, 2, 3])
def test_leaders_balanced(rf):
    state = cluster([(f"n{i}", f"z{i % 3}", 1, "up") for i in range(10)])
    assignment = create(state, "res", 300, rf)
    leaders = Counter(replicas[0] for replicas in assignment)
    assert set(leaders) == set(state.nodes)
    mean = 300 / 10
    assert max(leaders.values()) / mean <= 1.1, leaders
    # The leader recorded by apply is the first replica.
    assert [p.leader for p in state.resources["res"].partitions] == [r[0] for r in assignment]


def test_leaders_balanced_across_resources():
    state = cluster([(f"n{i}", "default", 1, "up") for i in range(10)])
    for name in ("a", "b", "c"):
        create(state, name, 100, 3)
    leaders = state.leader_counts()
    assert max(leaders.values()) / (300 / 10) <= 1.1, leaders


def test_deterministic():
    specs = [(f"n{i}", f"z{i % 4}", [1, 2, 0.5][i % 3], "down" if i == 5 else "up") for i in range(11)]
    first = cluster(specs)
    create(first, "warm", 17, 2)
    again = place_resource(first, "res", 50, 3)
    assert place_resource(first, "res", 50, 3) == again
    copy_of = ClusterState.from_dict(first.to_dict())
    assert place_resource(copy_of, "res", 50, 3) == again
    # Ties are broken by rendezvous hashing, not by the order the nodes were registered in.
    shuffled = list(range(len(specs)))
    random.Random(3).shuffle(shuffled)
    other = cluster(specs, order=shuffled)
    create(other, "warm", 17, 2)
    assert place_resource(other, "res", 50, 3) == again
    # Placing a resource changes nothing in the state.
    before = first.to_dict()
    place_resource(first, "res", 50, 3)
    replacements_for(first, "n1")
    assert first.to_dict() == before


def test_fewer_nodes_than_replicas():
    state = cluster([("a", "z", 1, "up"), ("b", "z", 1, "down")])
    assert all(sorted(r) == ["a", "b"] for r in place_resource(state, "res", 4, 3))
    assert place_resource(ClusterState(), "res", 3, 2) == [[], [], []]


# --- replacements_for ------------------------------------------------------------------------

def check_plan(state: ClusterState, node_id: str) -> dict:
    plan = replacements_for(state, node_id)
    held = {(res.name, str(i)) for res in state.resources.values()
            for i, part in enumerate(res.partitions) if node_id in part.replicas}
    assert {(r, i) for r, by_partition in plan.items() for i in by_partition} == held
    for res_name, by_partition in plan.items():
        for index, new in by_partition.items():
            part = state.resources[res_name].partitions[int(index)]
            keep = [n for n in part.replicas if n != node_id]
            candidates = [n for n in state.nodes.values() if n.id != node_id and n.id not in part.replicas]
            if new is None:
                assert not candidates, (res_name, index, candidates)
                continue
            assert new in state.nodes and new != node_id and new not in part.replicas
            up = [n for n in candidates if n.status == "up"]
            if up:
                assert state.nodes[new].status == "up"
            pool = up or candidates
            used = {state.nodes[n].zone for n in keep}
            if any(n.zone not in used for n in pool):
                assert state.nodes[new].zone not in used, (res_name, index, new, used)
    return plan


@PROPERTY_SETTINGS
@given(st.integers(0, 2**32 - 1).map(random.Random), st.integers(10, 120))
def test_replacement_plans_on_reachable_states(rng, steps):
    state = build_state(rng, steps)
    for node_id in list(state.nodes):
        plan = check_plan(state, node_id)
        copy_of = ClusterState.from_dict(state.to_dict())
        outcome = apply(copy_of, commands.RemoveNode(node_id=node_id, force=True, replacements=plan))
        assert outcome.ok, outcome
        assert validate(copy_of) == []


def test_replacement_goes_to_another_zone():
    specs = [("a1", "a", 1, "up"), ("a2", "a", 1, "up"), ("b1", "b", 1, "up"), ("c1", "c", 1, "up")]
    state = cluster(specs)
    assignment = create(state, "res", 12, 2)
    for victim in state.nodes:
        plan = check_plan(state, victim)
        for index, new in plan.get("res", {}).items():
            (survivor,) = [n for n in assignment[int(index)] if n != victim]
            assert state.nodes[new].zone != state.nodes[survivor].zone


def test_replacement_prefers_up_nodes():
    specs = [("a", "z0", 1, "up"), ("b", "z1", 1, "up"), ("c", "z2", 1, "down"), ("d", "z1", 1, "up")]
    state = cluster(specs)
    create(state, "res", 8, 2)
    for victim in ("a", "b", "d"):
        for new in check_plan(state, victim).get("res", {}).values():
            assert new is not None and state.nodes[new].status == "up"


def test_replacement_none_only_when_no_node_can_take_it():
    state = cluster([("a", "z0", 1, "up"), ("b", "z1", 1, "up"), ("c", "z2", 1, "up")])
    create(state, "full", 2, 3)  # every node holds every partition
    create(state, "half", 6, 2)
    plan = check_plan(state, "a")
    assert plan["full"] == {"0": None, "1": None}
    assert all(new is not None for new in plan.get("half", {}).values())
    # A node holding nothing needs no plan.
    assert apply(state, commands.RegisterNode(node_id="idle", address="idle:1")).ok
    assert replacements_for(state, "idle") == {}
    # With the spare node registered, nothing is left without a replacement.
    assert all(new is not None for by in check_plan(state, "a").values() for new in by.values())


def test_replacements_are_balanced():
    state = cluster([(f"n{i}", "default", 1, "up") for i in range(6)])
    create(state, "res", 120, 2)
    plan = replacements_for(state, "n0")
    targets = Counter(new for by in plan.values() for new in by.values())
    assert sum(targets.values()) == state.replica_counts()["n0"]
    assert max(targets.values()) - min(targets.values()) <= 1, targets
