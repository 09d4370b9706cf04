"""The leader index (``hacoord.core.leadership``): liveness changes find the partitions they move
through it, and a member restored from a snapshot (index built afresh) moves the same
partitions, in the same order, as one that kept its index through the log."""

from __future__ import annotations

from hacoord.core import ClusterState, apply, decode_state, encode_state
from hacoord.core import commands as c
from hacoord.core.leadership import TIDY_BUDGET, LeaderIndex
from hacoord.core.results import Applied
from hacoord.core.validate import validate

NODES = "abcdef"


def applied(state: ClusterState, command: c.Command) -> Applied:
    outcome = apply(state, command)
    assert isinstance(outcome, Applied), outcome
    assert validate(state) == []
    return outcome


def cluster() -> ClusterState:
    """Six nodes; resources "zeta" (created first) and "alpha", partitions led round the nodes."""
    state = ClusterState()
    for i, node in enumerate(NODES):
        applied(state, c.RegisterNode(time=1.0, node_id=node, address=f"10.0.0.{i + 1}:9000"))
    for name, count in (("zeta", 9), ("alpha", 7)):
        assignment = [[NODES[(i + k) % 6] for k in range(3)] for i in range(count)]
        applied(state, c.CreateResource(time=2.0, name=name, partitions=count,
                                        replication_factor=3, assignment=assignment))
    return state


def judge(*judgements: tuple[str, str]) -> c.SetNodesLiveness:
    return c.SetNodesLiveness(time=5.0, term=1, judgements=[[n, s, 1] for n, s in judgements])


def moved(outcome: Applied) -> list[tuple[str, int, str | None]]:
    return [(e.data["resource"], e.data["partition"], e.data["leader"])
            for e in outcome.events if e.type == "PartitionChanged"]


def test_a_restored_member_moves_the_same_partitions_in_the_same_order() -> None:
    kept = cluster()
    applied(kept, judge(("a", "down"), ("b", "down")))  # kept's index is built and maintained
    restored = decode_state(encode_state(kept))
    for state in (kept, restored):
        assert validate(state) == []
    for step in (judge(("c", "down"), ("d", "down"), ("e", "down")),
                 judge(("f", "suspect")),
                 judge(("a", "up"), ("f", "up")),
                 judge(("b", "up"), ("c", "up"))):
        one, other = applied(kept, step), applied(restored, step)
        assert moved(one) == moved(other)
        assert [e.to_dict() for e in one.events] == [e.to_dict() for e in other.events]
        assert encode_state(kept) == encode_state(restored)


def test_leaderships_leave_down_nodes_in_scan_order_and_return_to_nodes_coming_up() -> None:
    state = cluster()
    outcome = applied(state, judge(("a", "down")))
    # Resources in creation order (zeta before alpha), partitions by index.
    assert moved(outcome) == [("zeta", 0, "b"), ("zeta", 6, "b"), ("alpha", 0, "b"), ("alpha", 6, "b")]
    # Every replica of zeta/2 (c, d, e) goes down: its leader stays on a down node ...
    outcome = applied(state, judge(("c", "down"), ("d", "down"), ("e", "down")))
    assert state.resources["zeta"].partitions[2].leader in ("c", "d", "e")
    # ... until one of them comes back, which takes it (and the like) at once.
    outcome = applied(state, judge(("e", "up")))
    assert ("zeta", 2, "e") in moved(outcome)
    assert state.leader_index().as_dict() == LeaderIndex.build(state.resources).as_dict()


def test_a_suspicion_or_a_return_from_suspicion_moves_nothing() -> None:
    state = cluster()
    assert moved(applied(state, judge(("a", "suspect"), ("b", "suspect")))) == []
    assert moved(applied(state, judge(("a", "up"), ("b", "up")))) == []


def test_the_index_follows_slices_deletes_and_leader_changes() -> None:
    state = cluster()
    index = state.leader_index()
    applied(state, c.SetPartitionLeader(time=3.0, term=1, resource="zeta", partition=0, leader="c"))
    applied(state, c.CreateResource(time=3.0, name="big", partitions=4, replication_factor=1,
                                    assignment=[["a"], ["b"]]))
    applied(state, c.AddPartitions(time=3.0, name="big", start=2, assignment=[["c"], ["d"]]))
    assert index.as_dict() == LeaderIndex.build(state.resources).as_dict()
    assert index.led_by(["c"]) == [("zeta", 0), ("zeta", 2), ("zeta", 8),
                                                    ("alpha", 2), ("big", 2)]
    applied(state, c.DeleteResource(time=4.0, name="zeta"))
    assert index.as_dict() == LeaderIndex.build(state.resources).as_dict()
    assert index.led_by(["c", None]) == [("alpha", 2), ("big", 2)]


def test_a_deleted_resource_is_unseen_at_once_and_forgotten_a_bounded_step_at_a_time() -> None:
    state = cluster()
    index = state.leader_index()
    count = 3 * TIDY_BUDGET + 7
    applied(state, c.CreateResource(time=3.0, name="huge", partitions=count, replication_factor=1,
                                    assignment=[[NODES[i % 6]] for i in range(count)]))
    applied(state, c.DeleteResource(time=4.0, name="huge"))
    assert index.untidy == count  # apply only hides them; the state machine tidies per entry
    state.tidy()
    assert index.untidy == count - TIDY_BUDGET
    assert index.as_dict() == LeaderIndex.build(state.resources).as_dict()
    assert all(name != "huge" for name, _ in index.led_by(list(NODES)))
    applied(state, c.CreateResource(time=4.0, name="huge", partitions=2, replication_factor=1,
                                    assignment=[["a"], ["b"]]))  # the name again: new keys
    state.tidy()
    assert index.untidy == count - 2 * TIDY_BUDGET
    for _ in range(2):
        state.tidy()
    assert index.untidy == 0
    assert index.as_dict() == LeaderIndex.build(state.resources).as_dict()
    assert index.led_by(["a", "b"])[-2:] == [("huge", 0), ("huge", 1)]
