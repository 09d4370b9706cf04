"""Integration: a drain carried out by the leader's rebalancer on real member processes, with its
leader SIGKILLed while moves are in flight. The pending moves are part of the replicated state:
the new leader carries on, the data nodes (simulated here) report caught up to whoever leads, and
no partition ever has fewer replicas than its replication factor."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hacoord.testing.cluster import LocalCluster, report_caught_up, running_cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path / "c", 3) as running:
        yield running


def test_a_drain_survives_a_leader_kill(cluster: LocalCluster) -> None:
    client = cluster.client(timeout=2.0, deadline=20.0)
    for k in range(1, 6):
        client.node_add(f"n{k}", f"127.0.0.1:{9100 + k}", zone=f"z{k % 3}")
    client.resource_create("orders", 12, 3)
    client.rebalance_configure(max_moves_per_node=1, max_moves=2)
    start = client.routing("orders")
    seen: list[Any] = []
    stop = threading.Event()

    def watch() -> None:
        for event in client.watch(start.revision, poll=1.0, stop=stop.is_set):
            seen.append(event)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    client.node_set_state("n1", admin="draining")
    wait_for("moves in flight", lambda: client.rebalance_status()["pending"] or None)
    old_leader = cluster.leader()
    cluster.kill(old_leader)
    new_leader = cluster.leader(among=[m for m in cluster.members if m != old_leader])
    assert new_leader != old_leader

    def drained() -> bool:
        report_caught_up(client, "orders")
        node = client.node_show("n1", consistent=True)
        return not any(not r.catching_up for r in node.replicas) and node.moves == 0

    wait_for("n1 drained", drained, timeout=60, interval=0.2)
    client.node_remove("n1")
    stop.set()
    watcher.join(timeout=10)
    assert not watcher.is_alive()

    final = client.routing("orders", consistent=True)
    assert all(len(r.replicas) == 3 and "n1" not in r.replicas for r in final)
    epochs = {r.partition: r.epoch for r in start}
    changes = [e for e in seen if e.type == "PartitionChanged"]
    assert any("move completed" in e.data["reason"] for e in changes)
    for event in changes:
        assert len(event.data["replicas"]) >= 3, event  # never below the replication factor
        partition = event.data["partition"]
        assert event.data["epoch"] > epochs[partition], event  # every change fenced
        epochs[partition] = event.data["epoch"]
