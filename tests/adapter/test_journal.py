"""hacoord's journal: the PySyncObj Journal interface over a checksummed append-only file."""

from __future__ import annotations

import errno
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hacoord.replication import journal as journal_module
from hacoord.replication.journal import MAGIC, HacoordJournal, cut_to_durable, encode_record
from hacoord.replication.storage import StorageCorrupt, StorageError


class RunsCode:
    """Unpickled, it would run a shell command: what a crafted log entry carries."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


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


@pytest.mark.parametrize("damage", ["truncate", "flip", "zeros"])
def test_a_torn_last_record_is_cut(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal._destroy()
    size = path.stat().st_size
    if damage == "truncate":
        os.truncate(path, size - 3)        # a torn last write
    elif damage == "zeros":               # the last block allocated, its data never written
        with open(path, "r+b") as f:
            f.seek(size - 20)
            f.write(bytes(20 + 4096))
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
    with pytest.raises(StorageCorrupt, match="not a hacoord journal") as refused:
        HacoordJournal(path)
    assert refused.value.offset == 0 and "hacoord member rejoin" in str(refused.value)


def damage_record(path: Path, position: int) -> int:
    """Flip a byte inside the record at list ``position``; return the record's offset."""
    data = path.read_bytes()
    offset = len(MAGIC)
    for _ in range(position):
        offset += 8 + int.from_bytes(data[offset:offset + 4], "little")
    with open(path, "r+b") as f:
        f.seek(offset + 25)  # inside the command
        f.write(bytes([data[offset + 25] ^ 0x40]))
    return offset


@pytest.mark.parametrize("position", [0, 4, 8])
def test_a_bad_record_followed_by_intact_ones_is_corruption_not_a_torn_tail(
        tmp_path: Path, position: int) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal._destroy()
    before = path.read_bytes()
    offset = damage_record(path, position)
    with pytest.raises(StorageCorrupt) as refused:
        HacoordJournal(path)
    assert refused.value.offset == offset
    assert "not a torn last write" in str(refused.value) and str(path) in str(refused.value)
    assert len(path.read_bytes()) == len(before)  # nothing was cut


def record_offsets(path: Path) -> list[int]:
    data, offsets, offset = path.read_bytes(), [], len(MAGIC)
    while offset < len(data):
        offsets.append(offset)
        offset += 8 + int.from_bytes(data[offset:offset + 4], "little")
    return offsets


@pytest.mark.parametrize("span", [2, 3, 6])
def test_damage_over_several_records_is_corruption_and_nothing_is_cut(
        tmp_path: Path, span: int) -> None:
    # A lost stretch of the disk (zeros) over several records in the middle of the journal: the
    # intact records after it prove it is not a torn last write, however many it covers.
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal._destroy()
    offsets = record_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[3]:offsets[3 + span]] = bytes(offsets[3 + span] - offsets[3])
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorrupt, match="not a torn last write") as refused:
        HacoordJournal(path)
    assert refused.value.offset == offsets[3]
    assert f"index {4 + span}" in str(refused.value)
    assert path.read_bytes() == bytes(data)  # the evidence stays as it was found


def test_a_torn_tail_is_cut_only_when_asked_or_before_an_append(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 5)
    journal._destroy()
    size = path.stat().st_size
    os.truncate(path, size - 3)
    opened = HacoordJournal(path)
    assert opened.torn_tail_bytes > 0 and path.stat().st_size == size - 3  # not cut yet
    opened.cut_torn_tail()
    assert [e[1] for e in HacoordJournal(path)] == [1, 2, 3, 4]
    assert HacoordJournal(path).torn_tail_bytes == 0


def test_a_record_whose_command_does_not_decode_safely_is_refused(tmp_path: Path) -> None:
    # A crafted pickle in the journal would run code when the library applies it: the check
    # the engine gives the journal refuses it on open, naming the record.
    from hacoord.replication.safepickle import check_entry

    regular = bytes([0]) + pickle.dumps((0, (b"batch",), {}), protocol=2)
    assert check_entry(regular) is None and check_entry(bytes([1])) is None
    path = tmp_path / "raft.journal"
    path.write_bytes(MAGIC + encode_record(regular, 1, 1)
                     + encode_record(bytes([0]) + pickle.dumps(RunsCode(), protocol=2), 2, 1))
    assert len(HacoordJournal(path)) == 2  # the journal alone does not judge commands
    with pytest.raises(StorageCorrupt, match="index 2 holds a command that does not decode "
                       "safely .*system") as refused:
        HacoordJournal(path, entry_check=check_entry)
    assert refused.value.offset == record_offsets(path)[1]


