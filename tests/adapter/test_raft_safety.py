"""PySyncObj 0.3.17's acknowledged-write loss, and :class:`SafeSyncObj`'s fix.

Scripted scenarios run real members through :mod:`tests.adapter.raft_harness` (in-memory
network, fake clock, ``doTick``), first on the unmodified library - proving the harness can see
the bug - then on ``SafeSyncObj``.  The last tests document the library's sibling misbehaviours
listed in ARCHITECTURE.md.  Random schedules against the whole production stack (snapshots,
storage faults, power losses) are in ``tests/adapter/test_schedules.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import FAIL_REASON, SyncObj

from hacoord.replication import raft_safety
from hacoord.replication.raft_safety import SafeSyncObj, check_pysyncobj_version
from tests.adapter.raft_harness import Cluster, FakeClock, controlled_time

UNPATCHED = pytest.param(SyncObj, id="unpatched-library")


def elect(cluster: Cluster) -> tuple[str, str, str]:
    """Elect a leader, let everyone catch up; return (leader, follower, other follower)."""
    assert cluster.run_until(lambda: cluster.leader() is not None)
    cluster.step(rounds=3)
    leader = cluster.leader()
    assert leader is not None
    follower, other = (n for n in cluster.names if n != leader)
    return leader, follower, other


def match_index(cluster: Cluster, leader: str, follower: str) -> int:
    return cluster.objs[leader].getStatus()["match_idx_server_" + follower]


def deliver_acks_until_match_rises(cluster: Cluster, leader: str, follower: str) -> None:
    """Deliver the follower's queued acks one by one up to the first that raises matchIndex."""
    net = cluster.network
    while net.pending(follower, leader):
        before = match_index(cluster, leader, follower)
        net.deliver(follower, leader, 1)
        if match_index(cluster, leader, follower) > before:
            return


# -- the acknowledged-write loss ---------------------------------------------------------------
@dataclass
class LossOutcome:
    acked: set[Any]
    lost: set[Any]  # acknowledged, yet missing from the survivors' applied state
    reused: dict[int, tuple[Any, Any]]  # index -> (acked value, value the survivors hold there)
    transcript: list[str] = field(default_factory=list)


def pipelined_ack_then_leader_death(cls: type[SyncObj]) -> LossOutcome:
    """L pipelines batches to F while G is partitioned (lagging); F's oldest ack arrives first.

    Unpatched, the old ack pulls nextIndex[F] back, L resends, the later acks raise
    matchIndex[F] so L commits and acknowledges everything, F then truncates on the resend and
    L dies before F gets the rest.  F and G elect F, which reuses the lost indexes.
    """
    with controlled_time(seed=1) as clock:
        cluster = Cluster(cls, clock)
        leader, follower, lagging = elect(cluster)
        net = cluster.network
        net.cut_link(lagging, leader)
        net.cut_link(lagging, follower)
        for i in range(12):
            cluster.submit(leader, f"c{i}")
        net.record = True
        clock.advance(0.11)
        cluster.tick(leader)  # heartbeat, then the 12 commands enter the leader's log
        clock.advance(0.11)
        cluster.tick(leader)  # several append_entries batches pipelined to the follower
        net.deliver(leader, follower, net.pending(leader, follower))
        deliver_acks_until_match_rises(cluster, leader, follower)  # an *older* batch's ack
        clock.advance(0.11)
        cluster.tick(leader)  # unpatched: resends from the regressed nextIndex
        net.deliver(follower, leader, net.pending(follower, leader))  # the later acks
        clock.advance(0.11)
        cluster.tick(leader)  # commits all 12 and reports SUCCESS
        before = cluster.committed(leader)
        net.deliver(leader, follower, 1)  # the follower sees the first resent batch (if any)
        cluster.crash(leader)
        net.record = False
        net.heal_link(follower, lagging)
        assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
        new_leader = cluster.leader()
        assert new_leader is not None
        cluster.submit(new_leader, "after-failover")
        assert cluster.run_until(lambda: "after-failover" in cluster.acked, rounds=50)
        cluster.step(rounds=3)
        acked = set(cluster.acked) - {"after-failover"}
        survivors = [set(cluster.applied(n)) for n in cluster.alive]
        lost = {v for v in acked if not all(v in s for s in survivors)}
        now = cluster.committed(new_leader)
        reused = {idx: (value, now[idx][1]) for idx, (_, value) in before.items()
                  if value in acked and idx in now and now[idx][1] != value}
        outcome = LossOutcome(acked, lost, reused, list(net.transcript))
        cluster.destroy()
        return outcome


