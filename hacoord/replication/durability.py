"""Make PySyncObj's file journal durable before anything acknowledges it.

PySyncObj appends journal records into an mmap and does not flush on append, and stores the vote
(term, votedFor) with a plain write: a process crash keeps them (the page cache survives), a power
loss may not. hacoord promises that an acknowledged write survives the power loss of every member,
so:

* :class:`SyncingJournal` wraps the journal, remembers that it has unsynced records, and
  :meth:`SyncingJournal.sync` msyncs them. The replicator calls ``sync`` at the start of every
  tick (before the leader can count its own entries towards a commit) and before a follower sends
  an acknowledgement (see ``HacoordSyncObj``).
* :class:`FsyncMetaStorer` fsyncs the vote file and its directory before the vote is used.
"""

from __future__ import annotations

import os
from typing import Any

from pysyncobj.journal import MetaStorer
from pysyncobj.pickle import dumps


class SyncingJournal:
    """A proxy over a PySyncObj journal that tracks unsynced changes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.dirty = False
        self.syncs = 0

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._inner.add(command, idx, term)
        self.dirty = True

    def clear(self) -> None:
        self._inner.clear()
        self.dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802,N803 (library's names)
        self._inner.deleteEntriesFrom(entryFrom)
        self.dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802,N803
        self._inner.deleteEntriesTo(entryTo)
        self.dirty = True

    def sync(self) -> None:
        """msync the journal if anything changed since the last call."""
        if self.dirty:
            flush = getattr(self._inner, "flush", None)
            if flush is not None:
                flush()
            self.dirty = False
            self.syncs += 1

    def __getitem__(self, item: Any) -> Any:
        return self._inner[item]

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FsyncMetaStorer(MetaStorer):
    """PySyncObj's vote/commit-index file, written atomically and fsynced."""

    def storeMeta(self, meta: dict) -> None:  # noqa: N802 (library's name)
        path = self.getPath()
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_durable(sync_obj: Any) -> SyncingJournal:
    """Swap ``sync_obj``'s journal for a :class:`SyncingJournal` and its vote storer for a
    :class:`FsyncMetaStorer`. Returns the journal proxy."""
    journal = sync_obj._SyncObj__raftLog
    meta = getattr(journal, "_FileJournal__metaStorer", None)
    if meta is not None:
        journal._FileJournal__metaStorer = FsyncMetaStorer(meta.getPath())
    proxy = SyncingJournal(journal)
    sync_obj._SyncObj__raftLog = proxy
    return proxy
