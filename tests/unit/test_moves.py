"""Two-phase moves, throttles, maintenance, leadership handover and removed-node records, at the
level of ``apply`` (the rules every member enforces)."""

from __future__ import annotations

import pytest

from hacoord.core import ClusterState, apply, commands
from hacoord.core.codec import digest
from hacoord.core.model import REMOVED_RETENTION
from hacoord.core.results import Applied, Rejected
from hacoord.core.validate import validate, validate_transition

T0 = 1_700_000_000.0


def ok(state: ClusterState, command: commands.Command) -> Applied:
    before = ClusterState.from_dict(state.to_dict())
    outcome = apply(state, command)
    assert isinstance(outcome, Applied), outcome
    assert validate(state) == []
    assert validate_transition(before, state) == []
    return outcome


def refused(state: ClusterState, command: commands.Command, code: str) -> None:
    before = digest(state)
    outcome = apply(state, command)
    assert isinstance(outcome, Rejected) and outcome.code == code, outcome
    assert digest(state) == before  # a refusal changes nothing


@pytest.fixture
def state() -> ClusterState:
    """Four nodes in two zones; resource ``r`` with partition 0 on a (leader) and b."""
    s = ClusterState()
    for i, node_id in enumerate("abcd"):
        ok(s, commands.RegisterNode(time=T0, node_id=node_id, address=f"127.0.0.1:{9000 + i}",
                                    zone=f"z{i % 2}"))
    ok(s, commands.CreateResource(time=T0, name="r", partitions=2, replication_factor=2,
                                  assignment=[["a", "b"], ["c", "d"]]))
    return s


def start(state: ClusterState, to: str, frm: str | None = "a", partition: int = 0,
          term: int = 1) -> commands.StartMove:
    return commands.StartMove(time=T0 + 1, resource="r", partition=partition, from_node=frm,
                              to_node=to, reason="overloaded", term=term)


def caught_up(state: ClusterState, node_id: str, partition: int = 0) -> commands.ReportCaughtUp:
    part = state.resources["r"].partitions[partition]
    return commands.ReportCaughtUp(time=T0 + 11, node_id=node_id, epoch=state.nodes[node_id].epoch,
                                   resource="r", partition=partition, partition_epoch=part.epoch)


def test_a_move_keeps_the_old_replicas_serving_until_the_new_one_caught_up(state: ClusterState) -> None:
    part = state.resources["r"].partitions[0]
    started = ok(state, start(state, "c"))
    assert part.replicas == ["a", "b"] and part.leader == "a"  # nothing dropped yet
    assert part.epoch == 2  # the replica set (with the copy being made) changed
    assert started.events[0].data["adding"] == ["c"]
    done = ok(state, caught_up(state, "c"))
    assert part.replicas == ["c", "b"] and part.leader == "c" and part.epoch == 3
    assert done.events[0].data["adding"] == []
    assert done.result["move"]["seconds"] == 10.0
    assert state.moves == {} and state.rebalance.completed == 1
    assert state.rebalance.mean_move_seconds() == 10.0


def test_a_follower_move_leaves_the_leader_alone(state: ClusterState) -> None:
    ok(state, start(state, "c", frm="b"))
    ok(state, caught_up(state, "c"))
    part = state.resources["r"].partitions[0]
    assert part.replicas == ["a", "c"] and part.leader == "a"


def test_adding_a_missing_replica_appends_it() -> None:
    s = ClusterState()
    for i, node_id in enumerate("ab"):
        ok(s, commands.RegisterNode(time=T0, node_id=node_id, address=f"127.0.0.1:{9000 + i}"))
    ok(s, commands.CreateResource(time=T0, name="r", partitions=1, replication_factor=2,
                                  assignment=[["a", "b"]]))
    # No other node could take b's replica: the forced removal leaves the partition short.
    ok(s, commands.RemoveNode(time=T0, node_id="b", force=True, replacements={"r": {"0": None}}))
    part = s.resources["r"].partitions[0]
    assert part.replicas == ["a"]
    ok(s, commands.RegisterNode(time=T0, node_id="c", address="127.0.0.1:9100"))
    ok(s, start(s, "c", frm=None))
    assert part.replicas == ["a"]
    ok(s, caught_up(s, "c"))
    assert part.replicas == ["a", "c"] and part.leader == "a"


