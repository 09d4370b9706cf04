"""The proxied layout carries the real Raft traffic: every link's bytes go through the proxy, and
cutting the proxy's links around the leader makes the others elect a new one (``make chaos``)."""

from __future__ import annotations

from pathlib import Path

import httpx
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


def test_a_follower_cut_off_comes_back_without_an_election(tmp_path: Path) -> None:
    """Pre-vote on real members. The proxy holds the cut-off follower's frames: its connections
    stay open until PySyncObj's connection timeout (1 s, two or three election timeouts) drops
    them, and meanwhile it asks for pre-votes without raising its term (PySyncObj alone raised
    it each time). After the heal it follows the same leader in the same term."""
    cluster = ProxiedCluster(tmp_path, 3)
    cluster.start()
    try:
        leader = cluster.leader()
        term = cluster.status(leader)["member"]["term"]
        cut = sorted(m for m in cluster.members if m != leader)[0]
        asked_before = cluster.status(cut)["member"]["pre_votes"]["started"]
        cluster.network.partition({cut}, set(cluster.members) - {cut})

        wait_for("the cut-off follower's connections timed out", lambda: not any(
            peer["connected"] for peer in cluster.status(cut)["member"]["peers"].values()),
            timeout=30)
        cut_off = cluster.status(cut)["member"]
        assert cut_off["term"] == term, "the cut-off follower stood for election"
        assert cut_off["pre_votes"]["started"] > asked_before
        cluster.network.heal()
        wait_for("the follower following again",
                 lambda: cluster.status(cut)["leader"] == leader, timeout=20)
        cluster.converged(timeout=20)
        assert cluster.leader() == leader
        assert {cluster.status(m)["member"]["term"] for m in cluster.members} == {term}
        metrics = httpx.get(cluster.members[cut].url + "/metrics", headers=cluster.headers,
                            verify=cluster.verify, timeout=5).text
        assert 'hacoord_raft_pre_votes_total{event="started"}' in metrics
    finally:
        cluster.stop_all()
