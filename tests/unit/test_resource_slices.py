"""A large resource is created in slices: ``CreateResource`` with its first partitions, then
``AddPartitions`` from where it ends, each a log entry of its own."""

from __future__ import annotations

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.core.apply import MAX_CLUSTER_PARTITIONS, MAX_CLUSTER_REPLICAS
from hacoord.core.validate import validate
from hacoord.replication.feed import ChangeFeed


def cluster() -> ClusterState:
    state = ClusterState()
    for node in "abc":
        assert apply(state, c.RegisterNode(node_id=node, address=f"{node}:1")).ok
    return state


def slice_of(count: int) -> list[list[str]]:
    return [["a", "b"], ["b", "c"], ["c", "a"]] * (count // 3) + [["a", "c"]] * (count % 3)


def test_slices_build_the_resource_and_its_events() -> None:
    state = cluster()
    feed = ChangeFeed()
    created = apply(state, c.CreateResource(name="r", partitions=7, replication_factor=2,
                                            assignment=slice_of(3)))
    assert created.ok and created.result["resource"]["creating"]
    res = state.resources["r"]
    assert (len(res.partitions), res.size, res.creating) == (3, 7, True)
    feed.record(created.events)
    assert validate(state) == []

    wrong_start = apply(state, c.AddPartitions(name="r", start=2, assignment=slice_of(2)))
    too_many = apply(state, c.AddPartitions(name="r", start=3, assignment=slice_of(5)))
    bad_node = apply(state, c.AddPartitions(name="r", start=3, assignment=[["a", "zz"]]))
    assert (wrong_start.code, too_many.code, bad_node.code) == ("stale_plan", "invalid_argument",
                                                                "stale_plan")
    first = apply(state, c.AddPartitions(name="r", start=3, assignment=slice_of(2)))
    last = apply(state, c.AddPartitions(name="r", start=5, assignment=slice_of(2)))
    assert first.ok and last.ok and not last.result["creating"]
    assert [e.type for e in first.events] == ["PartitionsAdded"]
    assert last.events[0].data["start"] == 5 and last.events[0].data["complete"]
    assert (len(res.partitions), res.size, res.creating) == (7, 0, False)
    assert validate(state) == []
    feed.record(first.events)
    feed.record(last.events)
    routing = feed.routing_at(state.revision)
    assert [route[0] for route in routing["r"][1]] == [tuple(p.replicas) for p in res.partitions]
    assert len(feed.routing_at(created.revision)["r"][1]) == 3  # as it was after the first slice

    done = apply(state, c.AddPartitions(name="r", start=7, assignment=slice_of(1)))
    assert done.code == "conflict"
    assert ClusterState.from_dict(state.to_dict()) == state


def test_a_resource_being_created_survives_a_snapshot_and_its_rf_stays() -> None:
    state = cluster()
    assert apply(state, c.CreateResource(name="r", partitions=5, replication_factor=2,
                                         assignment=slice_of(2))).ok
    restored = ClusterState.from_dict(state.to_dict())
    assert restored.resources["r"].size == 5 and restored.resources["r"].creating
    assert apply(state, c.UpdateResource(name="r", replication_factor=3)).code == "conflict"


def test_the_cluster_holds_at_most_so_many_replicas() -> None:
    """Counted at the sizes resources are created with, slices still to come included."""
    state = cluster()
    made = 0
    while True:
        outcome = apply(state, c.CreateResource(name=f"r{made}", partitions=100_000,
                                                replication_factor=2, assignment=slice_of(3)))
        if not outcome.ok:
            break
        made += 1
    assert outcome.code == "limit_exceeded"
    assert made * 100_000 == MAX_CLUSTER_PARTITIONS and made * 200_000 <= MAX_CLUSTER_REPLICAS
