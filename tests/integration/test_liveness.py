"""Integration: node liveness on real member processes, with short timeouts (suspect after 1 s,
down after 2 s), across a SIGKILL of the leader."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hacoord import Client
from hacoord.client import HacoordError
from hacoord.testing.cluster import LocalCluster, running_cluster, wait_for

pytestmark = pytest.mark.integration

SUSPECT_AFTER, DOWN_AFTER = 1.0, 2.0
BEAT_EVERY = 0.2


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path / "c", 3, ("--suspect-after", str(SUSPECT_AFTER),
                                             "--down-after", str(DOWN_AFTER))) as running:
        yield running


def node_status(cluster: LocalCluster, member: str, node: str) -> str:
    return cluster.members[member].get(f"/v1/nodes/{node}")["node"]["status"]


def status_changes(cluster: LocalCluster, member: str, since: int, node: str) -> list[dict[str, Any]]:
    """Every status ``node`` was given after revision ``since``, as ``member`` recorded them."""
    url = cluster.members[member].url + "/v1/watch"
    events = httpx.get(url, params={"since": since, "timeout": 0, "limit": 10_000}, timeout=5,
                       headers=cluster.headers, verify=cluster.verify).json()
    return [e["data"] for e in events["events"]
            if e["type"] in ("NodeStateChanged", "NodeSessionStarted") and e["data"].get("id") == node]


class Heartbeater(threading.Thread):
    """Heartbeats one node through the client every ``BEAT_EVERY`` seconds until stopped."""

    def __init__(self, client: Client, node: str, epoch: int) -> None:
        super().__init__(daemon=True)
        self.client, self.node, self.epoch = client, node, epoch
        self.stop = threading.Event()
        self.beats = 0
        self.errors: list[Exception] = []
        self.statuses: set[str] = set()

    def run(self) -> None:
        for _ in range(10_000):  # bounded; stopped long before
            if self.stop.wait(BEAT_EVERY):
                return
            try:
                self.statuses.add(self.client.node_heartbeat(self.node, self.epoch).status)
                self.beats += 1
            except HacoordError as exc:
                self.errors.append(exc)


def test_a_heartbeating_node_stays_up_across_a_leader_kill_and_a_silent_one_goes_down(
        cluster: LocalCluster) -> None:
    cluster.leader()
    client = cluster.client(timeout=1.0, deadline=10.0)
    for i, node in enumerate(("alive", "silent")):
        client.node_add(node, f"127.0.0.1:{9100 + i}")
    alive_epoch = client.node_start_session("alive").epoch
    silent_epoch = client.node_start_session("silent").epoch
    assert (alive_epoch, silent_epoch) == (2, 2)
    beater = Heartbeater(client, "alive", alive_epoch)
    beater.start()
    try:
        client.node_heartbeat("silent", silent_epoch)  # and then never again
        leader = cluster.leader()
        wait_for("the silent node marked down", lambda: node_status(cluster, leader, "silent") == "down",
                 timeout=30)
        since = cluster.status(leader)["revision"]

        cluster.kill(leader, signal.SIGKILL)
        survivors = cluster.live()
        new_leader = cluster.leader(among=survivors)
        assert new_leader != leader
        # Heartbeats resume through the new leader; give its judge several full timeouts.
        beats = beater.beats
        wait_for("heartbeats through the new leader", lambda: beater.beats >= beats + 5, timeout=30)
        time.sleep(3 * DOWN_AFTER)
        wait_for("a heartbeat answered after the wait", lambda: beater.beats >= beats + 10, timeout=30)
    finally:
        beater.stop.set()
        beater.join(timeout=15)
    assert not beater.is_alive()
    assert beater.errors == [], f"the client surfaced errors instead of riding through: {beater.errors[:3]}"
    assert beater.statuses <= {"up", "suspect"}

    cluster.converged()
    for member in survivors:
        assert node_status(cluster, member, "alive") == "up"
        assert node_status(cluster, member, "silent") == "down"  # not revived by the new leader
        changes = status_changes(cluster, member, since, "alive")
        assert all(change["status"] != "down" for change in changes), changes
    # The old incarnation of a node is refused by the new leader too.
    stale = httpx.post(cluster.members[new_leader].url + "/v1/nodes/alive/heartbeat",
                       json={"epoch": alive_epoch - 1}, timeout=5, headers=cluster.headers,
                       verify=cluster.verify)
    assert (stale.status_code, stale.json()["code"]) == (409, "stale_epoch")
    client.close()