def test_a_full_partition_cannot_grow(state: ClusterState) -> None:
    refused(state, start(state, "c", frm=None), "invalid_argument")


def test_stale_reports_are_refused(state: ClusterState) -> None:
    ok(state, start(state, "c"))
    report = caught_up(state, "c")
    refused(state, commands.ReportCaughtUp(**{**vars(report), "epoch": report.epoch - 1}), "stale_epoch")
    refused(state, commands.ReportCaughtUp(**{**vars(report), "partition_epoch": 1}), "stale_epoch")
    refused(state, commands.ReportCaughtUp(**{**vars(report), "node_id": "d"}), "no_move")
    ok(state, commands.StartNodeSession(time=T0 + 5, node_id="c"))  # the node restarted
    refused(state, report, "stale_epoch")  # its old incarnation's report no longer counts
    ok(state, caught_up(state, "c"))


def test_one_move_per_partition_and_targets_must_be_fit(state: ClusterState) -> None:
    ok(state, start(state, "c"))
    refused(state, start(state, "d", frm="b"), "move_pending")
    refused(state, start(state, "d", frm="c", partition=1), "conflict")  # d is a replica
    ok(state, commands.SetNodeState(time=T0, node_id="b", admin="cordoned", admin_reason="disk"))
    assert state.nodes["b"].admin_reason == "disk"
    refused(state, start(state, "b", frm="c", partition=1), "conflict")  # cordoned
    ok(state, commands.SetNodeState(time=T0, node_id="b", admin="active"))
    ok(state, start(state, "b", frm="c", partition=1))
    refused(state, commands.MovePartition(time=T0, resource="r", partition=0, from_node="b",
                                          to_node="d"), "move_pending")
    ok(state, commands.CancelMove(time=T0, resource="r", partition=1, term=1))
    refused(state, commands.SetPartitionLeader(time=T0, resource="r", partition=0, leader="b",
                                               term=1), "move_pending")


def test_cluster_throttle(state: ClusterState) -> None:
    ok(state, commands.ConfigureRebalance(time=T0, max_moves_per_node=1, max_moves=5))
    ok(state, start(state, "c", frm="b"))
    ok(state, commands.RegisterNode(time=T0, node_id="e", address="127.0.0.1:9100"))
    ok(state, commands.ConfigureRebalance(time=T0, max_moves=1))
    refused(state, start(state, "e", frm="d", partition=1), "throttled")  # cluster limit
    ok(state, commands.ConfigureRebalance(time=T0, max_moves=5))
    ok(state, start(state, "e", frm="d", partition=1))
    assert len(state.moves) == 2


def test_per_node_throttle_counts_sources_and_targets() -> None:
    s = ClusterState()
    for i, node_id in enumerate("abcdef"):
        ok(s, commands.RegisterNode(time=T0, node_id=node_id, address=f"127.0.0.1:{9000 + i}"))
    ok(s, commands.CreateResource(time=T0, name="r", partitions=3, replication_factor=2,
                                  assignment=[["a", "b"], ["a", "c"], ["a", "d"]]))
    ok(s, commands.ConfigureRebalance(time=T0, max_moves_per_node=2))
    ok(s, start(s, "e", frm="a", partition=0))
    ok(s, start(s, "f", frm="a", partition=1))
    refused(s, start(s, "e", frm="a", partition=2), "throttled")  # a is the source of two
    ok(s, commands.ConfigureRebalance(time=T0, max_moves_per_node=3))
    ok(s, start(s, "e", frm="a", partition=2))
    ok(s, commands.ConfigureRebalance(time=T0, max_moves_per_node=1))
    ok(s, commands.RegisterNode(time=T0, node_id="g", address="127.0.0.1:9200"))
    refused(s, start(s, "e", frm="b", partition=0), "move_pending")


