"""Journal syncs off the loop: the journal counts nothing durable before it collected the sync's
result, the worker thread reports failures, and the Raft pieces built on it (a leader's commit
cap, follower acknowledgements held until durable) behave as ``hacoord.replication.durability``
says. The whole engine under deferred syncs is searched in ``test_schedules``."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path

import pytest

from hacoord.replication.durability import DurableMatchIndex, PendingAcks, commit_cap
from hacoord.replication.journal import HacoordJournal
from hacoord.replication.storage import StorageError
from hacoord.replication.syncer import ThreadSyncer
from tests.adapter.sim import DeferredSyncer


def fill(journal: HacoordJournal, first: int, count: int) -> None:
    for idx in range(first, first + count):
        journal.add(f"cmd{idx}".encode(), idx, 1)


def test_nothing_is_durable_until_the_sync_is_collected(tmp_path: Path) -> None:
    syncer = DeferredSyncer()
    journal = HacoordJournal(tmp_path / "raft.journal", syncer=syncer)
    fill(journal, 1, 3)
    journal.sync()  # blocking: entries 1-3 durable
    fill(journal, 4, 2)
    assert not journal.synced and journal.durable_index() == 3
    journal.sync_soon()
    assert syncer.job is not None and journal.durable_index() == 3
    fill(journal, 6, 1)  # written while the sync runs: the next one covers it
    journal.sync_soon()  # one sync at a time
    syncer.finish()
    assert journal.durable_index() == 3  # finished, but not yet collected
    journal.collect()
    assert journal.durable_index() == 5 and not journal.synced
    journal.sync_soon()
    syncer.finish()
    journal.collect()
    assert journal.synced and journal.durable_index() == 6


def test_a_failed_background_sync_fails_the_journal_for_good(tmp_path: Path) -> None:
    def fault(point: str) -> None:
        if point == "journal.sync":
            raise OSError(errno.EIO, "injected")

    syncer = DeferredSyncer()
    journal = HacoordJournal(tmp_path / "raft.journal", syncer=syncer, fault=fault)
    fill(journal, 1, 2)
    journal.sync_soon()
    syncer.finish()
    end_before = journal.durable_end
    with pytest.raises(StorageError, match="fdatasync"):
        journal.collect()
    assert journal.durable_end == end_before
    with pytest.raises(StorageError):
        journal.sync_soon()


def test_a_truncation_waits_for_the_running_sync_and_starts_a_generation(tmp_path: Path) -> None:
    syncer = DeferredSyncer()
    journal = HacoordJournal(tmp_path / "raft.journal", syncer=syncer)
    fill(journal, 1, 5)
    journal.sync_soon()
    generation = journal.generation
    journal.deleteEntriesFrom(3)  # list positions: keeps 1-3; waits for (runs) the sync first
    assert syncer.job is None and journal.generation == generation + 1
    assert journal.durable_index() == 3 and journal.synced


def test_the_worker_thread_syncs_and_wakes_the_caller(tmp_path: Path) -> None:
    woken = threading.Event()
    syncer = ThreadSyncer(on_done=woken.set)
    journal = HacoordJournal(tmp_path / "raft.journal", syncer=syncer)
    try:
        fill(journal, 1, 4)
        journal.sync_soon()
        assert woken.wait(10) and syncer.wait(10)
        journal.collect()
        assert journal.synced and journal.durable_index() == 4 and journal.syncs == 1
        workers = [t for t in threading.enumerate() if t.name == "journal-sync"]
        assert workers and all(t is not threading.current_thread() for t in workers)
    finally:
        journal._destroy()


def test_the_worker_thread_reports_what_the_job_raised() -> None:
    syncer = ThreadSyncer()

    def broken() -> None:
        raise OSError(errno.ENOSPC, "full")

    syncer.start(broken)
    assert syncer.wait(10)
    ok, error = syncer.poll() or (True, None)
    assert not ok and isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert syncer.poll() is None  # reported once
    syncer.close()


@pytest.mark.parametrize(("own", "followers", "cap"), [
    (10, [10, 10], 10),
    (4, [10, 10], 10),   # two followers hold 10 durably: a majority without the leader
    (4, [10, 2], 4),     # the leader's durable copy and one follower's
    (4, [3, 2], 3),
    (7, [9, 8, 1, 0], 7),  # five members: three hold 7
])
def test_the_commit_cap_is_what_a_majority_holds_durably(own: int, followers: list[int],
                                                         cap: int) -> None:
    assert commit_cap(own, followers) == cap


def test_the_match_table_caps_only_item_reads() -> None:
    match = DurableMatchIndex({"b": 9, "c": 3})
    match.cap = 5
    assert (match["b"], match["c"]) == (5, 3)
    assert match.get("b") == 9 and dict(match.items()) == {"b": 9, "c": 3}
    match.cap = None
    assert match["b"] == 9


def test_held_acknowledgements_leave_in_order_once_durable() -> None:
    acks = PendingAcks()
    acks.add("a", {"n": 1}, end=100, generation=0)
    acks.add("b", {"n": 2}, end=200, generation=0)
    acks.add("a", {"n": 3}, end=150, generation=0)
    assert acks.due(120, 0) == [("a", {"n": 1})]
    assert acks.due(180, 0) == []  # the next in line waits, and nothing overtakes it
    assert acks.due(200, 0) == [("b", {"n": 2}), ("a", {"n": 3})]
    acks.add("a", {"n": 4}, end=300, generation=0)
    acks.add("a", {"n": 5}, end=50, generation=1)
    assert acks.due(60, 1) == [("a", {"n": 5})] and acks.dropped == 1


def test_the_commit_hint_is_written_off_the_loop_and_never_reverts_a_vote(tmp_path: Path) -> None:
    writer = DeferredSyncer()
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path, meta_writer=writer)
    journal.setCurrentTerm(3, "m1")  # a vote: written at once
    journal.setRaftCommitIndex(40)
    journal.onOneSecondTimer()  # the hint: handed to the writer, nothing written yet
    assert writer.job is not None
    assert json.loads(Path(str(path) + ".meta").read_text()).get("commit_index") != 40
    journal.setCurrentTerm(4, "m2")  # a new vote waits for the pending hint, then wins
    assert writer.job is None
    record = json.loads(Path(str(path) + ".meta").read_text())
    assert (record["term"], record["voted_for"], record["commit_index"]) == (4, "m2", 40)
    journal.setRaftCommitIndex(41)
    journal.onOneSecondTimer()
    writer.finish()  # written from the record as it is now: the newer vote stays
    record = json.loads(Path(str(path) + ".meta").read_text())
    assert (record["term"], record["voted_for"], record["commit_index"]) == (4, "m2", 41)
    journal._destroy()


def test_a_failed_background_hint_write_fails_the_journal(tmp_path: Path) -> None:
    def fault(point: str) -> None:
        if point.startswith("replace:raft.journal.meta"):
            raise OSError(errno.ENOSPC, "full")

    writer = ThreadSyncer(name="journal-meta")
    journal = HacoordJournal(tmp_path / "raft.journal", meta_writer=writer)
    journal.setRaftCommitIndex(7)
    journal.fault = fault
    journal.onOneSecondTimer()
    assert writer.wait(10)
    with pytest.raises(StorageError, match="ENOSPC|No space|full"):
        journal.onOneSecondTimer()
    with pytest.raises(StorageError):
        journal.sync_soon()  # fail stop: every later call
    journal.abandon()
