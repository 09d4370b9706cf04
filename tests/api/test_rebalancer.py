"""The leader's rebalancer through the API: drains, delayed re-replication, maintenance, runs and
throttles, with data nodes simulated by the test (they report caught up when told to).

Members are ``MemoryReplicator``s in one process (``hacoord.testing.inprocess``); the rebalancer's
background pass waits an hour, so each test drives passes by hand on a clock it moves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from hacoord.client import Client, Conflict, InvalidArgument
from hacoord.server.rebalancer import Rebalancer
from hacoord.testing.inprocess import InProcessCluster


class Clock:
    """Leader time that the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cluster(clock: Clock) -> Iterator[InProcessCluster]:
    with InProcessCluster(3, leader="m1", rebalance_interval=3600.0, rebalance_clock=clock,
                          liveness_check_interval=3600.0) as running:
        yield running


@pytest.fixture
def client(cluster: InProcessCluster) -> Iterator[Client]:
    with Client(cluster.urls, transport=cluster.transport, deadline=5.0) as c:
        for k in range(1, 5):
            c.node_add(f"n{k}", f"127.0.0.1:{9000 + k}", zone=f"z{k % 2}")
        c.resource_create("orders", 8, 2)
        yield c


def rebalancer(cluster: InProcessCluster) -> Rebalancer:
    return cluster.apps["m1"].state.rebalancer


def step(cluster: InProcessCluster) -> dict[str, int]:
    return cluster.run(rebalancer(cluster).step)


def pending(cluster: InProcessCluster) -> list[Any]:
    return list(cluster.state("m1").moves.values())


def report_all(client: Client, cluster: InProcessCluster) -> int:
    """Every target of a pending move reports its copy caught up (as a data node would)."""
    reported = 0
    for move in pending(cluster):
        node = cluster.state("m1").nodes[move.to_node]
        route = client.routing("orders").route(move.resource, move.partition)
        assert route.adding == (move.to_node,)  # the target is told to copy, not to serve
        client.node_caught_up(node.id, node.epoch, move.resource, move.partition, route.epoch)
        reported += 1
    return reported


def replicas_held(cluster: InProcessCluster, node_id: str) -> int:
    return cluster.state("m1").replica_counts().get(node_id, 0)


def drive(client: Client, cluster: InProcessCluster, done: Any, passes: int = 60) -> int:
    """Rebalancer passes and caught-up reports until ``done()``; returns the passes taken."""
    for k in range(passes):
        if done():
            return k
        step(cluster)
        for part in cluster.state("m1").resources["orders"].partitions:
            assert len(part.replicas) >= 2, "a move dropped a partition below its replication factor"
        report_all(client, cluster)
    raise AssertionError(f"not done after {passes} passes: {client.rebalance_status()}")


def test_a_drain_moves_everything_off_two_phase_under_the_throttle(
        client: Client, cluster: InProcessCluster) -> None:
    client.rebalance_configure(max_moves_per_node=1, max_moves=2)
    before = replicas_held(cluster, "n1")
    assert before > 1
    client.node_set_state("n1", admin="draining", admin_reason="decommission")
    step(cluster)
    moves = pending(cluster)
    assert len(moves) == 1 and moves[0].from_node == "n1"  # one per node: n1 is in every move
    status = client.rebalance_status()
    assert status["pending"][0]["from_node"] == "n1" and status["remaining"] == before - 1
    drive(client, cluster, lambda: replicas_held(cluster, "n1") == 0 and not pending(cluster))
    assert client.node_show("n1").admin == "draining"
    client.node_remove("n1")  # empty: removable without force
    assert cluster.state("m1").rebalance.completed == before