def test_maintenance_freezes_moves_with_a_reason(state: ClusterState) -> None:
    refused(state, commands.ConfigureRebalance(time=T0, maintenance=True), "invalid_argument")
    ok(state, commands.ConfigureRebalance(time=T0 + 3, maintenance=True, reason="kernel upgrade"))
    assert state.rebalance.maintenance == {"reason": "kernel upgrade", "since": T0 + 3}
    refused(state, start(state, "c"), "maintenance")
    refused(state, commands.StartRebalance(time=T0, run_id="r1"), "maintenance")
    ok(state, commands.ConfigureRebalance(time=T0, maintenance=False))
    ok(state, start(state, "c"))


def test_leader_only_commands_from_an_older_term_are_refused(state: ClusterState) -> None:
    ok(state, start(state, "c", term=5))
    refused(state, commands.CancelMove(time=T0, resource="r", partition=0, term=4), "stale_term")
    refused(state, commands.SetPartitionLeader(time=T0, resource="r", partition=1, leader="d",
                                               term=4), "stale_term")
    ok(state, commands.CancelMove(time=T0, resource="r", partition=0, term=5, reason="target down"))
    assert state.moves == {} and state.resources["r"].partitions[0].epoch == 3


def test_leadership_handover_bumps_the_epoch(state: ClusterState) -> None:
    ok(state, commands.SetPartitionLeader(time=T0, resource="r", partition=0, leader="b", term=1))
    part = state.resources["r"].partitions[0]
    assert part.leader == "b" and part.epoch == 2
    ok(state, commands.SetNodeState(time=T0, node_id="a", status="down"))
    refused(state, commands.SetPartitionLeader(time=T0, resource="r", partition=0, leader="a",
                                               term=1), "invalid_argument")


def test_a_rebalance_run_starts_once_and_ends_with_an_outcome(state: ClusterState) -> None:
    ok(state, commands.StartRebalance(time=T0, run_id="run1"))
    refused(state, commands.StartRebalance(time=T0, run_id="run2"), "already_exists")
    ok(state, start(state, "c"))
    ok(state, caught_up(state, "c"))
    assert state.rebalance.run is not None and state.rebalance.run["completed"] == 1
    refused(state, commands.EndRebalance(time=T0, run_id="run2", term=1), "not_found")
    refused(state, commands.EndRebalance(time=T0, run_id="run1", term=0), "stale_term")
    ok(state, commands.EndRebalance(time=T0 + 20, run_id="run1", outcome="done", term=1))
    assert state.rebalance.run is None
    assert state.rebalance.last_run is not None
    assert state.rebalance.last_run["outcome"] == "done" and state.rebalance.last_run["completed"] == 1


def test_removal_waits_for_pending_moves_unless_forced(state: ClusterState) -> None:
    ok(state, commands.RegisterNode(time=T0, node_id="e", address="127.0.0.1:9100"))
    ok(state, start(state, "e"))
    refused(state, commands.RemoveNode(time=T0, node_id="e"), "node_busy")
    ok(state, commands.RemoveNode(time=T0, node_id="e", force=True))
    assert state.moves == {} and state.resources["r"].partitions[0].replicas == ["a", "b"]
    assert state.resources["r"].partitions[0].epoch == 3  # the dropped copy changed ownership


def test_a_node_registered_again_continues_its_epochs_until_the_record_expires(
        state: ClusterState) -> None:
    ok(state, commands.StartNodeSession(time=T0, node_id="d"))
    ok(state, commands.StartNodeSession(time=T0, node_id="d"))
    ok(state, commands.RemoveNode(time=T0 + 1, node_id="d", force=True, replacements={"r": {"1": "a"}}))
    assert state.removed["d"]["epoch"] == 3
    ok(state, commands.RegisterNode(time=T0 + 2, node_id="d", address="127.0.0.1:9999"))
    assert state.nodes["d"].epoch == 4 and "d" not in state.removed
    ok(state, commands.RemoveNode(time=T0 + 3, node_id="d"))
    ok(state, commands.Barrier(time=T0 + 3 + REMOVED_RETENTION - 1))
    ok(state, commands.SetNodeState(time=T0 + 3 + REMOVED_RETENTION - 1, node_id="a", tags={"x": "1"}))
    assert "d" in state.removed
    ok(state, commands.SetNodeState(time=T0 + 4 + REMOVED_RETENTION, node_id="a", tags={"x": "2"}))
    assert "d" not in state.removed  # pruned after the retention


