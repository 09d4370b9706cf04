"""``HacoordSyncObj``: the PySyncObj engine as hacoord runs it.

On top of :class:`~hacoord.replication.raft_safety.SafeSyncObj` (the Raft-safety fixes) it
* builds the library over an :class:`~hacoord.replication.poller.EpollPoller`, so the member's
  event loop can watch Raft's sockets through one descriptor;
* stores the log in a :class:`~hacoord.replication.journal.HacoordJournal` (checksummed,
  fdatasync'd) instead of the library's unflushed mmap journal;
* syncs that journal before a follower acknowledges appended entries; and
* lets the replicator send new entries right after the tick that added them.

This module and its neighbours in ``hacoord.replication`` are the only code that imports pysyncobj.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pysyncobj.syncobj as _syncobj_module

from hacoord.replication.journal import HacoordJournal
from hacoord.replication.poller import EpollPoller
from hacoord.replication.raft_safety import SafeSyncObj


class HacoordSyncObj(SafeSyncObj):
    """A SafeSyncObj over an epoll poller and hacoord's journal (``durable``: fdatasync it).

    ``conf.journalFile`` must be set. ``journal`` is the :class:`HacoordJournal` in use.
    """

    def __init__(self, *args: Any, durable: bool = True, early_election_step: float = 0.05,
                 **kwargs: Any) -> None:
        self.poller = EpollPoller()
        self.early_election_step = early_election_step
        self.on_early_election: Callable[[float], None] | None = None
        self.journal: HacoordJournal | None = None
        self.loading_snapshot = False
        self._sent_up_to = 0

        def make_journal(path: str | None) -> HacoordJournal:
            if path is None:
                raise ValueError("hacoord needs a journal file (conf.journalFile)")
            self.journal = HacoordJournal(path, durable=durable)
            return self.journal

        # The library creates its poller and journal inside __init__ (and may tick from there):
        # hand it ours for the duration.
        originals = (_syncobj_module.createPoller, _syncobj_module.createJournal)
        _syncobj_module.createPoller = lambda _kind: self.poller
        _syncobj_module.createJournal = make_journal
        try:
            super().__init__(*args, **kwargs)
        finally:
            _syncobj_module.createPoller, _syncobj_module.createJournal = originals

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802,N803
        """The library's one real snapshot install: while it runs, the state may be replaced
        (``loading_snapshot``); other reads of the snapshot file are look-ups only."""
        self.loading_snapshot = True
        try:
            super()._SyncObj__loadDumpFile(clearJournal)
        finally:
            self.loading_snapshot = False

    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:  # noqa: N802
        """Losing the connection to the leader (its process died, its host rebooted) is strong
        evidence it is gone: hold the election soon instead of after a full election timeout.
        Starting an election early is always safe in Raft; at worst it costs one needless term.

        The survivors go in a staggered order (by address, a slot of ``early_election_step``
        seconds each, with jitter inside the slot) so that they do not both stand and split the
        vote, which would cost a whole election timeout."""
        super()._SyncObj__onNodeDisconnected(node)
        if node != self._getLeader() or self._isLeader() or self.selfNode is None:
            return
        survivors = sorted(n.address for n in self.otherNodes if n != node)
        survivors = sorted([*survivors, self.selfNode.address])
        slot = survivors.index(self.selfNode.address)
        delay = self.early_election_step * (slot + random.uniform(0.0, 0.5))
        soon = _syncobj_module.monotonicTime() + delay
        self._SyncObj__raftElectionDeadline = min(self._SyncObj__raftElectionDeadline, soon)
        if self.on_early_election is not None:
            # Tick right at the deadline: a late tick would blur the stagger.
            self.on_early_election(delay)

    def send_new_entries(self) -> None:
        """On the leader, send log entries added since the last call now, rather than at the
        next heartbeat (the library's batch mode waits ``appendEntriesPeriod``)."""
        if not self._isLeader():
            return
        last = self._SyncObj__raftLog[-1][1]
        if last != self._sent_up_to:
            self._sent_up_to = last
            self._SyncObj__sendAppendEntries()

    def _safe_send_ack(self, *args: Any, **kwargs: Any) -> None:
        """Every follower acknowledgement goes through here: make the entries durable first."""
        if self.journal is not None:
            self.journal.sync()
        super()._safe_send_ack(*args, **kwargs)
