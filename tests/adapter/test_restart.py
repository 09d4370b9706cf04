"""Restarting a member from its files, on the production stack: a torn last write is cut, and
anything else that lost data the member had synced makes it refuse to start, with one line
naming the file, the offset and ``hacoord member rejoin``; after a rejoin the member catches up
and votes for nobody until it has.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacoord.replication.driver import JOURNAL_FILE, SNAPSHOT_FILE
from hacoord.replication.journal import MAGIC
from hacoord.replication.raft_safety import SafeSyncObj
from hacoord.replication.rejoin import RejoinError, member_lock, rejoin
from hacoord.replication.storage import StorageCorrupt
from tests.adapter.raft_harness import controlled_time
from tests.adapter.sim import SIM_TUNING, Checker, SimCluster

TUNING = dataclasses.replace(SIM_TUNING, log_compaction_min_entries=10**6, max_in_flight=4)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SimCluster]:
    with controlled_time(seed=5) as clock:
        made = SimCluster(tmp_path, clock, seed=5, tuning=TUNING)
        try:
            assert made.run_until(lambda: made.leader() is not None, rounds=100)
            yield made
        finally:
            made.destroy()


def write(cluster: SimCluster, count: int) -> list[str]:
    leader = cluster.leader()
    assert leader is not None
    rids = cluster.submit(leader, count)
    assert cluster.run_until(lambda: all(r in cluster.acked for r in rids))
    cluster.step(rounds=3)  # followers learn the commit index
    return rids


def follower(cluster: SimCluster) -> str:
    return next(n for n in cluster.names if n != cluster.leader())


def compact(cluster: SimCluster, name: str) -> None:
    cluster.members[name].obj.forceLogCompaction()
    cluster.tick(name)
    cluster.finish_snapshot(name)
    cluster.tick(name)


def save_commit_index(cluster: SimCluster) -> None:
    """Let a second pass: the journal saves its commit index once a second."""
    for _ in range(12):
        cluster.step(dt=0.11)


def files(cluster: SimCluster, name: str) -> tuple[Path, Path, Path]:
    root = cluster.root / name
    return root / JOURNAL_FILE, root / SNAPSHOT_FILE, root / (JOURNAL_FILE + ".meta")


def record_offsets(journal: Path) -> list[int]:
    data = journal.read_bytes()
    offsets, offset = [], len(MAGIC)
    while offset < len(data):
        offsets.append(offset)
        offset += 8 + int.from_bytes(data[offset:offset + 4], "little")
    return offsets


def refused(cluster: SimCluster, name: str, *words: str) -> StorageCorrupt:
    with pytest.raises(StorageCorrupt) as caught:
        cluster.start(name)
    message = str(caught.value)
    assert message.startswith("refusing to start: ") and "hacoord member rejoin" in message
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return caught.value


# --- refusals ----------------------------------------------------------------------------------

def test_a_flipped_byte_in_the_middle_of_the_journal(cluster: SimCluster) -> None:
    write(cluster, 6)
    name = follower(cluster)
    cluster.crash(name)
    journal, _, _ = files(cluster, name)
    offsets = record_offsets(journal)
    middle = offsets[len(offsets) // 2]
    data = bytearray(journal.read_bytes())
    data[middle + 30] ^= 0x01
    journal.write_bytes(bytes(data))
    error = refused(cluster, name, str(journal), "not a torn last write")
    assert error.offset == middle


def test_a_deleted_journal(cluster: SimCluster) -> None:
    write(cluster, 3)
    name = follower(cluster)
    cluster.crash(name)
    files(cluster, name)[0].unlink()
    refused(cluster, name, "raft.journal: missing", "term")


def test_an_emptied_journal(cluster: SimCluster) -> None:
    write(cluster, 3)
    name = follower(cluster)
    cluster.crash(name)
    files(cluster, name)[0].write_bytes(MAGIC)
    refused(cluster, name, "holds no entry")


def test_a_missing_snapshot_next_to_a_compacted_journal(cluster: SimCluster) -> None:
    write(cluster, 6)
    name = follower(cluster)
    compact(cluster, name)
    cluster.crash(name)
    _, snapshot, _ = files(cluster, name)
    snapshot.unlink()
    refused(cluster, name, str(snapshot), "missing, but the journal starts at index")


def test_an_edited_snapshot(cluster: SimCluster) -> None:
    write(cluster, 6)
    name = follower(cluster)
    compact(cluster, name)
    cluster.crash(name)
    _, snapshot, _ = files(cluster, name)
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0x01
    snapshot.write_bytes(bytes(data))
    refused(cluster, name, str(snapshot), "checksum mismatch")


def test_a_snapshot_older_than_the_journals_start(cluster: SimCluster) -> None:
    write(cluster, 4)
    name = follower(cluster)
    compact(cluster, name)
    _, snapshot, _ = files(cluster, name)
    older = snapshot.read_bytes()
    write(cluster, 6)
    compact(cluster, name)
    cluster.crash(name)
    snapshot.write_bytes(older)
    refused(cluster, name, "after the snapshot's last index")


def test_a_journal_cut_short_of_what_the_member_committed(cluster: SimCluster) -> None:
    write(cluster, 8)
    save_commit_index(cluster)
    name = follower(cluster)
    cluster.crash(name)
    journal, _, meta = files(cluster, name)
    committed = json.loads(meta.read_bytes())["commit_index"]
    offsets = record_offsets(journal)
    os.truncate(journal, offsets[-3])  # whole records gone: looks like a shorter journal
    refused(cluster, name, f"committed up to index {committed}")


def test_an_unreadable_vote_record(cluster: SimCluster) -> None:
    write(cluster, 2)
    name = follower(cluster)
    cluster.crash(name)
    _, _, meta = files(cluster, name)
    meta.write_text("{not json")
    refused(cluster, name, "raft.journal.meta", "not valid JSON")


# --- starts ------------------------------------------------------------------------------------

def test_a_torn_last_write_is_cut_and_the_member_catches_up(cluster: SimCluster) -> None:
    write(cluster, 4)
    name = follower(cluster)
    cluster.crash(name)
    journal, _, _ = files(cluster, name)
    with open(journal, "ab") as f:
        f.write(b"\x30\x00\x00\x00garbage-of-a-torn-append")
    cluster.start(name)
    checker = Checker(cluster)
    cluster.converge()
    checker.final()


def test_a_restart_between_a_dump_and_the_journal_compaction_keeps_the_tail(
        cluster: SimCluster) -> None:
    """F acknowledges entries, writes its dump, and dies before its journal is compacted; the
    leader dies too and G lagged: F's journal tail is all there is of those entries."""
    write(cluster, 3)
    leader = cluster.leader()
    f, g = (n for n in cluster.names if n != leader)
    cluster.network.cut_link(g, leader)
    cluster.network.cut_link(g, f)
    acked = write(cluster, 4)
    obj = cluster.members[f].obj
    obj.forceLogCompaction()
    cluster.tick(f)
    cluster.finish_snapshot(f)  # the dump is on disk; the compaction would come at the next tick
    journal_before = cluster.log_indexes(f)
    cluster.crash(f)
    cluster.start(f)
    cluster.tick(f)
    dump = cluster.dump_index(f)
    assert dump is not None and journal_before[0] < dump - 1
    assert cluster.log_indexes(f) == [i for i in journal_before if i >= dump - 1]  # compacted
    cluster.crash(leader)
    cluster.network.heal_link(g, f)
    checker = Checker(cluster)
    cluster.converge()
    checker.final()
    assert all(r in cluster.state(g).nodes for r in acked)


