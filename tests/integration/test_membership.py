"""Integration: coordinator membership changed online, on real member processes under a steady
write load: a dead member replaced by a new one on a new address, the leader removed (it hands
over first), a member restarted with start flags that still name removed members; no
acknowledged write is lost and every member ends with the same state."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacoord.client import Client, HacoordError
from hacoord.testing.cluster import NO_LIVENESS_JUDGEMENTS, LocalCluster, running_cluster, wait_for

pytestmark = pytest.mark.integration


class Writer:
    """Registers nodes one after another through ``client`` until stopped (bounded)."""

    def __init__(self, client: Client, limit: int = 20_000) -> None:
        self.client = client
        self.limit = limit
        self.acked: list[str] = []
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        for i in range(self.limit):
            if self.stop.is_set():
                return
            try:
                self.client.node_add(f"w{i}", address="127.0.0.1:9000")
                self.acked.append(f"w{i}")
            except HacoordError as exc:
                self.errors.append(exc)

    def more(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more writes were acknowledged."""
        target = len(self.acked) + count
        wait_for(f"{count} more acknowledged writes", lambda: len(self.acked) >= target, timeout)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # Frequent snapshots: a new member's first one then predates its addition. No liveness
    # judgements: the test counts revisions.
    args = ("--log-compaction-min-entries", "50", *NO_LIVENESS_JUDGEMENTS)
    with running_cluster(tmp_path / "c", extra_args=args) as made:
        made.leader()
        yield made


def member_ids(cluster: LocalCluster, member_id: str) -> list[str]:
    return sorted(m["id"] for m in cluster.members[member_id].get("/v1/members")["members"])


def node_ids(cluster: LocalCluster, member_id: str) -> set[str]:
    return {n["id"] for n in cluster.members[member_id].get("/v1/nodes")["nodes"]}


def test_a_dead_member_is_replaced_and_the_leader_removed_under_load(
        cluster: LocalCluster) -> None:
    admin = cluster.client(timeout=3.0, deadline=30.0)
    leader = cluster.leader()
    dead, survivor = (m for m in ("m1", "m2", "m3") if m != leader)
    stale_argv = cluster.argv(cluster.members[survivor])  # names every first member
    with Writer(cluster.client(timeout=2.0, deadline=30.0)) as writer:
        writer.more(100)
        cluster.kill(dead, signal.SIGKILL)
        writer.more(50)
        # Replace the dead member: remove it, then add its successor on another address.
        started = time.monotonic()
        removed = admin.member_remove(dead)
        assert removed.changed and sorted(m.id for m in removed.members) == sorted([leader, survivor])
        assert not admin.member_remove(dead).changed  # asked again: already so
        cluster.retire(dead)
        new = cluster.add_member("m4")
        cluster.start("m4")
        added = admin.member_add("m4", f"127.0.0.1:{new.raft_port}", new.url)
        assert added.changed and "m4" in {m.id for m in added.members}
        wait_for("m4 ready", lambda: new.get("/readyz")["ready"], timeout=60)
        writer.more(50)
        wait_for("m4 to hold every write acknowledged before it was added",
                 lambda: set(writer.acked[:len(writer.acked) - 50]) <= node_ids(cluster, "m4"),
                 timeout=60)
        replaced = time.monotonic() - started
        for member_id in (leader, survivor, "m4"):
            assert member_ids(cluster, member_id) == sorted([leader, survivor, "m4"])
        # Three members again: one down still leaves a majority, m4 counted in it.
        cluster.kill(survivor, signal.SIGKILL)
        writer.more(50)
        # A member restarted with start flags naming a removed member goes by its log.
        subprocess_log = open(cluster.members[survivor].log_path, "ab")  # noqa: SIM115
        cluster.members[survivor].proc = subprocess.Popen(stale_argv, stdout=subprocess_log,
                                                          stderr=subprocess.STDOUT)
        subprocess_log.close()
        wait_for(f"{survivor} to go by the logged membership",
                 lambda: member_ids(cluster, survivor) == sorted([leader, survivor, "m4"]))
        writer.more(50)
        # Remove the leader: it hands over, and the next leader removes it.
        gone = admin.member_remove(leader)
        assert gone.changed and leader not in {m.id for m in gone.members}
        writer.more(50)
        cluster.kill(leader, signal.SIGTERM)
        cluster.retire(leader)
        writer.more(50)
    assert writer.errors == [], f"the client surfaced errors: {writer.errors[:3]}"
    final = cluster.converged(timeout=30)
    assert final["revision"] == 1 + len(writer.acked)  # each write applied once
    for member_id in cluster.live():
        missing = [n for n in writer.acked if n not in node_ids(cluster, member_id)]
        assert not missing, f"{member_id} lost acknowledged writes {missing[:5]}"
        assert member_ids(cluster, member_id) == sorted([survivor, "m4"])
    print(f"\nreplaced a dead member (remove, add, caught up) in {replaced:.2f} s")


def test_a_change_that_would_stall_writes_is_refused_and_changes_nothing(
        cluster: LocalCluster) -> None:
    admin = cluster.client(timeout=5.0, deadline=10.0)
    leader = cluster.leader()
    dead, alive = (m for m in ("m1", "m2", "m3") if m != leader)
    new = cluster.add_member("m4")  # not started
    with pytest.raises(HacoordError) as silent:
        admin.member_add("m4", f"127.0.0.1:{new.raft_port}", new.url)
    assert "m4 does not answer" in str(silent.value)
    cluster.kill(dead, signal.SIGKILL)
    with pytest.raises(HacoordError) as stall:  # the leader and a dead member: no majority
        admin.member_remove(alive)
    assert "remove an unreachable member first" in str(stall.value) and dead in str(stall.value)
    assert member_ids(cluster, leader) == ["m1", "m2", "m3"]
    with pytest.raises(HacoordError) as clash:
        admin.member_add("m5", f"127.0.0.1:{cluster.members[leader].raft_port}", new.url)
    assert "already uses that address" in str(clash.value)
    assert admin.node_add("after", address="127.0.0.1:9000").node.id == "after"