def test_moves_and_settings_survive_a_snapshot(state: ClusterState) -> None:
    ok(state, start(state, "c"))
    ok(state, commands.ConfigureRebalance(time=T0, max_moves=7, rereplicate_after=60))
    ok(state, commands.StartRebalance(time=T0, run_id="run1"))
    ok(state, commands.SetNodeState(time=T0, node_id="d", admin="draining", admin_reason="decommission"))
    copy = ClusterState.from_dict(state.to_dict())
    assert copy.to_dict() == state.to_dict() and digest(copy) == digest(state)
    assert copy.moves["r/0"].to_node == "c" and copy.nodes["d"].admin == "draining"


def test_status_since_changes_only_with_the_status(state: ClusterState) -> None:
    ok(state, commands.SetNodeState(time=T0 + 5, node_id="a", status="down"))
    assert state.nodes["a"].status_since == T0 + 5
    ok(state, commands.SetNodeState(time=T0 + 9, node_id="a", status="down", tags={"k": "v"}))
    assert state.nodes["a"].status_since == T0 + 5
    ok(state, commands.StartNodeSession(time=T0 + 12, node_id="a"))
    assert state.nodes["a"].status == "up" and state.nodes["a"].status_since == T0 + 12


def test_a_report_from_an_older_incarnation_changes_nothing(state: ClusterState) -> None:
    ok(state, commands.SetNodeState(time=T0, node_id="a", epoch=1, metrics={"disk": 5.0}))
    ok(state, commands.StartNodeSession(time=T0, node_id="a"))
    refused(state, commands.SetNodeState(time=T0, node_id="a", epoch=1, metrics={"disk": 9.0}),
            "stale_epoch")
    assert state.nodes["a"].metrics == {"disk": 5.0}


def test_raising_the_replication_factor_leaves_the_copies_to_two_phase_adds(state: ClusterState) -> None:
    ok(state, commands.UpdateResource(time=T0, name="r", replication_factor=3))
    part = state.resources["r"].partitions[0]
    assert part.replicas == ["a", "b"] and part.epoch == 1  # nothing moved yet
    ok(state, start(state, "c", frm=None))
    ok(state, caught_up(state, "c"))
    assert part.replicas == ["a", "b", "c"]


def test_lowering_the_replication_factor_drops_followers_at_once(state: ClusterState) -> None:
    ok(state, commands.SetPartitionLeader(time=T0, resource="r", partition=0, leader="b", term=1))
    ok(state, commands.UpdateResource(time=T0, name="r", replication_factor=1))
    assert [p.replicas for p in state.resources["r"].partitions] == [["b"], ["c"]]
    assert [p.epoch for p in state.resources["r"].partitions] == [3, 2]
    ok(state, commands.UpdateResource(time=T0, name="r", replication_factor=2))
    ok(state, start(state, "d", frm=None))
    refused(state, commands.UpdateResource(time=T0, name="r", replication_factor=1), "move_pending")


def test_balance_metric_is_recorded_and_validated(state: ClusterState) -> None:
    ok(state, commands.UpdateResource(time=T0, name="r", balance_metric="disk_bytes"))
    assert state.resources["r"].balance_metric == "disk_bytes"
    refused(state, commands.UpdateResource(time=T0, name="r", balance_metric="no spaces"),
            "invalid_argument")
    ok(state, commands.UpdateResource(time=T0, name="r", balance_metric=""))
    assert state.resources["r"].balance_metric is None
    refused(state, commands.UpdateResource(time=T0, name="nope", replication_factor=2), "not_found")


def test_a_retried_partition_change_is_answered_with_the_epoch_it_produced(state: ClusterState) -> None:
    move = commands.MovePartition(request_id="rid-move", time=T0, resource="r", partition=0,
                                  from_node="b", to_node="c")
    first = ok(state, move)
    ok(state, commands.SetPartitionLeader(time=T0, resource="r", partition=0, leader="c", term=1))
    again = apply(state, move)
    assert isinstance(again, Applied) and again.duplicate
    assert again.result == first.result and again.result["partition"]["epoch"] == 2