def test_a_failed_node_loses_leadership_at_once_and_its_replicas_wait_for_the_delay(
        client: Client, cluster: InProcessCluster, clock: Clock) -> None:
    client.rebalance_configure(rereplicate_after=120)
    led = [p for p in client.routing("orders") if p.leader == "n2"]
    assert led
    client.node_set_state("n2", status="down")
    for route in client.routing("orders"):
        assert route.leader != "n2"  # leadership moved at once ...
    for old in led:
        assert client.routing("orders").route("orders", old.partition).epoch > old.epoch  # ... fenced
    step(cluster)
    assert pending(cluster) == []  # it may come back: nothing re-replicated yet
    assert "n2" in client.rebalance_status()["hold"]
    clock.offset = 121
    drive(client, cluster, lambda: replicas_held(cluster, "n2") == 0 and not pending(cluster))


def test_a_node_back_within_the_delay_keeps_its_replicas(
        client: Client, cluster: InProcessCluster, clock: Clock) -> None:
    held = replicas_held(cluster, "n3")
    client.node_set_state("n3", status="down")
    clock.offset = 60
    step(cluster)
    client.node_start_session("n3")
    clock.offset = 400
    step(cluster)
    assert pending(cluster) == [] and replicas_held(cluster, "n3") == held


def test_maintenance_freezes_moves_and_says_why(client: Client, cluster: InProcessCluster) -> None:
    with pytest.raises(InvalidArgument):
        client.rebalance_configure(maintenance=True)  # a reason is required
    client.rebalance_configure(maintenance=True, reason="switch upgrade")
    client.node_set_state("n1", admin="draining")
    step(cluster)
    assert pending(cluster) == []
    status = client.rebalance_status()
    assert status["maintenance"]["reason"] == "switch upgrade" and status["remaining"] > 0
    with pytest.raises(Conflict):
        client.rebalance_start()
    client.rebalance_configure(maintenance=False)
    step(cluster)
    assert pending(cluster)


def test_balance_moves_wait_for_a_run_which_ends_when_balanced(
        client: Client, cluster: InProcessCluster) -> None:
    client.node_add("n5", "127.0.0.1:9005", zone="z1")
    step(cluster)
    assert pending(cluster) == []  # a new node is not a repair
    status = client.rebalance_status()
    assert status["balance_moves_available"] > 0 and status["run"] is None
    started = client.rebalance_start()
    run_id = started["run"]["id"]
    drive(client, cluster, lambda: cluster.state("m1").rebalance.run is None)
    last = client.rebalance_status()["last_run"]
    assert last["id"] == run_id and last["outcome"] == "done" and last["completed"] > 0
    # Zone z1 (n1, n3, n5) holds one replica of each of the 8 partitions: n5 gets 2 or 3.
    assert replicas_held(cluster, "n5") >= 2
    assert client.rebalance_plan()["plan"]["moves"] == []


def test_a_move_whose_target_fails_is_cancelled(client: Client, cluster: InProcessCluster) -> None:
    client.node_set_state("n1", admin="draining")
    step(cluster)
    move = pending(cluster)[0]
    epoch = client.routing("orders").route(move.resource, move.partition).epoch
    client.node_set_state(move.to_node, status="down")
    step(cluster)
    assert all(m.to_node != move.to_node for m in pending(cluster))
    route = client.routing("orders").route(move.resource, move.partition)
    assert move.to_node not in route.replicas and route.epoch > epoch


def test_a_late_caught_up_report_is_refused(client: Client, cluster: InProcessCluster) -> None:
    client.node_set_state("n1", admin="draining")
    step(cluster)
    move = pending(cluster)[0]
    node = cluster.state("m1").nodes[move.to_node]
    epoch = client.routing("orders").route(move.resource, move.partition).epoch
    client.partition_cancel_move(move.resource, move.partition)
    with pytest.raises(Conflict) as caught:
        client.node_caught_up(node.id, node.epoch, move.resource, move.partition, epoch)
    assert caught.value.code == "no_move"


