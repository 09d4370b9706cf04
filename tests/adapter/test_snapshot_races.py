"""Two ways PySyncObj 0.3.17's snapshot handling lost acknowledged writes, replayed step by step
on the production stack (:mod:`tests.adapter.sim`), each with hacoord's fix and with the
library's old behaviour put back through the same seams.

1. **An install dropped entries the follower had acknowledged.** A follower B that holds entry E
   after index S, and has acknowledged it, receives the leader's snapshot ending at S (sent in
   answer to a stale rejection) while its commit index is below S. 0.3.17 installed it with the
   journal cleared, dropping E, while the leader still counted B for E, committed it and told the
   client. The leader dies, the lagging member and B elect a leader without E, its index is
   reused. Raft's InstallSnapshot rule (Figure 13, step 6) keeps the entries after a matching
   last entry; so does hacoord.

2. **A stale snapshot replaced the follower's newer dump, and the restart cleared its journal.**
   B writes its own dump at its commit index while the leader's older dump arrives (resent after a
   stale rejection). 0.3.17 renamed the received file over B's dump before deciding not to
   install it, and the journal was then compacted to B's own dump; at the restart the journal did
   not begin with the dump's two entries, so the library cleared it: B came back at the older
   dump, without entries it had acknowledged. hacoord stages a received snapshot beside the dump
   and loads a dump by the Figure 13 rule, so B keeps everything.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hacoord.replication.engine import HacoordSyncObj
from hacoord.replication.snapshot_store import SnapshotStore
from tests.adapter.raft_harness import FakeClock, controlled_time
from tests.adapter.sim import SIM_TUNING, Checker, SimCluster

#: Compaction only when a step asks for it.
TUNING = dataclasses.replace(SIM_TUNING, log_compaction_min_entries=10**6, max_in_flight=4)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[SimCluster, FakeClock]]:
    with controlled_time(seed=3) as clock:
        cluster = SimCluster(tmp_path, clock, seed=3, tuning=TUNING)
        try:
            yield cluster, clock
        finally:
            cluster.destroy()


def heartbeat(cluster: SimCluster, clock: FakeClock, leader: str) -> None:
    """The leader handles what it received, then sends its next heartbeat round."""
    cluster.tick(leader)
    clock.advance(0.11)
    cluster.tick(leader)


_INSTALL = HacoordSyncObj._safe_install_staged
_STAGE = SnapshotStore.setTransmissionData


def old_install(self: HacoordSyncObj, keep_tail: bool) -> None:
    """0.3.17: every install of a newer snapshot cleared the journal."""
    _INSTALL(self, False)


def old_staging(self: SnapshotStore, data: Any) -> bool:
    """0.3.17: a complete received snapshot was renamed over the member's own dump at once."""
    done = _STAGE(self, data)
    if done:
        os.replace(self.received_path, self.path)
        self.received_path.write_bytes(self.path.read_bytes())
    return done


def old_restart_load(self: HacoordSyncObj, clearJournal: bool) -> None:  # noqa: N803
    """0.3.17: at start, a journal that did not begin with the dump's two entries was cleared."""
    header, state = self.snapshots.load()
    log = self._SyncObj__raftLog
    begins = len(log) >= 2 and tuple(log[0]) == header.prev and tuple(log[1]) == header.last
    self._adopt(header, state, begins)


