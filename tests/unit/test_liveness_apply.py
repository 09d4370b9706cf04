"""``apply`` for node sessions and liveness judgements: epochs, terms, and where leadership goes."""

from __future__ import annotations

import pytest

from hacoord.core import ClusterState, apply, decode_state, encode_state
from hacoord.core import commands as c
from hacoord.core.results import Applied, Rejected
from hacoord.core.validate import validate


def applied(state: ClusterState, command: c.Command) -> Applied:
    outcome = apply(state, command)
    assert isinstance(outcome, Applied), outcome
    assert validate(state) == []
    return outcome


def rejected(state: ClusterState, command: c.Command, code: str) -> Rejected:
    before = encode_state(state)
    outcome = apply(state, command)
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == code, outcome
    assert encode_state(state) == before
    return outcome


@pytest.fixture
def state() -> ClusterState:
    """Nodes a, b, c (one zone each) and resource r: partition 0 led by a, partition 1 by b."""
    s = ClusterState()
    for i, node in enumerate("abc"):
        applied(s, c.RegisterNode(time=1.0, node_id=node, address=f"10.0.0.{i + 1}:9000", zone=f"z{i}"))
    applied(s, c.CreateResource(time=2.0, name="r", partitions=2, replication_factor=3,
                                assignment=[["a", "b", "c"], ["b", "c", "a"]]))
    return s


def liveness(node: str, status: str, epoch: int = 1, term: int = 1) -> c.SetNodeLiveness:
    return c.SetNodeLiveness(time=5.0, node_id=node, status=status, epoch=epoch, term=term)


def test_a_registered_node_starts_at_epoch_1_and_sessions_bump_it(state: ClusterState) -> None:
    assert state.nodes["a"].epoch == 1
    first = applied(state, c.StartNodeSession(request_id="s1", time=3.0, node_id="a"))
    assert first.result["epoch"] == state.nodes["a"].epoch == 2
    assert first.events[0].type == "NodeSessionStarted"
    second = applied(state, c.StartNodeSession(time=4.0, node_id="a", address="10.9.9.9:1"))
    assert second.result["epoch"] == 3 and state.nodes["a"].address == "10.9.9.9:1"
    # A retried session start is answered with the epoch it was given, not the latest one.
    again = apply(state, c.StartNodeSession(request_id="s1", time=6.0, node_id="a"))
    assert again.duplicate and again.result["epoch"] == 2 and state.nodes["a"].epoch == 3


def test_session_start_refuses_unknown_nodes_and_bad_addresses(state: ClusterState) -> None:
    rejected(state, c.StartNodeSession(node_id="ghost"), "not_found")
    rejected(state, c.StartNodeSession(node_id="a", address="nowhere"), "invalid_argument")


def test_liveness_with_a_stale_node_epoch_is_refused(state: ClusterState) -> None:
    applied(state, c.StartNodeSession(time=3.0, node_id="a"))  # epoch 2
    rejected(state, liveness("a", "down", epoch=1), "stale_epoch")
    rejected(state, liveness("a", "down", epoch=3), "stale_epoch")
    applied(state, liveness("a", "down", epoch=2))
    assert state.nodes["a"].status == "down"


def test_liveness_from_an_older_term_is_refused_and_the_term_only_grows(state: ClusterState) -> None:
    assert state.leader_term == 0
    applied(state, liveness("c", "suspect", term=4))
    assert state.leader_term == 4
    rejected(state, liveness("c", "down", term=3), "stale_term")  # a deposed leader's late judgement
    applied(state, liveness("c", "down", term=4))  # the same leader goes on
    applied(state, liveness("c", "up", term=7))
    assert state.leader_term == 7 and state.nodes["c"].status == "up"
    # Operator writes carry no term and neither check nor move it.
    applied(state, c.SetNodeState(time=6.0, node_id="c", status="down"))
    assert state.leader_term == 7


@pytest.mark.parametrize(("field", "value"), [
    ("status", "sideways"), ("epoch", 0), ("epoch", True), ("epoch", "1"), ("term", -1), ("term", 1.5),
])
def test_malformed_liveness_is_refused(state: ClusterState, field: str, value: object) -> None:
    fields = {"node_id": "a", "status": "down", "epoch": 1, "term": 1, field: value}
    rejected(state, c.SetNodeLiveness(**fields), "invalid_argument")  # type: ignore[arg-type]
    rejected(state, liveness("ghost", "down"), "not_found")


def test_suspect_keeps_leadership_and_down_moves_it_with_a_new_epoch(state: ClusterState) -> None:
    part = state.resources["r"].partitions[0]
    assert (part.leader, part.epoch) == ("a", 1)
    outcome = applied(state, liveness("a", "suspect"))
    assert (part.leader, part.epoch) == ("a", 1)
    assert [e.type for e in outcome.events] == ["NodeStateChanged"]
    assert outcome.events[0].data["status"] == "suspect"

    outcome = applied(state, liveness("a", "down"))
    assert (part.leader, part.epoch) == ("b", 2)
    assert [e.type for e in outcome.events] == ["NodeStateChanged", "PartitionChanged"]
    assert state.resources["r"].partitions[1].leader == "b"  # not a's; untouched