@pytest.mark.parametrize(("cls", "loses"), [
    pytest.param(SyncObj, True, id="unpatched-library-loses"),
    pytest.param(SafeSyncObj, False, id="safe-syncobj-keeps-acknowledged-writes"),
])
def test_pipelined_ack_reorder_then_leader_death(cls: type[SyncObj], loses: bool) -> None:
    outcome = pipelined_ack_then_leader_death(cls)
    report = "\n".join(outcome.transcript)
    assert len(outcome.acked) == 12, report
    if loses:
        assert outcome.lost, report
        assert outcome.reused, report  # the new leader put other entries at their indexes
    else:
        assert not outcome.lost, report
        assert not outcome.reused, report


@pytest.mark.parametrize(("cls", "truncates"), [
    pytest.param(SyncObj, True, id="unpatched-library-truncates-matching-entries"),
    pytest.param(SafeSyncObj, False, id="safe-syncobj-skips-matching-entries"),
])
def test_follower_given_an_old_batch_again(cls: type[SyncObj], truncates: bool) -> None:
    """A duplicate of an already-applied batch must not cut the follower's log."""
    with controlled_time(seed=2) as clock:
        cluster = Cluster(cls, clock)
        leader, follower, _ = elect(cluster)
        for i in range(9):
            cluster.submit(leader, i)
        clock.advance(0.11)
        cluster.tick(leader)
        clock.advance(0.11)
        cluster.tick(leader)
        batches = [m for m in cluster.network.peek(leader, follower) if m.get("entries")]
        assert len(batches) >= 2
        cluster.step(rounds=3)
        length = len(cluster.entries(follower))
        commit = cluster.objs[follower].raftCommitIndex
        cluster.network.send(leader, follower, batches[0])  # the first batch, again
        cluster.network.deliver(leader, follower, 1)
        assert (len(cluster.entries(follower)) < length) is truncates
        assert (cluster.objs[follower].raftCommitIndex < commit) is truncates
        cluster.destroy()


def test_leader_ack_rules() -> None:
    with controlled_time(seed=3) as clock:
        cluster = Cluster(SafeSyncObj, clock)
        leader, follower, _ = elect(cluster)
        obj, net = cluster.objs[leader], cluster.network
        for i in range(6):
            cluster.submit(leader, i)
        cluster.step(rounds=3)

        def indexes() -> tuple[int, int]:
            status = obj.getStatus()
            return (status["next_node_idx_server_" + follower],
                    status["match_idx_server_" + follower])

        next_idx, match = indexes()
        assert next_idx == match + 1
        term = obj.raftCurrentTerm

        def ack(next_node_idx: int, success: bool, reset: bool, term: int = term,
                last: int = match) -> None:
            net.send(follower, leader, {"type": "next_node_idx", "next_node_idx": next_node_idx,
                                        "success": success, "reset": reset, "term": term,
                                        "last_log_idx": last})
            net.deliver(follower, leader, 1)

        ack(3, success=True, reset=False)  # an old batch's ack: moves nothing back
        assert indexes() == (next_idx, match)
        ack(next_idx + 5, success=True, reset=False, term=term - 1)  # another term: ignored
        assert indexes() == (next_idx, match)
        ack(next_idx + 3, success=False, reset=True)  # a reset never moves nextIndex forward
        assert indexes() == (next_idx, match)
        ack(3, success=False, reset=True)  # a hint below matchIndex: retry after matchIndex
        assert indexes() == (match + 1, match)
        ack(2, success=False, reset=True, last=1)  # the follower lost what it acknowledged
        assert indexes() == (2, 1)
        assert cluster.run_until(lambda: indexes() == (next_idx, match))
        assert all(len(cluster.applied(n)) == 6 for n in cluster.names)
        cluster.destroy()


def test_member_restarted_without_its_log_catches_up() -> None:
    """In-memory journal: a restarted follower lost entries it acknowledged; its reset ack
    (last log index below matchIndex) lowers matchIndex and replication starts over."""
    with controlled_time(seed=10) as clock:
        cluster = Cluster(SafeSyncObj, clock)
        leader, follower, _ = elect(cluster)
        for i in range(10):
            cluster.submit(leader, i)
        cluster.step(rounds=3)
        cluster.crash(follower)
        cluster.restart(follower)
        assert cluster.run_until(lambda: cluster.applied(follower) == list(range(10)))
        cluster.destroy()


