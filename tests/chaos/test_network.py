"""The proxied layout carries the real Raft traffic: every link's bytes go through the proxy, and
cutting the proxy's links around the leader makes the others elect a new one (``make chaos``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacoord.testing.cluster import wait_for
from tests.chaos.network import ProxiedCluster

pytestmark = pytest.mark.chaos


def test_raft_traffic_flows_through_the_proxy_and_a_cut_there_moves_the_leadership(
        tmp_path: Path) -> None:
    cluster = ProxiedCluster(tmp_path, 3)
    cluster.start()
    try:
        leader = cluster.leader()
        followers = sorted(m for m in cluster.members if m != leader)
        before = cluster.network.stats()
        with cluster.client(timeout=2.0, deadline=20.0) as client:
            for i in range(20):
                client.node_add(f"n{i}", address="127.0.0.1:1")
        wait_for("the leader connected to every follower, at the Raft level", lambda: all(
            peer["connected"] for peer in cluster.status(leader)["member"]["peers"].values()))
        after = cluster.network.stats()
        for follower in followers:  # entries out, acknowledgements back, all via the proxy
            for direction in (f"{leader}>{follower}", f"{follower}>{leader}"):
                assert after[direction]["bytes"] > before[direction]["bytes"], direction
        assert cluster.converged()["revision"] >= 20

        cluster.network.partition({leader}, set(followers))
        elected = cluster.leader(among=followers, timeout=20)
        assert elected != leader
        cluster.network.heal()
        assert cluster.leader(timeout=20) in followers  # the old leader rejoined and follows
        cluster.converged(timeout=20)
    finally:
        cluster.stop_all()