def test_the_whole_cluster_killed_after_compaction_comes_back_whole(cluster: SimCluster) -> None:
    acked = write(cluster, 8)
    for name in cluster.names:
        compact(cluster, name)
    acked += write(cluster, 3)
    for name in list(cluster.alive):
        cluster.crash(name, power_loss=True)
    for name in cluster.names:
        cluster.start(name)
    checker = Checker(cluster)
    cluster.converge()
    checker.final()
    assert all(r in cluster.state("n0").nodes for r in acked)


# --- rejoin ------------------------------------------------------------------------------------

def damage_and_rejoin(cluster: SimCluster, name: str) -> Path:
    cluster.crash(name)
    journal, _, meta = files(cluster, name)
    vote = json.loads(meta.read_bytes())
    offsets = record_offsets(journal)
    data = bytearray(journal.read_bytes())
    data[offsets[1] + 30] ^= 0x01
    journal.write_bytes(bytes(data))
    refused(cluster, name)
    aside = rejoin(cluster.root / name)
    assert (aside / JOURNAL_FILE).exists() and not journal.exists()
    assert json.loads(meta.read_bytes()) == {"term": vote["term"], "voted_for": vote["voted_for"],
                                             "rejoining": True}
    return aside


@pytest.mark.parametrize("protected", [True, False], ids=["hacoord", "without-the-rejoin-guard"])
def test_a_rejoined_member_votes_for_nobody_until_it_has_caught_up(
        cluster: SimCluster, protected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """L and F hold acknowledged writes, G lagged. F's journal is damaged and F rejoins empty;
    L dies. Were F to vote, G would win without those writes."""
    if not protected:
        monkeypatch.setattr(SafeSyncObj, "_safe_rejoining", lambda self: False)
    write(cluster, 2)
    leader = cluster.leader()
    f, g = (n for n in cluster.names if n != leader)
    cluster.network.cut_link(g, leader)
    cluster.network.cut_link(g, f)
    acked = write(cluster, 4)
    damage_and_rejoin(cluster, f)
    cluster.crash(leader)
    cluster.start(f)
    cluster.network.heal_link(g, f)
    cluster.run_until(lambda: cluster.leader() is not None, rounds=60)
    if protected:
        assert cluster.leader() is None  # no quorum without F's vote: unavailable, not wrong
        assert cluster.members[f].driver.journal.rejoining
        cluster.start(leader)  # the leader comes back; F catches up from it, then votes again
        checker = Checker(cluster)
        cluster.converge()
        checker.final()
        journal = cluster.members[f].driver.journal
        assert not journal.rejoining
        # The vote it may have lost in the leader's term counts as given to that leader.
        obj = cluster.members[f].driver.obj
        assert obj._SyncObj__raftLeader is not None
        assert journal.getVotedForNodeId() == obj._SyncObj__raftLeader.id
        assert journal.getCurrentTerm() == obj.raftCurrentTerm
    else:
        # G leads without the acknowledged writes: its log is what every member will follow.
        # (What the old leader makes of it when it comes back depends on whether it had a
        # snapshot of those writes when it died: it may keep them as a state nobody else has.)
        assert cluster.leader() == g
        write(cluster, 1)
        assert all(r not in cluster.state(g).nodes for r in acked)


def test_rejoin_refuses_a_running_member_and_an_unreadable_vote(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(MAGIC)
    lock = member_lock(tmp_path)
    try:
        with pytest.raises(RejoinError, match="running"):
            rejoin(tmp_path)
    finally:
        os.close(lock)
    (tmp_path / (JOURNAL_FILE + ".meta")).write_text("{torn")
    with pytest.raises(RejoinError, match="vote record"):
        rejoin(tmp_path)
    aside = rejoin(tmp_path, force=True)
    assert json.loads((tmp_path / (JOURNAL_FILE + ".meta")).read_text())["rejoining"] is True
    assert (aside / JOURNAL_FILE).exists()
    shutil.rmtree(aside)


# --- a member that started with nothing --------------------------------------------------------

def test_a_member_started_with_nothing_stays_new_until_it_has_caught_up(cluster: SimCluster) -> None:
    """A member that starts with an empty data directory is marked new on disk (so a crash
    before it has caught up does not make it look like an old member), and stops being new
    once it has caught up with a leader; members that have caught up are not new."""
    write(cluster, 3)
    assert not any(cluster.members[n].obj.started_empty for n in cluster.names)
    wiped = follower(cluster)
    cluster.crash(wiped)
    for path in files(cluster, wiped):
        path.unlink(missing_ok=True)
    for other in cluster.names:
        if other != wiped:
            cluster.network.cut_link(wiped, other)
    cluster.start(wiped)
    assert cluster.members[wiped].obj.started_empty
    cluster.step(rounds=5)
    cluster.crash(wiped)  # before it heard from anyone: its journal file exists now
    assert (cluster.root / wiped / JOURNAL_FILE).exists()
    cluster.start(wiped)
    assert cluster.members[wiped].obj.started_empty, "a restart made it look like an old member"
    for other in cluster.names:
        if other != wiped:
            cluster.network.heal_link(wiped, other)
    assert cluster.run_until(lambda: not cluster.members[wiped].obj.started_empty, rounds=100)
    assert "fresh" not in json.loads(files(cluster, wiped)[2].read_bytes())
