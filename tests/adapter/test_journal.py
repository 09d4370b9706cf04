"""hacoord's journal: the PySyncObj Journal interface over a checksummed append-only file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hacoord.replication.journal import HacoordJournal


def fill(journal: HacoordJournal, first: int, count: int, term: int = 1) -> None:
    for idx in range(first, first + count):
        journal.add(f"cmd{idx}".encode(), idx, term)


def test_reopen_returns_every_entry_and_the_vote(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 50)
    journal.setCurrentTerm(7, "127.0.0.1:7501")
    journal.setRaftCommitIndex(40)
    journal._destroy()
    again = HacoordJournal(path)
    assert len(again) == 50
    assert again[0] == (b"cmd1", 1, 1) and again[-1] == (b"cmd50", 50, 1)
    assert again[10:12] == [(b"cmd11", 11, 1), (b"cmd12", 12, 1)]
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (7, "127.0.0.1:7501")
    assert again.getRaftCommitIndex() == 40


def test_delete_from_and_to_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 20)
    journal.deleteEntriesFrom(15)          # keeps positions 0..14 (indexes 1..15)
    fill(journal, 16, 3, term=2)           # 16..18 in term 2
    journal.deleteEntriesTo(5)             # compaction: drops indexes 1..5
    journal.sync()
    assert [e[1] for e in journal] == list(range(6, 19))
    reopened = HacoordJournal(path)
    assert list(reopened) == list(journal)
    assert reopened[-1] == (b"cmd18", 18, 2)


def test_clear_then_add(tmp_path: Path) -> None:
    journal = HacoordJournal(tmp_path / "j")
    fill(journal, 1, 5)
    journal.clear()
    assert len(journal) == 0
    fill(journal, 100, 2)
    assert list(HacoordJournal(tmp_path / "j")) == [(b"cmd100", 100, 1), (b"cmd101", 101, 1)]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_torn_or_corrupt_tail_is_cut_at_the_last_good_record(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal._destroy()
    size = path.stat().st_size
    if damage == "truncate":
        os.truncate(path, size - 3)        # a torn last write
    else:
        with open(path, "r+b") as f:      # a bit flipped inside the last record
            f.seek(size - 2)
            byte = f.read(1)
            f.seek(size - 2)
            f.write(bytes([byte[0] ^ 0xFF]))
    reopened = HacoordJournal(path)
    assert [e[1] for e in reopened] == list(range(1, 10))
    assert reopened.torn_tail_bytes > 0
    fill(reopened, 10, 1, term=3)          # appends continue after the cut
    assert HacoordJournal(path)[-1] == (b"cmd10", 10, 3)


def test_sync_only_when_dirty(tmp_path: Path) -> None:
    journal = HacoordJournal(tmp_path / "j")
    base = journal.syncs
    journal.sync()
    assert journal.syncs == base
    fill(journal, 1, 3)
    journal.sync()
    journal.sync()
    assert journal.syncs == base + 1
    lazy = HacoordJournal(tmp_path / "k", durable=False)
    before = lazy.syncs
    fill(lazy, 1, 3)
    lazy.sync()
    assert lazy.syncs == before and not lazy.dirty


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(b"PYSYNCOBJ\0\0\0 not ours")
    with pytest.raises(ValueError, match="not a hacoord journal"):
        HacoordJournal(path)