def test_a_suspect_leader_is_not_replaced_by_a_node_coming_up(state: ClusterState) -> None:
    applied(state, liveness("b", "down"))  # partition 1 moves to c
    applied(state, liveness("c", "suspect"))
    applied(state, liveness("b", "up"))
    part = state.resources["r"].partitions[1]
    assert part.leader == "c"  # suspect, not judged: keeps it


def test_coming_back_up_restores_partitions_left_without_an_up_leader(state: ClusterState) -> None:
    for node in "abc":
        applied(state, liveness(node, "down"))
    part0 = state.resources["r"].partitions[0]
    # Every replica is down: the leadership stayed on the last one to hold it.
    assert (part0.leader, state.nodes["c"].status) == ("c", "down")
    epoch = part0.epoch
    applied(state, liveness("a", "up"))
    assert part0.leader == "a" and part0.epoch == epoch + 1
    # A session start is a way back up too, with its own epoch bump for the node.
    assert state.resources["r"].partitions[1].leader == "a"  # c, its leader, is down too
    applied(state, c.StartNodeSession(time=7.0, node_id="b"))
    assert state.nodes["b"].status == "up" and state.nodes["b"].epoch == 2
    assert [p.leader for p in state.resources["r"].partitions] == ["a", "a"]  # a is up: kept


def test_node_epoch_and_leader_term_survive_a_snapshot(state: ClusterState) -> None:
    applied(state, c.StartNodeSession(time=3.0, node_id="b"))
    applied(state, liveness("c", "suspect", term=9))
    restored = decode_state(encode_state(state))
    assert restored.nodes["b"].epoch == 2 and restored.nodes["c"].status == "suspect"
    assert restored.leader_term == 9
    assert encode_state(restored) == encode_state(state)


def test_a_snapshot_from_before_node_epochs_loads_with_first_incarnations(state: ClusterState) -> None:
    data = state.to_dict()
    del data["leader_term"]
    for node in data["nodes"]:
        del node["epoch"]
    restored = ClusterState.from_dict(data)
    assert restored.leader_term == 0
    assert all(n.epoch == 1 for n in restored.nodes.values())


def batch(judgements: list[list[object]], term: int = 1) -> c.SetNodesLiveness:
    return c.SetNodesLiveness(time=5.0, judgements=judgements, term=term)


def test_a_batch_of_judgements_moves_each_leadership_once_to_a_node_that_is_up(
        state: ClusterState) -> None:
    """a and b go down together: partition 0 (a, b, c) and partition 1 (b, c, a) both go to c
    in one step; one at a time, partition 0 would first go to b, then again to c."""
    outcome = applied(state, batch([["a", "down", 1], ["b", "down", 1]]))
    assert outcome.result == {"judged": ["a", "b"], "skipped": []}
    parts = state.resources["r"].partitions
    assert [(p.leader, p.epoch) for p in parts] == [("c", 2), ("c", 2)]
    assert [e.type for e in outcome.events] == ["NodeStateChanged"] * 2 + ["PartitionChanged"] * 2

    back = applied(state, batch([["b", "up", 1], ["a", "up", 1]]))
    assert back.result["judged"] == ["b", "a"]
    assert [p.leader for p in parts] == ["c", "c"]  # c is up: nobody takes over


def test_a_batch_equals_the_same_judgements_one_by_one_when_they_do_not_interact(
        state: ClusterState) -> None:
    one_by_one = decode_state(encode_state(state))
    applied(state, batch([["a", "down", 1], ["c", "suspect", 1]]))
    applied(one_by_one, liveness("a", "down"))
    applied(one_by_one, liveness("c", "suspect"))
    assert state.nodes == one_by_one.nodes and state.resources == one_by_one.resources


def test_stale_judgements_in_a_batch_are_skipped_and_the_others_applied(state: ClusterState) -> None:
    applied(state, c.StartNodeSession(time=3.0, node_id="a"))  # a is at epoch 2 now
    outcome = applied(state, batch([["a", "down", 1], ["ghost", "down", 1], ["b", "suspect", 1],
                                    ["b", "down", 1]]))
    assert outcome.result == {"judged": ["b"], "skipped": ["a", "ghost", "b"]}
    assert (state.nodes["a"].status, state.nodes["b"].status) == ("up", "suspect")
    assert state.leader_term == 1
    rejected(state, batch([["c", "down", 1]], term=0), "stale_term")  # a deposed leader's pass


@pytest.mark.parametrize("judgements", [[], [["a", "down"]], [["a", "sideways", 1]],
                                        [["a", "down", 0]], [["bad id", "down", 1]], "a"])
def test_malformed_batches_are_refused_whole(state: ClusterState, judgements: object) -> None:
    rejected(state, batch(judgements), "invalid_argument")  # type: ignore[arg-type]
