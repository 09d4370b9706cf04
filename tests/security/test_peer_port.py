"""The Raft peer port against a stranger on the network: no secret, no damage. Real member
processes on 127.0.0.1; the leader must keep its term through each attack."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hacoord.replication.peer import GuardedConnection
from hacoord.replication.poller import EpollPoller
from hacoord.testing.cluster import LocalCluster, running_cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path) as made:
        made.leader()
        yield made


def refused(cluster: LocalCluster, member_id: str, reason: str) -> int:
    text = httpx.get(cluster.members[member_id].url + "/metrics", timeout=5,
                     headers=cluster.headers, verify=cluster.verify).text
    match = re.search(rf'^hacoord_raft_peer_refused_total{{reason="{reason}"}} (\S+)', text, re.M)
    return int(float(match.group(1))) if match else 0


def term(cluster: LocalCluster, member_id: str) -> int:
    return cluster.status(member_id)["member"]["term"]


def test_a_giant_length_prefix_is_dropped_before_it_is_buffered(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    before = term(cluster, leader)
    port = cluster.members[leader].raft_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("i", 2**31 - 1))
        sent, closed = 0, False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # stream zeros until the member hangs up
            try:
                sock.sendall(bytes(1 << 16))
                sent += 1 << 16
            except OSError:
                closed = True
                break
        assert closed, f"the member still took bytes after {sent} of them"
    wait_for("the drop counted", lambda: refused(cluster, leader, "oversized_handshake") >= 1)
    assert term(cluster, leader) == before and cluster.leader() == leader


def test_idle_strangers_are_dropped_and_capped(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    before = term(cluster, leader)
    port = cluster.members[leader].raft_port
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(100)]
    try:
        def all_closed() -> bool:
            for sock in socks:
                sock.settimeout(0.01)
                try:
                    if sock.recv(1) != b"":
                        return False
                except TimeoutError:
                    return False
                except OSError:
                    continue
            return True

        wait_for("every idle stranger dropped", all_closed, timeout=15)
        dropped = (refused(cluster, leader, "too_many_unauthenticated")
                   + refused(cluster, leader, "handshake_timeout"))
        assert dropped >= 100 and refused(cluster, leader, "handshake_timeout") >= 1
    finally:
        for sock in socks:
            sock.close()
    assert term(cluster, leader) == before and cluster.leader() == leader


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_a_member_out_of_descriptors_keeps_its_raft_listener(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        leader = cluster.leader()
        victim = next(m for m in cluster.members if m != leader)
        cluster.kill(victim)
        cluster.start(victim, prefix=("prlimit", "--nofile=200:200", "--"))
        wait_for(f"{victim} ready", lambda: cluster.members[victim].get("/readyz")["ready"])
        member = cluster.members[victim]
        hogs: list[socket.socket] = []
        try:
            for _ in range(260):  # more than the member's descriptors: its accepts fail
                try:
                    hogs.append(socket.create_connection(("127.0.0.1", member.api_port), timeout=2))
                except OSError:
                    break

            def raft_accept_failed() -> bool:
                # One more stranger per poll: either it takes one of the last descriptors or
                # the member cannot accept it. The log, not the API, tells: the API cannot
                # accept either while the member is out of descriptors.
                if "Raft listener cannot accept" in member.log_path.read_text():
                    return True
                if len(hogs) < 400:
                    with contextlib.suppress(OSError):  # refused: the backlog is full too
                        hogs.append(socket.create_connection(("127.0.0.1", member.raft_port),
                                                             timeout=2))
                return False

            wait_for("the Raft listener out of descriptors", raft_accept_failed, timeout=30,
                     interval=0.1)
        finally:
            for sock in hogs:
                sock.close()
        # The Raft listener is still there: a connection is accepted (and, as a stranger, dropped
        # after the handshake timeout), and the member is back in the cluster.
        with socket.create_connection(("127.0.0.1", member.raft_port), timeout=5) as probe:
            probe.settimeout(10)
            assert probe.recv(1) == b""
        wait_for(f"{victim} ready again", lambda: cluster.members[victim].get("/readyz")["ready"],
                 timeout=30)
        text = httpx.get(member.url + "/metrics", timeout=5, headers=cluster.headers,
                         verify=cluster.verify).text
        assert re.search(r"^hacoord_raft_listening 1\.0", text, re.M)
        log = member.log_path.read_text()
        assert "Raft listener cannot accept" in log and refused(cluster, victim, "accept_failed") >= 1
        assert "storage failure" not in log  # its own files still had descriptors (the reserve)


def test_members_name_what_they_understand_when_they_connect(cluster: LocalCluster) -> None:
    """The cluster handshake carries each release's features, so that a member knows what an
    older peer would ignore (mid-upgrade): here every peer understands pre-votes and the read
    index."""
    def named() -> bool | None:
        peers = [peer for m in cluster.members
                 for peer in cluster.status(m)["member"]["peers"].values()]
        return all(p["connected"] and {"pre_vote", "read_index"} <= set(p["features"])
                   for p in peers) or None

    wait_for("every member naming its peers' features", named, timeout=20)


def test_a_connection_made_again_must_authenticate_again() -> None:
    """The library reconnects the same connection object to a peer: whoever answers at that
    address next gets the handshake's bound, not the trust the last connection earned."""
    poller = EpollPoller()
    try:
        conn = GuardedConnection(poller)
        conn.authenticated = True
        conn.disconnect()
        assert not conn.authenticated
    finally:
        poller.close()