@pytest.mark.parametrize("behaviour", ["hacoord", "pysyncobj-0.3.17"])
def test_an_install_keeps_the_entries_after_a_matching_snapshot(
        world: tuple[SimCluster, FakeClock], behaviour: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if behaviour != "hacoord":
        monkeypatch.setattr(HacoordSyncObj, "_safe_install_staged", old_install)
    cluster, clock = world
    net = cluster.network
    checker = Checker(cluster)
    assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
    cluster.step(rounds=3)
    a = cluster.leader()
    assert a is not None
    b, c = (n for n in cluster.names if n != a)

    # B is cut off while A leads; A and C commit and compact.
    net.cut_link(b, a)
    net.cut_link(b, c)
    cluster.submit(a, 6)
    cluster.step(rounds=6)
    for name in (a, c):
        cluster.compact(name)
    cluster.step(rounds=2)
    assert cluster.dump_index(c) is not None and cluster.log_indexes(b)[-1] < cluster.log_indexes(c)[0]

    # A dies; C is elected with B's vote. C's first guess of B's next index is too high, so B
    # rejects its appends, and B's link back to C is slow: the rejections queue up.
    cluster.crash(a)
    net.heal_link(b, c)
    assert cluster.run_until(lambda: cluster.leader() == c, rounds=60)
    net.hold(b, c)
    cluster.step(rounds=3)
    assert net.describe_queue(b, c).count(f"{b}->{c} next_node_idx(3 fail reset)") >= 2

    # Rejection #1: C sends its snapshot and the entries after it; B catches up.
    net.deliver_through(b, c, "fail")
    heartbeat(cluster, clock, c)
    net.deliver_all()
    cluster.tick(b)
    assert cluster.log_indexes(b) == cluster.log_indexes(c)

    # A comes back, linked to C only. C appends x1-x3 to A and B, and E to B only; A's acks
    # commit the x's (B's acks wait in the slow link). C compacts to x3.
    cluster.start(a)
    net.cut_link(a, b)
    assert cluster.run_until(lambda: cluster.log_indexes(a)[-1] == cluster.log_indexes(c)[-1])
    cluster.submit(c, 3)
    cluster.tick(c)
    net.deliver(c, a, 10)
    net.deliver(c, b, 10)
    cluster.tick(a, b)
    net.hold(c, a)
    (e,) = cluster.submit(c, 1)
    clock.advance(0.01)
    cluster.tick(c)
    net.deliver(c, b, 10)
    cluster.tick(b)
    e_index = cluster.log_indexes(c)[-1]
    assert cluster.log_indexes(b)[-1] == e_index
    net.deliver(a, c, 10)
    cluster.tick(c)
    cluster.tick(c)
    x3 = e_index - 1
    assert cluster.commit(c) == x3 and cluster.commit(b) < x3
    cluster.compact(c)
    assert cluster.dump_index(c) == x3

    # C handles the stale rejection #2 with snapshot x3 (and E after it), then B's earlier acks:
    # it commits E with B and tells the client.
    net.deliver_through(b, c, "fail")
    heartbeat(cluster, clock, c)
    snapshot_chunks = sum(1 for m in net.peek(c, b) if "serialized" in m)
    assert snapshot_chunks >= 2
    net.deliver(b, c, 100)
    cluster.tick(c)
    cluster.tick(c)
    assert e in cluster.acked and cluster.commit(c) == e_index
    checker.check()

    # B receives the snapshot (not the entry resent after it); C dies.
    net.deliver(c, b, snapshot_chunks)
    cluster.tick(b)
    obj = cluster.members[b].obj
    assert obj.snapshots_kept_tail + obj.snapshots_replaced_log == 2  # the catch-up, and this
    cluster.crash(c)
    net.heal_link(a, b)
    for to in (a, b):  # what C still had in flight died with it: neither gets E from C again
        net.drop(c, to, 1000)
    net.release(c, a)
    if behaviour == "hacoord":
        assert obj.snapshots_kept_tail == 1 and cluster.log_indexes(b)[-1] == e_index
        cluster.converge()
        checker.final()
    else:
        assert cluster.log_indexes(b)[-1] == x3  # E dropped, though B acknowledged it
        # A and B elect one of them before C is back; a new write takes E's index.
        assert cluster.run_until(lambda: cluster.leader() in (a, b), rounds=100)
        cluster.submit(cluster.leader(), 1)
        cluster.step(rounds=5)
        cluster.converge()
        assert all(e not in cluster.state(n).nodes for n in cluster.names)  # lost
        with pytest.raises(AssertionError, match="committed another entry"):
            checker.check()


@pytest.mark.parametrize("behaviour", ["hacoord", "pysyncobj-0.3.17"])
def test_a_stale_snapshot_never_replaces_the_members_own_dump(
        world: tuple[SimCluster, FakeClock], behaviour: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if behaviour != "hacoord":
        monkeypatch.setattr(SnapshotStore, "setTransmissionData", old_staging)
        monkeypatch.setattr(HacoordSyncObj, "_SyncObj__loadDumpFile", old_restart_load)
    cluster, clock = world
    net = cluster.network
    checker = Checker(cluster)
    assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
    cluster.submit(cluster.leader(), 4)
    cluster.step(rounds=4)
    leader = cluster.leader()
    assert leader is not None
    a, b = (n for n in cluster.names if n != leader)

    # B loses the next entries in flight (its connection broke and came back at once); A
    # commits them with the leader, which compacts. B's link back is slow from now on.
    cluster.submit(leader, 2)
    cluster.tick(leader)
    assert net.drop(leader, b, 100) == 1
    net.deliver_all()
    cluster.tick(a)
    net.deliver_all()
    cluster.tick(leader)
    cluster.tick(leader)
    cluster.compact(leader)
    dump = cluster.dump_index(leader)
    assert dump is not None and cluster.log_indexes(b)[-1] < dump
    net.hold(b, leader)
    for _ in range(3):
        cluster.step()

    # Rejection #1: the leader sends its dump; B installs it.
    net.deliver_through(b, leader, "fail")
    heartbeat(cluster, clock, leader)
    net.deliver(leader, b, 100)
    cluster.tick(b)
    assert cluster.dump_index(b) == dump and cluster.commit(b) == dump

    # y is committed with A, and B learns it: B's commit index passes the leader's dump.
    cluster.submit(leader, 1)
    cluster.tick(leader)
    net.deliver(leader, a, 100)
    net.deliver(leader, b, 100)
    cluster.tick(a, b)
    net.deliver(a, leader, 100)
    cluster.tick(leader)
    heartbeat(cluster, clock, leader)
    net.deliver(leader, b, 100)
    cluster.tick(b)
    assert cluster.commit(b) == dump + 1

    # A falls behind for good. E goes to B only; the leader answers the stale rejection #2 with
    # its (older) dump again, then B's acks commit E: the client is told.
    net.cut_link(leader, a)
    net.cut_link(a, b)
    (e,) = cluster.submit(leader, 1)
    cluster.tick(leader)
    net.deliver(leader, b, 100)
    cluster.tick(b)
    net.deliver_through(b, leader, "fail")
    heartbeat(cluster, clock, leader)
    snapshot_chunks = sum(1 for m in net.peek(leader, b) if "serialized" in m)
    assert snapshot_chunks >= 2
    net.deliver(b, leader, 100)
    cluster.tick(leader)
    cluster.tick(leader)
    assert e in cluster.acked and e not in cluster.state(a).nodes

    # B writes its own dump at its commit index, and the stale snapshot arrives.
    cluster.compact(b)
    assert cluster.dump_index(b) == dump + 1
    net.deliver(leader, b, snapshot_chunks)
    cluster.tick(b)
    assert cluster.members[b].obj.snapshots_stale == 1
    checker.check()

    # B restarts; the leader dies; A and B elect a leader.
    cluster.crash(b)
    cluster.start(b)
    cluster.tick(b)
    cluster.crash(leader)
    net.heal_link(a, b)
    if behaviour == "hacoord":
        assert cluster.members[b].obj.raftLastApplied == dump + 1
        assert cluster.log_indexes(b)[-1] == dump + 2
        cluster.converge()
        checker.final()
    else:
        assert cluster.members[b].obj.raftLastApplied == dump  # back at the leader's old dump
        assert cluster.log_indexes(b)[-1] == dump
        cluster.converge()
        assert all(e not in cluster.state(n).nodes for n in cluster.names)  # lost
        with pytest.raises(AssertionError, match="committed another entry"):
            checker.check()