def test_the_library_decodes_log_entries_without_running_code() -> None:
    import pysyncobj.syncobj

    import hacoord.replication.engine  # noqa: F401 (installs the decoder)
    from hacoord.replication.safepickle import UnsafeLogEntry

    decode = pysyncobj.syncobj.pickle.loads
    assert decode(pickle.dumps((0, (b"x",), {}), protocol=2)) == (0, (b"x",), {})
    with pytest.raises(UnsafeLogEntry, match="system"):
        decode(pickle.dumps(RunsCode(), protocol=2))


def test_a_compaction_failing_after_its_rename_fails_stop(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The new file replaced the old one, then the directory's sync failed: the journal's
    # descriptor still names the old file, now gone from the directory, so an append there
    # would be acknowledged and lost on restart. The journal fails instead.
    import hacoord.replication.storage as storage

    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal.sync()

    def failing_dir_sync(_path: Path) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(storage, "fsync_dir", failing_dir_sync)
    with pytest.raises(StorageError, match="directory sync") as failed:
        journal.deleteEntriesTo(5)
    monkeypatch.undo()
    assert failed.value.renamed and journal.failed is failed.value
    with pytest.raises(StorageError):
        fill(journal, 11, 1)
    assert journal.durable_end == path.stat().st_size  # the new file, synced before its rename
    assert [e[1] for e in HacoordJournal(path)] == list(range(6, 11))


def test_a_gap_in_the_indexes_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(MAGIC + b"".join(encode_record(b"c", i, 1) for i in (1, 2, 4, 5)))
    with pytest.raises(StorageCorrupt, match="index 3"):
        HacoordJournal(path)


def test_unreadable_meta_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    HacoordJournal(path).setCurrentTerm(3, None)
    Path(str(path) + ".meta").write_text('{"term": 3, "voted_')
    with pytest.raises(StorageCorrupt, match=r"raft\.journal\.meta.*not valid JSON"):
        HacoordJournal(path)


def failing_at(point: str, error: int = errno.ENOSPC):
    def fault(name: str) -> None:
        if name == point:
            raise OSError(error, os.strerror(error))
    return fault


def test_a_failed_append_cuts_its_partial_record_and_fails_stop(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 5)
    journal.sync()
    journal.fault = failing_at("journal.add")   # half the record written, then ENOSPC
    with pytest.raises(StorageError, match="append.*ENOSPC"):
        journal.add(b"cmd6", 6, 1)
    assert len(journal) == 5 and journal.failed is not None
    for call in (lambda: journal.add(b"cmd7", 7, 1), journal.clear, lambda: journal.deleteEntriesTo(2)):
        with pytest.raises(StorageError):
            call()
    journal.abandon()
    again = HacoordJournal(path)
    assert [e[1] for e in again] == [1, 2, 3, 4, 5] and again.torn_tail_bytes == 0


def test_a_failed_fdatasync_is_not_retried_as_if_the_data_were_safe(tmp_path: Path) -> None:
    journal = HacoordJournal(tmp_path / "raft.journal")
    fill(journal, 1, 3)
    journal.sync()
    durable = journal.durable_end
    fill(journal, 4, 3)
    journal.fault = failing_at("journal.sync", errno.EIO)
    with pytest.raises(StorageError, match="fdatasync.*EIO"):
        journal.sync()
    journal.fault = None
    with pytest.raises(StorageError):
        journal.sync()  # still failed: the data after durable_end may never reach the disk
    assert journal.durable_end == durable


def test_a_failed_vote_write_fails_stop(tmp_path: Path) -> None:
    journal = HacoordJournal(tmp_path / "raft.journal")
    journal.fault = failing_at("replace:raft.journal.meta:before-rename")
    with pytest.raises(StorageError):
        journal.setCurrentTerm(2, "m2")
    assert journal.failed is not None
    assert not Path(str(journal.path) + ".meta").exists()


def test_a_failed_compaction_keeps_the_whole_journal(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal.fault = failing_at("replace:raft.journal:before-rename")
    journal.deleteEntriesTo(5)              # logged, skipped: the journal stays longer
    assert len(journal) == 10 and journal.failed is None
    journal.fault = None
    fill(journal, 11, 1)
    journal._destroy()
    assert [e[1] for e in HacoordJournal(path)] == list(range(1, 12))


def test_files_stay_private_after_compaction_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal.setCurrentTerm(1, None)
    journal.deleteEntriesTo(5)
    journal.replace([(b"a", 20, 2), (b"b", 21, 2)])
    journal._destroy()
    for name in ("raft.journal", "raft.journal.meta"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert list(HacoordJournal(path)) == [(b"a", 20, 2), (b"b", 21, 2)]


def test_a_real_short_write_leaves_no_garbage_behind(tmp_path: Path) -> None:
    """The kernel cuts writes at RLIMIT_FSIZE (as a full disk would): appends fail stop, and
    reopening finds every record written before, intact, and nothing after."""
    path = tmp_path / "raft.journal"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from hacoord.replication.journal import HacoordJournal
        from hacoord.replication.storage import StorageError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))
        journal = HacoordJournal({str(path)!r})
        written = 0
        try:
            for idx in range(1, 1000):
                journal.add(b"x" * 150, idx, 1)
                written = idx
        except StorageError as exc:
            print(written, exc)
        try:
            journal.add(b"y", written + 1, 1)
        except StorageError:
            print("still failed")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    written = int(out[0].split()[0])
    assert "append" in out[0] and out[1] == "still failed" and 10 < written < 1000
    again = HacoordJournal(path)
    assert [e[1] for e in again] == list(range(1, written + 1)) and again.torn_tail_bytes == 0


def test_a_deleted_journal_fails_stop_and_is_never_taken_for_durable(tmp_path: Path) -> None:
    """A journal whose file was deleted under it (its data directory removed while the member
    ran): the periodic check fails it, and a sync into it does not move ``durable_end``."""
    j = HacoordJournal(tmp_path / "j")
    j.add(b"a", 1, 1)
    j.sync()
    j.check_linked()  # still in its directory: nothing to say
    durable = j.durable_end
    (tmp_path / "j").unlink()
    j.add(b"b", 2, 1)
    with pytest.raises(StorageError, match="deleted, or its data directory removed, moved"):
        j.sync()
    assert j.durable_end == durable and j.durable_index() == 1

    moved = HacoordJournal(tmp_path / "m")  # moved aside: still linked, but not where it was
    moved.add(b"a", 1, 1)
    (tmp_path / "m").rename(tmp_path / "m-aside")
    moved.add(b"b", 2, 1)
    with pytest.raises(StorageError, match="no longer names the file"):
        moved.sync()
    assert moved.durable_index() == 0

    k = HacoordJournal(tmp_path / "k")
    (tmp_path / "k").unlink()
    with pytest.raises(StorageError, match=r"check of .*k failed: \[ENOENT\]"):
        k.check_linked()
    with pytest.raises(StorageError):  # failed for good, like any storage error
        k.add(b"c", 1, 1)


def test_the_cut_after_a_failure_touches_only_the_file_that_failed(tmp_path: Path) -> None:
    """After a storage failure the member cuts its journal back to its durable end, but only
    the journal that failed: a file put at its path meanwhile (a copy restored in place) is
    the operator's, and a cut at the failed file's offset could end it mid-record."""
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 5)
    journal.sync()
    identity, durable_end = journal.identity(), journal.durable_end
    journal.abandon()
    assert identity is not None
    path.rename(tmp_path / "failed")
    path.write_bytes(b"x" * (durable_end + 100))  # another file, longer than that offset
    assert not cut_to_durable(path, durable_end - 10, identity)
    assert path.read_bytes() == b"x" * (durable_end + 100)
    (tmp_path / "failed").replace(path)
    with open(path, "ab") as f:
        f.write(b"torn")
    assert cut_to_durable(path, durable_end, identity)
    assert path.stat().st_size == durable_end