@pytest.mark.parametrize("size", [100, 333, 2000])
def test_entry_larger_than_a_batch_is_sent_in_chunks(size: int) -> None:
    """0.3.17 marks a chunk 'finish' by the command's length, not the pickle's: the follower
    then unpickles a truncated entry and raises.  SafeSyncObj waits for the last chunk."""
    with controlled_time(seed=4) as clock:
        cluster = Cluster(SafeSyncObj, clock)
        leader, _, _ = elect(cluster)
        cluster.submit(leader, "x" * size)
        assert cluster.run_until(lambda: all(cluster.applied(n) for n in cluster.names))
        assert "x" * size in cluster.acked
        cluster.destroy()
        unpatched = Cluster(SyncObj, clock)
        leader, _, _ = elect(unpatched)
        unpatched.submit(leader, "x" * size)
        raised: Exception | None = None
        try:  # EOFError, IndexError, UnpicklingError or struct.error, depending on the cut
            unpatched.run_until(lambda: all(unpatched.applied(n) for n in unpatched.names))
        except Exception as exc:
            raised = exc
        assert raised is not None
        unpatched.destroy()


def test_version_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    check_pysyncobj_version()
    monkeypatch.setattr(raft_safety, "_LIBRARY_VERSION", "0.3.18")
    with pytest.raises(RuntimeError, match="supports pysyncobj ==0.3.17"):
        SafeSyncObj("127.0.0.1:1", [], conf=None)


# -- the sibling misbehaviours of 0.3.17 -------------------------------------------------------
def empty_follower_log(cls: type[SyncObj], clock: FakeClock) -> tuple[Cluster, str]:
    """F starts a log compaction, then a resent batch cuts its log below the compaction point.

    Unpatched, the compaction's ``deleteEntriesTo`` then removes every entry: empty log.
    """
    cluster = Cluster(cls, clock, logCompactionMinTime=60)
    leader, follower, _ = elect(cluster)
    net = cluster.network
    net.hold(follower, leader)
    for i in range(12):
        cluster.submit(leader, i)
    cluster.step(rounds=4)  # the other follower acks; everyone applies all 12
    cluster.objs[follower].forceLogCompaction()
    cluster.tick(follower)  # in-memory dump taken at lastApplied - 1
    deliver_acks_until_match_rises(cluster, leader, follower)
    clock.advance(0.11)
    cluster.tick(leader)  # unpatched: resends from the regressed nextIndex
    net.deliver(leader, follower, 1)
    cluster.tick(follower)  # the compaction completes
    return cluster, follower


@pytest.mark.parametrize(("cls", "empties"), [
    pytest.param(SyncObj, True, id="unpatched-library-empties-log-then-raises-every-tick"),
    pytest.param(SafeSyncObj, False, id="safe-syncobj-keeps-its-log"),
])
def test_member_left_with_an_empty_log(cls: type[SyncObj], empties: bool) -> None:
    with controlled_time(seed=5) as clock:
        cluster, follower = empty_follower_log(cls, clock)
        assert (len(cluster.entries(follower)) == 0) is empties
        clock.advance(61)  # past logCompactionMinTime: the compaction check runs every tick
        for _ in range(5):
            clock.advance(0.11)
            if empties:
                with pytest.raises(IndexError):
                    cluster.tick(follower)
            else:
                cluster.tick(follower)
        cluster.destroy()


def test_safe_syncobj_counts_failing_ticks_of_an_empty_log() -> None:
    with controlled_time(seed=6) as clock:
        cluster = Cluster(SafeSyncObj, clock, logCompactionMinTime=60)
        _, follower, _ = elect(cluster)
        obj = cluster.objs[follower]
        assert (obj.tick_failures, obj.consecutive_tick_failures) == (0, 0)
        obj._SyncObj__raftLog.clear()  # the state 0.3.17 can reach, forced
        clock.advance(61)
        for _ in range(3):
            with pytest.raises(IndexError):
                cluster.tick(follower)
        assert obj.log_is_empty
        assert (obj.tick_failures, obj.consecutive_tick_failures) == (3, 3)
        assert obj.last_tick_error is not None and obj.last_tick_error.startswith("IndexError")
        cluster.destroy()


