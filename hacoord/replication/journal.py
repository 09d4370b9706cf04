"""hacoord's Raft journal: an append-only file with checksummed records, synced on demand.

PySyncObj's own file journal writes records into an mmap and never flushes them on append; making
it durable means msync, which measured 3.3 ms per call on this kind of machine against 0.1 ms for
``pwrite`` + ``fdatasync``, and its records carry no checksum, so a torn write after a power loss
reads back as garbage. This journal implements the same interface (PySyncObj's ``Journal``), is
swapped in when the engine is built, and:

* appends each record with ``pwrite``: ``[length u32][crc32 u32][index u64][term u64][command]``;
* :meth:`sync_soon` starts an fdatasync of everything written so far on the journal's
  :class:`~hacoord.replication.syncer.JournalSyncer` (a worker thread in production) and
  :meth:`collect` takes its result on the ticking thread: only then does :attr:`durable_end`
  move. The engine sends a follower's acknowledgement, and counts the leader's own copy towards
  a commit, only for what :attr:`durable_end` covers; :meth:`sync` is the blocking form (clean
  stop, a one-member cluster);
* keeps the vote and commit index in a small side file (``.meta``) replaced atomically and
  synced whenever the vote changes, since Raft requires the vote to be durable before it is used;
  the commit index alone (a hint, saved once a second) is written by ``meta_writer`` when there
  is one (a worker thread in production: with a snapshot being written beside it, that fsync
  held a member's loop for 276 ms), under a lock that a vote write takes too, and always from
  the record as it is when written, so a late hint never carries an older vote.

Fail stop. Every failed write, truncate or sync raises :class:`StorageError` and leaves the
journal *failed*: each later call raises too. A failed append first cuts its partial record back
(so no later append can land after garbage), and a failed ``fdatasync`` is never retried as if the
data were safe: the owner abandons the journal and reopens the file from what is durable
(:attr:`durable_end` says how far that is).

Torn tail or corruption. On open, records are read up to the first one that is incomplete, fails
its checksum or breaks the run of indexes. If nothing intact follows it, that is a torn last write
(a crash can only tear what was not yet synced): the tail is cut, but only once the member's
other start-up checks have passed (:meth:`cut_torn_tail`). If an intact record of a later index
follows it anywhere (the damage may cover several records), the damage is in the middle of the
journal and cutting would drop records this member may have acknowledged: :class:`StorageCorrupt`
(the member refuses to start). A bad header, an unreadable ``.meta`` file, or a record whose
command ``entry_check`` refuses (production: :func:`hacoord.replication.safepickle.check_entry`,
so a crafted pickle is refused, never run) is refused the same way.

With ``durable=False`` nothing is synced (a power loss may then lose acknowledged writes; a
process crash still cannot, since the page cache survives it).

A truncation or rewrite first waits for a running sync (they are rare: a conflict with a new
leader, a log compaction, a snapshot install) and bumps :attr:`generation`, so that nothing
acknowledged before it is taken for what the file holds after it.

Threads: used only by the thread that ticks PySyncObj (the member's event loop); the syncer's
worker runs nothing but ``fdatasync`` on the file descriptor.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hacoord.replication.steps import STEPS
from hacoord.replication.storage import (
    FaultHook,
    StorageCorrupt,
    StorageError,
    fsync_dir,
    open_private,
    replace_atomically,
    write_all,
)
from hacoord.replication.syncer import InlineSyncer, JournalSyncer

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIQQ")  # length of the rest, crc32 of the rest, index, term
INDEX = struct.Struct("<Q")
MAGIC = b"HACOORD-JOURNAL-1\n"
#: How long a truncation, rewrite or blocking sync waits for a running sync before the journal
#: fails (a disk that does not answer for this long is treated as a failed one).
SETTLE_TIMEOUT = 60.0

Entry = tuple[bytes, int, int]


def encode_record(command: bytes | str, idx: int, term: int) -> bytes:
    """One journal record (exposed for tests that forge or damage journals)."""
    cmd = command if isinstance(command, bytes) else command.encode()
    rest = struct.pack("<QQ", idx, term) + cmd
    return struct.pack("<II", len(rest), zlib.crc32(rest)) + rest


def _record_at(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """``(end, index, term)`` of an intact record starting at ``offset``, else None."""
    if offset < 0 or offset + HEADER.size > len(data):
        return None
    length, crc, idx, term = HEADER.unpack_from(data, offset)
    end = offset + 8 + length
    if length < 16 or end > len(data) or zlib.crc32(data[offset + 8:end]) != crc:
        return None
    return end, idx, term


def _intact_after(data: bytes, offset: int, last_idx: int | None) -> tuple[int, int] | None:
    """``(start, index)`` of the first intact record at or after ``offset`` whose index follows
    ``last_idx`` (any index when None), else None. Every byte offset is tried: a damaged stretch
    may cover several records, and whatever follows it must be found. Only a record's own
    checksum makes it count; an index beyond what the bytes left could hold is skipped unread."""
    size = len(data)
    low = -1 if last_idx is None else last_idx
    high = (1 << 64) if last_idx is None else last_idx + (size - offset) // HEADER.size + 1
    unpack = HEADER.unpack_from
    for start in range(offset, size - HEADER.size + 1):
        length, crc, idx, _term = unpack(data, start)
        end = start + 8 + length
        if low < idx <= high and length >= 16 and end <= size \
                and zlib.crc32(data[start + 8:end]) == crc:
            return start, idx
    return None


def _require_in_place(fd: int, path: Path) -> None:
    """Raise ``FileNotFoundError`` if ``path`` no longer names the open file ``fd`` (deleted,
    or its directory removed, moved or replaced), ``OSError`` if that cannot be told."""
    held = os.fstat(fd)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        named = None
    if held.st_nlink == 0 or named is None \
            or (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
        raise FileNotFoundError(errno.ENOENT, "the path no longer names the file the member "
                                "writes (the file deleted, or its data directory removed, moved "
                                "or replaced while the member ran)")


class HacoordJournal:
    """A PySyncObj journal (same methods) over a checksummed append-only file.

    Public attributes: ``durable`` (fdatasync on :meth:`sync`), ``dirty`` (changes since the
    last sync started), ``syncs`` (fdatasyncs done), ``torn_tail_bytes`` (cut on open),
    ``durable_end`` (file offset up to which the content is known to be on disk), ``failed``
    (the :class:`StorageError` that stopped it, or None), ``generation`` (truncations and
    rewrites so far), ``syncer`` (where fdatasync runs; inline by default), ``entry_check``
    (why a record read on open cannot be a member's, or None; no check by default).
    """

    def __init__(self, path: str | Path, durable: bool = True, fault: FaultHook | None = None,
                 syncer: JournalSyncer | None = None,
                 meta_writer: JournalSyncer | None = None,
                 entry_check: Callable[[bytes], str | None] | None = None) -> None:
        self.path = Path(path)
        self.entry_check = entry_check
        self.meta_path = Path(str(path) + ".meta")
        self.durable = durable
        self.fault = fault
        self.syncer: JournalSyncer = syncer if syncer is not None else InlineSyncer()
        self.meta_writer = meta_writer
        self._meta_lock = threading.Lock()
        self._meta_writing = False
        self.generation = 0
        #: File end the running sync will make durable, or None when none runs.
        self._syncing: int | None = None
        self.dirty = False
        self.syncs = 0
        self.torn_tail_bytes = 0
        self.failed: StorageError | None = None
        self._entries: list[Entry] = []
        self._offsets: list[int] = []
        self._torn_from: int | None = None
        self._torn_last: int | None = None
        self._meta: dict[str, Any] = self._read_meta()
        self._meta_saved = True
        #: The term in the vote record on disk (what a reopen must find again at least).
        self.stored_term = self.getCurrentTerm()
        self.meta_existed = self.meta_path.exists()
        self.existed = self.path.exists()
        try:
            self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise StorageError("open", self.path, exc) from None
        try:
            self._end = self._load()
        except BaseException:
            os.close(self._fd)
            raise
        self.durable_end = self._end
        #: What the file held when opened (before PySyncObj adds anything): start-up checks.
        self.opened_entries = len(self._entries)
        self.opened_first_index = self._entries[0][1] if self._entries else None
        self.opened_last_index = self._entries[-1][1] if self._entries else None

    # --- file ---------------------------------------------------------------------------------

    def _load(self) -> int:
        try:
            size = os.fstat(self._fd).st_size
            data = os.pread(self._fd, size, 0) if size else b""
        except OSError as exc:
            raise StorageError("read", self.path, exc) from None
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            # New, or torn while it was being created: (re)write the header.
            try:
                os.ftruncate(self._fd, 0)
                write_all(self._fd, MAGIC, 0)
                os.fdatasync(self._fd)
                fsync_dir(self.path.parent)
            except OSError as exc:
                raise StorageError("create", self.path, exc) from None
            return len(MAGIC)
        if not data.startswith(MAGIC):
            raise StorageCorrupt(self.path, "not a hacoord journal (bad header)", offset=0)
        offset = len(MAGIC)
        last_idx: int | None = None
        while offset < size:
            record = _record_at(data, offset)
            if record is None or (last_idx is not None and record[1] != last_idx + 1):
                break
            end, idx, term = record
            command = data[offset + HEADER.size:end]
            unsafe = self.entry_check(command) if self.entry_check is not None else None
            if unsafe is not None:
                raise StorageCorrupt(self.path, f"the record of index {idx} holds {unsafe}",
                                     offset=offset)
            self._offsets.append(offset)
            self._entries.append((command, idx, term))
            last_idx, offset = idx, end
        if offset < size:
            self._check_tail(data, offset, last_idx)
            # Cut only once the member's other start-up checks passed (:meth:`cut_torn_tail`):
            # if one refuses, the bytes stay for whoever looks into it.
            self.torn_tail_bytes = size - offset
            self._torn_from = offset
            self._torn_last = last_idx
        return offset

    def cut_torn_tail(self) -> None:
        """Cut the torn last write found on open, if any (before anything is appended)."""
        if self._torn_from is None:
            return
        offset, self._torn_from = self._torn_from, None
        log.warning("%s: cut a torn last write of %d bytes at offset %d (last intact "
                    "record: index %s)", self.path, self.torn_tail_bytes, offset, self._torn_last)
        try:
            os.ftruncate(self._fd, offset)
            os.fdatasync(self._fd)
        except OSError as exc:
            raise self._fail("truncate", exc) from None

    def _check_tail(self, data: bytes, offset: int, last_idx: int | None) -> None:
        """Raise StorageCorrupt if any intact record of a later index follows (or sits at) the
        first bad one at ``offset``: only a torn last write may be cut."""
        found = _intact_after(data, offset, last_idx)
        if found is None:
            return
        start, idx = found
        if last_idx is None:
            raise StorageCorrupt(self.path, f"the first record is damaged but an intact record "
                                 f"(index {idx}) follows it at offset {start} (corruption, not "
                                 "a torn last write)", offset=offset)
        if start == offset:
            raise StorageCorrupt(self.path, f"the record after index {last_idx} has index {idx}: "
                                 f"index {last_idx + 1} is missing", offset=offset)
        raise StorageCorrupt(self.path, f"the record after index {last_idx} is damaged but an "
                             f"intact record of index {idx} follows it at offset {start} "
                             "(corruption, not a torn last write)", offset=offset)

    def _check(self) -> None:
        if self.failed is not None:
            raise self.failed

    def _fail(self, operation: str, exc: BaseException) -> StorageError:
        self.failed = StorageError(operation, self.path, exc)
        return self.failed

    @property
    def end(self) -> int:
        """File offset where the next record goes."""
        return self._end

    @property
    def synced(self) -> bool:
        """True when everything written is durable (always, without ``durable``)."""
        return not self.durable or self.durable_end >= self._end

    def durable_index(self) -> int:
        """Index of the last entry known to be on disk (0 when none is)."""
        entries = self._entries
        if not entries:
            return 0
        if self.synced:
            return entries[-1][1]
        # Entry i ends where entry i + 1 starts; the entry starting last at or before
        # durable_end ends after it (the file goes on), so the ones before it are whole.
        starts = bisect.bisect_right(self._offsets, self.durable_end)
        return entries[starts - 2][1] if starts >= 2 else max(0, entries[0][1] - 1)

    def term_of(self, index: int) -> int | None:
        """The term of the entry at log index ``index``, None if the journal does not hold it."""
        entries = self._entries
        if not entries:
            return None
        position = index - entries[0][1]
        return entries[position][2] if 0 <= position < len(entries) else None

    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the file this journal writes, None if it cannot be told."""
        try:
            held = os.fstat(self._fd)
        except OSError:
            return None
        return held.st_dev, held.st_ino

    def sync(self) -> None:
        """Make every change so far durable, waiting for it (no-op when nothing changed or
        not durable)."""
        self._settle()
        if not self.dirty:
            return
        self._check()
        if self.durable:
            try:
                with STEPS.timed("journal fdatasync"):
                    self._sync_job(self._fd)
            except OSError as exc:
                raise self._fail("fdatasync", exc) from None
            self.syncs += 1
            self.durable_end = self._end
        self.dirty = False

    def sync_soon(self) -> None:
        """Start making every change so far durable on the syncer, unless a sync is running
        (the next call covers what was written meanwhile); :meth:`collect` takes the result."""
        self.collect()
        if not self.dirty or self._syncing is not None:
            return
        self.dirty = False
        if not self.durable:
            return
        self._syncing = self._end
        fd = self._fd
        self.syncer.start(lambda: self._sync_job(fd))
        self.collect()

    def sync_within(self, budget: float) -> None:
        """:meth:`sync_soon`, then wait up to ``budget`` seconds for the sync (and one more
        for what was written meanwhile) to finish. On a fast disk everything is durable when
        this returns, as with :meth:`sync`; on a slow one the caller's thread waits no longer
        than the budget and the rest finishes in the background."""
        self.sync_soon()
        if budget <= 0 or self._syncing is None:
            return
        deadline = time.monotonic() + budget
        for _ in range(2):
            remaining = deadline - time.monotonic()
            if self._syncing is None or remaining <= 0 or not self.syncer.wait(remaining):
                return
            self.sync_soon()  # collects the finished sync, starts one for anything newer

    def _sync_job(self, fd: int) -> None:
        if self.fault is not None:
            self.fault("journal.sync")
        os.fdatasync(fd)
        # Synced into a file the path no longer names is not durable: nothing is acknowledged.
        _require_in_place(fd, self.path)

    def check_linked(self) -> None:
        """Fail the journal (:class:`StorageError`) if its path no longer names the file it
        writes: the file deleted, or its data directory removed, moved aside or replaced while
        the member ran. The member would go on acknowledging into a file that a restart cannot
        find. An ``fstat`` and a ``stat`` (metadata the kernel holds: no disk I/O)."""
        self._check()
        try:
            _require_in_place(self._fd, self.path)
        except OSError as exc:
            raise self._fail("check", exc) from None

    def collect(self) -> None:
        """Take the result of a finished sync: move :attr:`durable_end`, or fail the journal
        (raises :class:`StorageError`, as every later call will)."""
        self._check()
        if self._syncing is None:
            return
        result = self.syncer.poll()
        if result is None:
            return
        target, self._syncing = self._syncing, None
        ok, error = result
        if not ok:
            raise self._fail("fdatasync", error or OSError("sync failed")) from None
        self.syncs += 1
        self.durable_end = max(self.durable_end, target)

    def _settle(self) -> None:
        """Wait for a running sync and take its result (before the file changes under it)."""
        if self._syncing is None:
            return
        with STEPS.timed("journal sync wait"):
            finished = self.syncer.wait(SETTLE_TIMEOUT)
        if not finished:
            raise self._fail("fdatasync", TimeoutError(f"no answer in {SETTLE_TIMEOUT:.0f}s"))
        self.collect()

    # --- PySyncObj's Journal interface --------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._check()
        self.cut_torn_tail()
        record = encode_record(command, idx, term)
        try:
            if self.fault is not None:
                half = len(record) // 2
                write_all(self._fd, record[:half], self._end)
                self.fault("journal.add")
                write_all(self._fd, record[half:], self._end + half)
            else:
                write_all(self._fd, record, self._end)
        except OSError as exc:
            # Cut the partial record back, so that no later append lands after garbage.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
            raise self._fail("append", exc) from None
        self._offsets.append(self._end)
        self._entries.append((bytes(command) if not isinstance(command, bytes) else command,
                              idx, term))
        self._end += len(record)
        if not self.durable:
            self.durable_end = self._end  # without fsync, a whole write is all there is
        self.dirty = True

    def clear(self) -> None:
        self._truncate_at(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802,N803 (library's names)
        """Drop entries at list positions >= ``entryFrom``."""
        self._truncate_at(entryFrom)

    def _truncate_at(self, position: int) -> None:
        self._check()
        if position >= len(self._entries):
            return
        self._settle()
        self.generation += 1
        end = self._offsets[position] if position > 0 else len(MAGIC)
        try:
            os.ftruncate(self._fd, end)
        except OSError as exc:
            raise self._fail("truncate", exc) from None
        self._end = end
        self.durable_end = min(self.durable_end, end)
        del self._entries[position:]
        del self._offsets[position:]
        self.dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802,N803
        """Drop entries at list positions < ``entryTo`` (after a snapshot): rewrite the file.

        If the rewrite fails before the new file replaces the old one (a full disk, say) the
        journal stays as it was - longer, but whole and consistent with the snapshot - and the
        next compaction tries again. If it fails after (the directory's sync, or reopening the
        new file), the journal fails: its descriptor would write to a file no longer in the
        directory.
        """
        self._check()
        try:
            with STEPS.timed("journal compaction"):
                self._rewrite(self._entries[entryTo:])
        except StorageError as exc:
            if self.failed is not None:
                raise
            log.warning("journal compaction skipped, the journal stays longer: %s", exc)

    def replace(self, entries: list[Entry]) -> None:
        """Make ``entries`` the whole journal, atomically (a snapshot install without a kept
        tail). Raises :class:`StorageError` and fails the journal if it cannot."""
        self._check()
        try:
            with STEPS.timed("journal replace"):
                self._rewrite(list(entries))
        except StorageError as exc:
            self.failed = exc
            raise

    def _rewrite(self, keep: list[Entry]) -> None:
        self._settle()
        self.generation += 1
        records = [encode_record(*entry) for entry in keep]
        offsets, offset = [], len(MAGIC)
        for record in records:
            offsets.append(offset)
            offset += len(record)
        try:
            replace_atomically(self.path, MAGIC + b"".join(records), self.durable, self.fault)
        except StorageError as exc:
            if exc.renamed:  # the path names the new file, synced; the descriptor the old one
                self._describe_renamed(keep, offsets, offset)
                self.failed = exc
            raise
        try:
            fd = open_private(self.path, os.O_RDWR)
        except OSError as exc:
            self._describe_renamed(keep, offsets, offset)
            raise self._fail("reopen", exc) from None
        os.close(self._fd)
        self._fd = fd
        self._describe_renamed(keep, offsets, offset)
        self._torn_from = None  # a new file: whatever was torn in the old one is gone
        self.dirty = False

    def _describe_renamed(self, keep: list[Entry], offsets: list[int], end: int) -> None:
        """What this journal says it holds (entries, durable end) is the new file's, synced,
        once it took the path: also when the rewrite failed after that, so that what the member
        remembers of its disk after the failure matches what a reopen will find there."""
        self._entries, self._offsets, self._end = list(keep), offsets, end
        self.durable_end = end

    def __getitem__(self, item: int | slice) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        """Clean close: sync, save the commit index, close. A failed journal only closes."""
        if self.failed is None:
            self.sync()
            self._settle_meta()
            if not self._meta_saved:
                self._store_meta()
        self.abandon()

    def abandon(self) -> None:
        """Close without writing anything more (a crash, or after a storage failure)."""
        self.syncer.close()
        if self.meta_writer is not None:
            self.meta_writer.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1

    def flush(self) -> None:
        self.sync()

    # --- vote and commit index ----------------------------------------------------------------

    def _read_meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.meta_path.read_bytes())
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError("read", self.meta_path, exc) from None
        except ValueError as exc:
            raise StorageCorrupt(self.meta_path, f"not valid JSON ({exc})") from None
        ok = (isinstance(meta, dict)
              and isinstance(meta.get("term", 0), int) and meta.get("term", 0) >= 0
              and isinstance(meta.get("commit_index", 1), int)
              and (meta.get("voted_for") is None or isinstance(meta.get("voted_for"), str)))
        if not ok:
            raise StorageCorrupt(self.meta_path, "not a journal meta record (term, vote, commit "
                                 "index)")
        return meta

    def _store_meta(self) -> None:
        """Write the record now, durably, on the calling thread (a vote must be on disk
        before it is used)."""
        self._check()
        self._settle_meta()
        self._meta_saved = True
        term = self.getCurrentTerm()
        try:
            with STEPS.timed("journal meta write"):
                self._write_meta()
        except StorageError as exc:
            self.failed = exc
            raise
        self.stored_term = term

    def _write_meta(self) -> None:
        """Replace the record with what it holds now (under the lock: one writer at a time,
        and the record copied whole while no vote changes it)."""
        with self._meta_lock:
            data = json.dumps(dict(self._meta), sort_keys=True).encode()
            replace_atomically(self.meta_path, data, self.durable, self.fault)

    def _collect_meta(self) -> None:
        """Take the result of a background write of the record (fail stop if it failed)."""
        if not self._meta_writing or self.meta_writer is None:
            return
        result = self.meta_writer.poll()
        if result is None:
            return
        self._meta_writing = False
        ok, error = result
        if not ok:
            self._meta_saved = False
            self.failed = error if isinstance(error, StorageError) else \
                StorageError("write", self.meta_path, error or OSError("write failed"))
            raise self.failed

    def _settle_meta(self) -> None:
        if not self._meta_writing or self.meta_writer is None:
            return
        if not self.meta_writer.wait(SETTLE_TIMEOUT):
            raise self._fail("write", TimeoutError(f"no answer in {SETTLE_TIMEOUT:.0f}s"))
        self._collect_meta()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802,N803
        if self._meta.get("commit_index") != raftCommitIndex:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_saved = False

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return int(self._meta.get("commit_index", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:  # noqa: N802,N803
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._store_meta()  # durable before the vote is sent or acted on

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return self._meta.get("voted_for")

    @property
    def rejoining(self) -> bool:
        """Set by ``hacoord member rejoin``: this member's log was moved aside, so it must not
        vote or stand for election until it has caught up with a leader."""
        return bool(self._meta.get("rejoining", False))

    @property
    def fresh(self) -> bool:
        """Set when the member started with no data at all, until it first caught up with a
        leader (or led): a member that may have lost its data, see
        :meth:`~hacoord.replication.engine.HacoordSyncObj.heard_of_existing_cluster`."""
        return bool(self._meta.get("fresh", False))

    def set_fresh(self, fresh: bool) -> None:
        """Set or clear :attr:`fresh`, durably."""
        if fresh != self.fresh:
            if fresh:
                self._meta["fresh"] = True
            else:
                self._meta.pop("fresh", None)
            self._store_meta()

    def begin_rejoin(self) -> None:
        """Mark this member rejoining (durably, now: the mark must outlive a crash before the
        member catches up): it votes for nobody until it has caught up with a leader. The mark
        takes over from :attr:`fresh` (one write)."""
        if not self.rejoining:
            self._meta["rejoining"] = True
            self._meta.pop("fresh", None)
            self._store_meta()

    def finish_rejoin(self, voted_for: str | None = None) -> None:
        """The member caught up with a leader after a rejoin: it may vote again (durably).
        ``voted_for``, if given, is recorded as its vote in the current term in the same
        write."""
        if self.rejoining:
            self._meta.pop("rejoining", None)
            if voted_for is not None:
                self._meta["voted_for"] = voted_for
            self._store_meta()

    def onOneSecondTimer(self) -> None:  # noqa: N802
        # The commit index is a hint (it is recomputed from the leader); saving it once a
        # second is enough, and off the loop when there is a writer for it.
        self._check()
        self._collect_meta()
        if self._meta_saved or self._meta_writing:
            return
        if self.meta_writer is None:
            self._store_meta()
            return
        self._meta_saved = True  # a change after this moment marks it unsaved again
        self._meta_writing = True
        self.meta_writer.start(self._write_meta)


def cut_to_durable(path: str | Path, durable_end: int,
                   identity: tuple[int, int] | None = None) -> bool:
    """After a failed sync, drop what the journal file holds beyond its last successful sync:
    the page cache may show data the disk does not have. With ``identity`` (the failed
    journal's :meth:`HacoordJournal.identity`), only if ``path`` still names that file: never
    cut another file put there meanwhile (a copy restored in place). Returns whether the file
    was that one. Raises ``OSError``."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        named = os.fstat(fd)
        if identity is not None and (named.st_dev, named.st_ino) != identity:
            return False
        if named.st_size > durable_end:
            os.ftruncate(fd, durable_end)
            os.fsync(fd)
        return True
    finally:
        os.close(fd)