def test_without_fsync_what_was_written_counts_as_on_disk(tmp_path: Path) -> None:
    """Without fsync there is nothing more durable than a whole write: the durable end follows
    every append, so the cut after a failed append keeps every whole record before it."""
    journal = HacoordJournal(tmp_path / "raft.journal", durable=False)
    fill(journal, 1, 3)
    journal.sync_soon()
    fill(journal, 4, 2)
    assert journal.durable_end == journal.end and journal.durable_index() == 5


def test_a_rewrite_that_fails_after_its_rename_describes_the_new_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot install replaces the journal; if reopening the new file fails (EMFILE) the
    journal fails, and what it says it holds must be that new file's: the member checks its
    reopened data against it (an older log it still described would look like data lost)."""
    path = tmp_path / "raft.journal"
    journal = HacoordJournal(path)
    fill(journal, 1, 10)
    journal.sync()
    real_open = journal_module.open_private

    def no_descriptors(target, flags, *args):  # type: ignore[no-untyped-def]
        if Path(target) == path and not flags & os.O_CREAT:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(target, flags, *args)

    monkeypatch.setattr(journal_module, "open_private", no_descriptors)
    with pytest.raises(StorageError, match="reopen"):
        journal.replace([(b"snap", 7, 2), (b"cmd8", 8, 2)])
    monkeypatch.undo()
    assert journal.failed is not None
    assert (journal.durable_index(), journal.term_of(8), len(journal)) == (8, 2, 2)
    journal.abandon()
    again = HacoordJournal(path)
    assert again[-1][1:] == (8, 2)