@pytest.mark.parametrize("cls", [UNPATCHED])
def test_callback_of_follower_command_never_fires_after_snapshot_install(
        cls: type[SyncObj]) -> None:
    """Documents the library: the adapter needs timeouts, and answers waiters from the request
    memory of an installed snapshot (tests/adapter/test_replicator.py)."""
    with controlled_time(seed=7) as clock:
        cluster = Cluster(cls, clock)
        leader, follower, _ = elect(cluster)
        net = cluster.network
        cluster.submit(follower, "from-follower")
        clock.advance(0.11)
        cluster.tick(follower)  # forwarded to the leader
        net.deliver(follower, leader, net.pending(follower, leader))
        clock.advance(0.11)
        cluster.tick(leader)  # appended; the leader answers with the entry's index
        while net.pending(leader, follower):
            kind = net.peek(leader, follower)[0]["type"]
            net.deliver(leader, follower, 1)
            if kind == "apply_command_response":
                break
        net.cut_link(leader, follower)
        for i in range(5):
            cluster.submit(leader, i)
        cluster.step(rounds=4)
        cluster.objs[leader].forceLogCompaction()
        cluster.step(rounds=2)
        net.heal_link(leader, follower)
        cluster.step(rounds=10)  # snapshot installed on the follower
        assert cluster.applied(follower)[0] == "from-follower"  # applied...
        assert "from-follower" not in cluster.outcomes  # ...but its callback never ran
        cluster.destroy()


@pytest.mark.parametrize("full_dump", [
    pytest.param(False, id="journal-only-comes-back-empty"),
    pytest.param(True, id="journal-plus-full-dump-survives"),
])
@pytest.mark.parametrize("cls", [UNPATCHED])
def test_restart_of_whole_cluster_after_log_compaction(
        cls: type[SyncObj], full_dump: bool, tmp_path: Path) -> None:
    with controlled_time(seed=8) as clock:
        cluster = Cluster(cls, clock, journal_dir=tmp_path, full_dump=full_dump)
        leader, _, _ = elect(cluster)
        for i in range(6):
            cluster.submit(leader, i)
        assert cluster.run_until(lambda: len(cluster.acked) == 6)
        for name in cluster.names:
            cluster.objs[name].forceLogCompaction()
        cluster.step(rounds=3)
        assert all(cluster.entries(n)[0][1] > 1 for n in cluster.names)  # journals compacted
        for name in cluster.names:
            cluster.crash(name)
        for name in cluster.names:
            cluster.restart(name)
        assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
        cluster.submit(cluster.leader(), "after-restart")
        applied = cluster.run_until(lambda: "after-restart" in cluster.acked, rounds=40)
        if full_dump:
            assert applied
            cluster.step(rounds=3)
            assert all(cluster.applied(n) == [*range(6), "after-restart"] for n in cluster.names)
        else:
            assert not applied  # nothing is applied any more, old or new
            assert all(cluster.applied(n) == [] for n in cluster.names)
            assert all(cluster.objs[n].raftLastApplied == 1 for n in cluster.names)
        assert cluster.outcomes.get("after-restart") in (None, FAIL_REASON.SUCCESS)
        cluster.destroy()



@pytest.mark.parametrize(("cls", "loses"), [
    pytest.param(SyncObj, True, id="unpatched-library-clears-journal-and-loses"),
])
def test_restart_between_full_dump_and_journal_compaction(
        cls: type[SyncObj], loses: bool, tmp_path: Path) -> None:
    """F acknowledges entries, writes a full dump, restarts before compacting its journal.

    Unpatched, the restart clears F's journal (it does not start with the dump's entries), so
    entries F acknowledged are gone; with the leader dead and G lagging they are lost. The
    production stack keeps them: tests/adapter/test_restart.py.
    """
    with controlled_time(seed=9) as clock:
        cluster = Cluster(cls, clock, journal_dir=tmp_path, full_dump=True)
        leader, follower, lagging = elect(cluster)
        for i in range(6):
            cluster.submit(leader, i)
        cluster.step(rounds=3)
        net = cluster.network
        net.cut_link(lagging, leader)
        net.cut_link(lagging, follower)
        for i in range(6, 12):
            cluster.submit(leader, i)
        clock.advance(0.11)
        cluster.tick(leader)
        clock.advance(0.11)
        cluster.tick(leader)
        net.deliver(leader, follower, net.pending(leader, follower))
        net.deliver(follower, leader, net.pending(follower, leader))
        clock.advance(0.11)
        cluster.tick(leader)  # committed with the follower's acks: SUCCESS for 6..11
        assert set(range(12)) <= set(cluster.acked)
        cluster.objs[follower].forceLogCompaction()
        cluster.tick(follower)  # full dump written; the journal is compacted on the next tick
        cluster.crash(follower)
        cluster.restart(follower)
        cluster.crash(leader)
        net.heal_link(follower, lagging)
        assert cluster.run_until(lambda: cluster.leader() is not None, rounds=100)
        cluster.submit(cluster.leader(), "after")
        assert cluster.run_until(lambda: "after" in cluster.acked, rounds=50)
        cluster.step(rounds=3)
        lost = set(range(12)) - set(cluster.applied(follower))
        assert bool(lost) is loses, lost
        cluster.destroy()