def test_a_run_can_be_cancelled_with_its_moves(client: Client, cluster: InProcessCluster) -> None:
    client.node_add("n5", "127.0.0.1:9005", zone="z1")
    client.rebalance_start()
    step(cluster)
    assert pending(cluster)
    answer = client.rebalance_cancel(cancel_moves=True)
    assert answer["moves_cancelled"] > 0 and pending(cluster) == []
    assert client.rebalance_status()["last_run"]["outcome"] == "cancelled"


def test_leadership_handover(client: Client, cluster: InProcessCluster) -> None:
    route = client.routing("orders").route("orders", 0)
    other = next(n for n in route.replicas if n != route.leader)
    result = client.partition_set_leader("orders", 0, other)
    assert result.partition is not None
    assert result.partition.leader == other and result.partition.epoch == route.epoch + 1
    with pytest.raises(InvalidArgument):
        client.partition_set_leader("orders", 0, next(n for n in "n1 n2 n3 n4".split()
                                                      if n not in route.replicas))


def test_a_raised_replication_factor_is_filled_two_phase(client: Client,
                                                         cluster: InProcessCluster) -> None:
    client.resource_update("orders", replicas=3)
    step(cluster)
    moves = pending(cluster)
    assert moves and all(m.from_node is None and m.reason == "under_replicated" for m in moves)
    drive(client, cluster, lambda: not pending(cluster) and all(
        len(p.replicas) == 3 for p in cluster.state("m1").resources["orders"].partitions))


def test_a_resource_balanced_on_a_node_metric(client: Client, cluster: InProcessCluster) -> None:
    client.resource_update("orders", balance_metric="disk_bytes")
    assert client.resource_list()[0].balance_metric == "disk_bytes"
    for node in client.node_list():
        session = client.node_start_session(node.id)
        # n1 reports far more disk in use than the others.
        client.node_report_metrics(node.id, session.epoch,
                                   {"disk_bytes": 9e9 if node.id == "n1" else 1e9})
    plan = client.rebalance_plan()["plan"]
    assert plan["moves"] and all(m["from_node"] == "n1" for m in plan["moves"])
    assert {m["reason"] for m in plan["moves"]} == {"metric_overloaded"}


def test_an_operator_two_phase_move(client: Client, cluster: InProcessCluster) -> None:
    route = client.routing("orders").route("orders", 0)
    target = next(n for n in ("n1", "n2", "n3", "n4") if n not in route.replicas)
    source = route.replicas[-1]
    result = client.partition_move("orders", 0, source, target, two_phase=True)
    assert result.partition is not None and result.partition.adding == (target,)
    assert result.partition.replicas == route.replicas  # nothing dropped yet
    report_all(client, cluster)
    after = client.routing("orders").route("orders", 0)
    assert target in after.replicas and source not in after.replicas and after.epoch == route.epoch + 2


def test_a_creation_cut_short_is_finished_by_the_rebalancer(client: Client, cluster: InProcessCluster,
                                                          clock: Clock) -> None:
    """The leader that created a resource's first slice died before the rest: once no slice has
    come for STALLED_CREATION seconds, the (new) leader's rebalancer adds them."""
    from hacoord.core import commands as c
    from hacoord.placement import place_resource
    from hacoord.server.rebalancer import STALLED_CREATION

    state = cluster.state("m1")
    first = place_resource(state, "cut", 3, 2)
    coordinator = cluster.apps["m1"].state.coordinator
    cluster.run(coordinator.submit, c.CreateResource(name="cut", partitions=10,
                                                     replication_factor=2, assignment=first))
    assert state.resources["cut"].creating and len(state.resources["cut"].partitions) == 3
    step(cluster)
    clock.offset += STALLED_CREATION / 2
    step(cluster)
    assert len(state.resources["cut"].partitions) == 3  # not stalled long enough yet
    clock.offset += STALLED_CREATION
    step(cluster)
    res = state.resources["cut"]
    assert not res.creating and len(res.partitions) == 10
    assert all(len(set(p.replicas)) == 2 for p in res.partitions)
