"""``HacoordSyncObj``: the PySyncObj engine as hacoord runs it.

On top of :class:`~hacoord.replication.readindex.ReadIndexSyncObj` (the read index, over
:class:`~hacoord.replication.raft_safety.SafeSyncObj`'s Raft-safety fixes and
:class:`~hacoord.replication.prevote.PreVoteSyncObj`'s pre-vote) it
* builds the library over an :class:`~hacoord.replication.poller.EpollPoller` (or a poller the
  caller passes), so the member's event loop can watch Raft's sockets through one descriptor;
* stores the log in a :class:`~hacoord.replication.journal.HacoordJournal` (checksummed,
  fdatasync'd, fail-stop) instead of the library's unflushed mmap journal;
* keeps snapshots in a :class:`~hacoord.replication.snapshot_store.SnapshotStore` instead of the
  library's ``Serializer``: own dumps written off the loop, received ones staged until installed;
* checks, before its first tick, that journal, vote record and dump agree, and refuses
  (:class:`~hacoord.replication.storage.StorageCorrupt`) to start from files that lost something
  this member acknowledged;
* loads and installs snapshots itself (keeping the log entries after a matching last entry),
  and restores the state machine from them; a snapshot received from the leader is decoded on
  a worker (the ``snapshot_decoder``: a second or more at 100,000 partitions, which on the loop
  would stall every request and tick), and installed at the first tick after it is ready;
* syncs that journal off the loop (a :class:`~hacoord.replication.syncer.JournalSyncer`) and
  acknowledges, or counts its own copy towards a commit, only what is durable
  (:mod:`hacoord.replication.durability`);
* lets the replicator send new entries right after the tick that added them; and
* takes a snapshot once replaying the log since the last one would take longer than writing one
  (``compaction_replay``), not only after the library's 5,000 entries: entries are group-commit
  batches of up to 256 commands, and a member restarted after a busy minute spent 0.6 s of its
  start replaying 3,800 entries.

This module and its neighbours in ``hacoord.replication`` are the only code that imports pysyncobj.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import FAIL_REASON, SyncObjConf
from pysyncobj.node import Node, TCPNode
from pysyncobj.poller import Poller
from pysyncobj.transport import TCPTransport

from hacoord.core.model import ClusterState
from hacoord.replication.base import MemberInfo
from hacoord.replication.durability import DurableMatchIndex, PendingAcks, commit_cap
from hacoord.replication.gcpolicy import collector_paused
from hacoord.replication.journal import HacoordJournal
from hacoord.replication.membership import MembershipSyncObj
from hacoord.replication.poller import EpollPoller
from hacoord.replication.safepickle import check_entry
from hacoord.replication.safepickle import install as _decode_log_safely
from hacoord.replication.snapshot import NewerSnapshot, SnapshotError, SnapshotHeader, read_snapshot
from hacoord.replication.snapshot_store import SnapshotStore, SnapshotWriter
from hacoord.replication.statemachine import UNPREPARED, StateMachine
from hacoord.replication.steps import STEPS
from hacoord.replication.storage import UPGRADE_HINT, FaultHook, NewerRelease, StorageCorrupt
from hacoord.replication.syncer import InlineSyncer, JournalSyncer

_decode_log_safely()  # log entries never run code when decoded (safepickle)

log = logging.getLogger(__name__)

_FOLLOWER = _syncobj_module._RAFT_STATE.FOLLOWER


def _not_used(*_args: Any) -> Any:
    raise AssertionError("SnapshotStore replaces the library's serializer hooks")


def unreadable(path: Any, exc: Exception) -> StorageCorrupt:
    """The refusal to start from a snapshot that cannot be read: damaged (rejoin from the
    others), or written by a newer release (run that release)."""
    if isinstance(exc, NewerSnapshot):
        return StorageCorrupt(path, str(exc), hint=UPGRADE_HINT)
    return StorageCorrupt(path, f"unreadable snapshot: {exc}")


class HacoordSyncObj(MembershipSyncObj):
    """A MembershipSyncObj over hacoord's poller, journal and snapshot store (module docstring).

    ``conf.journalFile`` and ``conf.fullDumpFile`` must be set. ``durable`` fdatasyncs the
    journal and snapshots; ``snapshot_writer``, ``poller``, ``fault`` and ``rng`` are seams for
    tests (a writer that finishes when told; a poller that delivers simulated messages; a hook
    that can stop the member at a named point of a storage operation; seeded randomness).
    ``snapshot_decoder`` runs the decode of a received snapshot (a worker thread in a member;
    without one it runs inside the tick that received the last chunk). ``compaction_replay``
    (seconds, None for off) starts a snapshot once the commands applied since the last one took
    that long to apply, or as long as the last own snapshot took to write, whichever is longer:
    a restart then replays for about as long as one snapshot costs.

    Raises :class:`StorageCorrupt` (refuse to start) or
    :class:`~hacoord.replication.storage.StorageError` (cannot read or write) from the
    constructor. ``journal`` is the :class:`HacoordJournal` in use, ``snapshots`` the store.
    """

    def __init__(self, selfNode: Node | str | None, otherNodes: Any, conf: SyncObjConf, *,
                 state_machine: StateMachine, durable: bool = True,
                 snapshot_writer: SnapshotWriter | None = None, poller: Poller | None = None,
                 fault: FaultHook | None = None, syncer: JournalSyncer | None = None,
                 meta_writer: JournalSyncer | None = None, sync_wait: float = 0.0,
                 snapshot_decoder: JournalSyncer | None = None, send_budget: float = 0.005,
                 apply_budget: float = 0.01, compaction_replay: float | None = None,
                 early_election_step: float = 0.05,
                 rng: random.Random | None = None, nodeClass: type[Node] = TCPNode,
                 transportClass: Any = TCPTransport, members: tuple[MemberInfo, ...] = ()) -> None:
        if conf.journalFile is None or conf.fullDumpFile is None:
            raise ValueError("hacoord needs a journal and a dump file (journalFile, fullDumpFile)")
        nothing = not any(Path(p).exists() for p in (
            conf.journalFile, conf.journalFile + ".meta", conf.fullDumpFile))
        self.poller = poller if poller is not None else EpollPoller()
        self.early_election_step = early_election_step
        self._rng = rng if rng is not None else random.Random()
        self.on_early_election: Callable[[float], None] | None = None
        self.state_machine = state_machine
        self.snapshots = SnapshotStore(conf.fullDumpFile, lambda: state_machine.state,
                                       snapshot_writer, durable, fault,
                                       members_at=lambda index: self.config_at(index))
        self.journal: HacoordJournal | None = None
        self._sent_up_to = 0
        self.send_budget = send_budget
        #: True when the last send stopped at ``send_budget`` with more to send.
        self.send_backlog = False
        self.apply_budget = apply_budget
        #: True when the last tick stopped applying at ``apply_budget`` with more committed.
        self.apply_backlog = False
        self.compaction_replay = compaction_replay
        #: ``state_machine.apply_seconds`` when an own snapshot was last started (or tried, when
        #: forced) or a snapshot adopted: what a restart would replay is applied after it.
        self._applied_at_snapshot = 0.0
        #: Follower acknowledgements waiting for the journal to be durable.
        self.pending_acks = PendingAcks()
        #: Seconds the ticking thread may wait for a journal sync before leaving it to finish
        #: in the background (a fast disk then acknowledges as if syncing in place).
        self.sync_wait = sync_wait
        self.snapshot_decoder = snapshot_decoder if snapshot_decoder is not None else InlineSyncer()
        #: The received snapshot's decode: empty while it runs, then its result or exception.
        self._decoded: list[Any] = []
        self._decode_started = 0.0
        self._staged: tuple[SnapshotHeader, ClusterState, object] | None = None
        #: The member's own dump, read and prepared ahead by :meth:`preload`.
        self._preloaded: tuple[SnapshotHeader, ClusterState, object] | None = None
        conf.serializer = conf.deserializer = _not_used  # the store does this work

        def make_journal(path: str | None) -> HacoordJournal:
            self.journal = HacoordJournal(str(path), durable=durable, fault=fault, syncer=syncer,
                                          meta_writer=meta_writer, entry_check=check_entry)
            return self.journal

        # The library creates its poller, journal and serializer inside __init__ (and may tick
        # from there): hand it ours for the duration.
        originals = (_syncobj_module.createPoller, _syncobj_module.createJournal,
                     _syncobj_module.Serializer)
        _syncobj_module.createPoller = lambda _kind: self.poller
        _syncobj_module.createJournal = make_journal
        _syncobj_module.Serializer = lambda *_args: self.snapshots
        try:
            super().__init__(selfNode, otherNodes, conf=conf, consumers=[state_machine],
                             nodeClass=nodeClass, transportClass=transportClass,
                             members=members)
        except BaseException:
            if self.journal is not None:
                self.journal.abandon()
            raise
        finally:
            (_syncobj_module.createPoller, _syncobj_module.createJournal,
             _syncobj_module.Serializer) = originals
        try:
            self._check_files()
            self.journal.cut_torn_tail()  # only now: a refusal above leaves the file as found
            header = self.snapshots.header
            if header is not None:  # the dump's membership, before anything ticks
                self._config_rescan(header.index, header.members)
        except BaseException:
            self.abandon()
            raise
        # Always, even alone: a one-member cluster may be joined by others.
        self._SyncObj__raftMatchIndex = DurableMatchIndex(self._SyncObj__raftMatchIndex)
        if nothing:
            self.journal.set_fresh(True)  # kept across restarts until it has caught up
        #: Started with no data at all (now or in a start it has not caught up since): a new
        #: member, or one whose data was lost (see :meth:`heard_of_existing_cluster`).
        self.started_empty = self.journal.fresh
        self.addOnTickCallback(self._after_apply)

    def heard_of_existing_cluster(self, peer: Any, cluster_id: str, first: bool = True) -> None:
        """A peer says it belongs to the named cluster ``cluster_id``, while this member started
        empty and has not caught up that far (its own state has no id). The cluster was named
        by a leader with a majority, so it has a history: this member may have had a part of it
        and lost its data (a wiped disk, a new volume). Its vote could then elect a leader
        lacking entries it had acknowledged, so it votes for nobody until it has caught up with
        a leader, as after ``hacoord member rejoin``. (A member that is simply new loses
        nothing by waiting: the majority that named the cluster elects without it.)

        ``first``: the peer named it as the connection opened. A peer that names it later
        learned it meanwhile: while this member follows a leader, that is the cluster being
        named as it watches (a new cluster whose last member came late), not news of a past
        it may have lost."""
        journal = self.journal
        if (not self.started_empty or journal is None or journal.rejoining
                or self.state_machine.state.cluster_id
                or (not first and self._SyncObj__raftLeader is not None)):
            return
        self.started_empty = False
        journal.begin_rejoin()  # the rejoin mark takes over from the new-member one
        log.warning("this member started with an empty data directory, but peer %s belongs to "
                    "cluster %s, which already exists: it votes for nobody until it has caught "
                    "up with a leader (its data may have been lost)", peer, cluster_id[:64])

    def _after_apply(self) -> None:
        """Each tick after its apply, before its poll (PySyncObj's tick callbacks)."""
        self._safe_finish_rejoin()
        if self.started_empty and (self._safe_caught_up() or (
                self._isLeader() and self.leader_commit_is_current)):
            # It has a part in the cluster now: a peer naming the cluster says nothing new.
            self.started_empty = False
            if self.journal is not None:
                self.journal.set_fresh(False)

    # --- start ------------------------------------------------------------------------------

    def _check_files(self) -> None:
        """Refuse journal, vote record and dump that cannot be what this member synced."""
        journal = self.journal
        assert journal is not None
        self.snapshots.discard_leftovers()
        dump = Path(self.snapshots.path)
        term = journal.getCurrentTerm()
        if journal.rejoining:
            term = 0  # its files were moved aside on purpose (hacoord member rejoin)
        if not journal.existed and journal.meta_existed and term > 0:
            raise StorageCorrupt(journal.path, f"missing, while {journal.meta_path.name} records "
                                 f"term {term}: the log this member acknowledged is gone")
        if journal.opened_entries == 0 and journal.meta_existed and term > 0:
            raise StorageCorrupt(journal.path, f"holds no entry, while {journal.meta_path.name} "
                                 f"records term {term}: it was emptied or truncated")
        header: SnapshotHeader | None = None
        if dump.exists():
            try:
                header, _ = self.snapshots.load(with_state=False)
            except (OSError, SnapshotError) as exc:
                raise unreadable(dump, exc) from None
        first = journal.opened_first_index
        if header is None and first is not None and first > 1:
            raise StorageCorrupt(dump, f"missing, but the journal starts at index {first}: the "
                                 "entries before it exist only in that snapshot")
        if header is not None and first is not None and first > header.index:
            raise StorageCorrupt(journal.path, f"starts at index {first}, after the snapshot's last "
                                 f"index {header.index}: the entries between are missing")
        held = max(journal.opened_last_index or 0, header.index if header else 0)
        committed = journal.getRaftCommitIndex()
        if committed > max(held, 1):
            raise StorageCorrupt(journal.path, f"ends at index {held}, but this member had "
                                 f"committed up to index {committed}: entries it acknowledged "
                                 "are missing")

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802,N803
        """The library's start-up load of the dump (the only caller left): adopt it by the
        same rule as an install, keeping journal entries after a matching last entry."""
        prepared: object = UNPREPARED
        if self._preloaded is not None:
            header, state, prepared = self._preloaded
            self._preloaded = None
            self.snapshots.header = header
        else:
            try:
                header, state = self.snapshots.load()
            except (OSError, SnapshotError) as exc:
                raise unreadable(self.snapshots.path, exc) from None
        assert state is not None
        self._adopt(header, state, self._holds(header.last), prepared)
        # The library loads the dump in the member's first tick, after its election deadline
        # was set at construction: a load longer than an election timeout (100,000 partitions
        # take seconds) would make a restarted follower stand for election before it heard
        # from the leader, deposing it. The timeout counts from now, as for a new member.
        self._SyncObj__raftElectionDeadline = (
            _syncobj_module.monotonicTime() + self._SyncObj__generateRaftTimeout())

    def preload(self) -> None:
        """Read this member's own dump and prepare its state for the first tick to adopt,
        before that tick, perhaps on a worker thread (it touches only the file and the objects
        it makes; nothing may tick meanwhile). If the dump is missing or cannot be read, the
        first tick reads it the library's way and reports the failure."""
        try:
            with collector_paused():  # as for a received snapshot (hacoord.replication.gcpolicy)
                header, state = read_snapshot(self.snapshots.path)
                assert state is not None
                self._preloaded = (header, state, self.state_machine.prepare(state))
        except (OSError, SnapshotError):
            return

    # --- snapshots (SafeSyncObj's storage hooks) -----------------------------------------------

    def _holds(self, entry: tuple[Any, int, int]) -> bool:
        log = self._SyncObj__raftLog
        if len(log) == 0 or entry[1] < log[0][1]:
            return False
        held = self._SyncObj__getEntries(entry[1], 1)
        return bool(held) and held[0][2] == entry[2]

    def _safe_snapshot_chunk(self, serialized: Any) -> bool:
        return self.snapshots.setTransmissionData(serialized)

    def _safe_begin_decode(self) -> None:
        store, machine = self.snapshots, self.state_machine
        decoded = self._decoded = []
        self._decode_started = time.perf_counter()

        def decode() -> None:  # on the decoder's thread: touches the staged file and new objects
            try:
                # No collection meanwhile: it would scan the young state holding the GIL.
                with collector_paused():
                    header, state = store.read_received()
                    assert state is not None
                    decoded.append((header, state, machine.prepare(state)))
            except BaseException as exc:  # noqa: BLE001 (handed to the ticking thread)
                decoded.append(exc)

        self.snapshot_decoder.start(decode)

    def _safe_snapshot_staged(self) -> tuple[Any, int, int] | None:
        if not self._decoded:
            return None
        (result,) = self._decoded
        self._decoded = []
        self.snapshot_decoder.poll()  # the job reports through ``_decoded``; forget its status
        if isinstance(result, NewerSnapshot):
            raise NewerRelease(f"a snapshot received from the leader: {result}") from None
        if isinstance(result, BaseException):
            raise result
        self._staged = result
        return result[0].last

    def _safe_discard_staged(self) -> None:
        self._staged = None
        self.snapshots.discard_received()

    def _safe_install_staged(self, keep_tail: bool) -> None:
        assert self._staged is not None
        header, state, prepared = self._staged
        self._staged = None
        # The dump first (durably), then the journal: a crash in between restarts from the new
        # dump, and the load keeps or replaces the journal by the same rule.
        with STEPS.timed("install received snapshot"):
            self.snapshots.install_received(header)
        self._adopt(header, state, keep_tail, prepared)
        log.info("installed a snapshot from the leader ending at index %d (decoded off the loop "
                 "in %.2f s)", header.index, time.perf_counter() - self._decode_started)

    def _adopt(self, header: SnapshotHeader, state: ClusterState, keep_tail: bool,
               prepared: object = UNPREPARED) -> None:
        """Make the snapshot the applied state; align the log with it. ``prepared`` is what
        :meth:`StateMachine.prepare` made of ``state`` off the loop, if it was."""
        with STEPS.timed("adopt snapshot"):
            self._adopt_now(header, state, keep_tail, prepared)

    def _adopt_now(self, header: SnapshotHeader, state: ClusterState, keep_tail: bool,
                   prepared: object) -> None:
        log = self._SyncObj__raftLog
        if keep_tail:
            pos = header.prev[1] - log[0][1]
            if pos > 0:
                log.deleteEntriesTo(pos)
        else:
            log.replace([header.prev, header.last])
        self.state_machine.restore(state, prepared)
        self._config_rescan(header.index, header.members)
        self._applied_at_snapshot = self.state_machine.apply_seconds
        self._SyncObj__raftLastApplied = header.index
        # A snapshot holds applied, hence committed, entries only.
        commit = max(self._SyncObj__raftCommitIndex, header.index)
        commit = min(commit, log[-1][1])
        if commit != self._SyncObj__raftCommitIndex:
            self._SyncObj__raftCommitIndex = commit
            log.setRaftCommitIndex(commit)

    # --- running ----------------------------------------------------------------------------

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
        survivors = sorted(n.id for n in self.otherNodes if n != node)
        survivors = sorted([*survivors, self.selfNode.id])
        slot = survivors.index(self.selfNode.id)
        delay = self.early_election_step * (slot + self._rng.uniform(0.0, 0.5))
        soon = _syncobj_module.monotonicTime() + delay
        self._SyncObj__raftElectionDeadline = min(self._SyncObj__raftElectionDeadline, soon)
        if self.on_early_election is not None:
            # Tick right at the deadline: a late tick would blur the stagger.
            self.on_early_election(delay)

    def connected_peers(self) -> int:
        """How many other voting members this one has a connection with."""
        return len(self._SyncObj__connectedNodes & self._SyncObj__otherNodes)

    def hand_over(self) -> bool:
        """On the leader: ask the most caught-up connected follower, if it holds this member's
        whole log, to stand for election now (Raft's TimeoutNow). True if one was asked; the
        library refuses while none holds the last entry."""
        answers: list[Any] = []
        self.transferLeadership(None, lambda _result, error: answers.append(error))
        return answers == [FAIL_REASON.SUCCESS]

    @property
    def transport(self) -> Any:
        """The library's transport (a :class:`~hacoord.replication.peer.GuardedTransport` in
        production)."""
        return self._SyncObj__transport

    def send_new_entries(self) -> None:
        """On the leader, send log entries added since the last call now, rather than at the
        next heartbeat (the library's batch mode waits ``appendEntriesPeriod``)."""
        if not self._isLeader():
            return
        last = self._SyncObj__raftLog[-1][1]
        if last != self._sent_up_to or self.send_backlog:
            self._sent_up_to = last
            self._SyncObj__sendAppendEntries()

    def _SyncObj__applyLogEntries(self) -> bool:  # noqa: N802 (the library's private name)
        """The library's apply of committed entries, within ``apply_budget`` seconds (at least
        one entry). The library applies every committed entry in one go: a follower catching
        up on thousands of entries after a snapshot held its loop 57 ms in ``bench.scale``.
        What is left is applied in the next tick (``apply_backlog``)."""
        commit = self._SyncObj__raftCommitIndex
        started = _syncobj_module.monotonicTime()
        send = False
        try:
            while self._SyncObj__raftLastApplied < commit:
                applied = self._SyncObj__raftLastApplied
                self._SyncObj__raftCommitIndex = applied + 1  # the library applies up to it
                send = _syncobj_module.SyncObj._SyncObj__applyLogEntries(self) or send
                if (self._SyncObj__raftLastApplied == applied
                        or _syncobj_module.monotonicTime() - started >= self.apply_budget):
                    break
        finally:
            self._SyncObj__raftCommitIndex = commit
        self.apply_backlog = self._SyncObj__raftLastApplied < commit
        return send

    def _SyncObj__tryLogCompaction(self) -> None:  # noqa: N802 (the library's private name)
        """The library's compaction check (entry count, time), also forced once replaying what
        was applied since the last snapshot would cost more than a snapshot (class docstring).
        The library snapshots the state as of the last applied entry when it starts one.

        Not forced while the leader is sending its dump to a follower: a newer dump would
        compact the log past what that follower is about to install, and it would need the
        whole dump again. A dump that cannot be started (no process to be had) counts as
        taken, so the next try waits as long again instead of coming at every tick."""
        snapshots, applied = self.snapshots, self.state_machine.apply_seconds
        forced = False
        if (self.compaction_replay is not None and not snapshots.writing
                and not (snapshots.sending and self._isLeader())):
            due = max(self.compaction_replay, snapshots.last_write_seconds)
            if applied - self._applied_at_snapshot >= due:
                self._SyncObj__forceLogCompaction = forced = True
        was_writing = snapshots.writing
        _syncobj_module.SyncObj._SyncObj__tryLogCompaction(self)
        if (snapshots.writing and not was_writing) or forced:
            self._applied_at_snapshot = applied

    def _SyncObj__sendAppendEntries(self) -> None:  # noqa: N802 (the library's private name)
        """The library's send to every follower, within ``send_budget`` seconds. The library
        stops sending after ``appendEntriesPeriod`` (50 ms): a follower catching up on a long
        log or a whole snapshot held the leader's loop that long in each tick (``bench.scale``
        logged stalls of 131 ms). What is left is sent in the next tick (``send_backlog``);
        heartbeats keep the library's period."""
        conf = self._SyncObj__conf
        period = conf.appendEntriesPeriod
        started = _syncobj_module.monotonicTime()
        conf.appendEntriesPeriod = self.send_budget  # the library's own cut-off, shortened
        try:
            _syncobj_module.SyncObj._SyncObj__sendAppendEntries(self)
        finally:
            conf.appendEntriesPeriod = period
        self._SyncObj__newAppendEntriesTime = started + period
        self.send_backlog = _syncobj_module.monotonicTime() - started >= self.send_budget

    def _safe_send_ack(self, node: Node, success: bool, reset: bool = False,
                       next_idx: int | None = None) -> None:
        """Every follower acknowledgement goes through here: it leaves once the journal, as it
        is now, is durable (at once when it already is and nothing is waiting before it)."""
        journal = self.journal
        message = self._safe_ack_message(success, reset, next_idx)
        if journal is not None and not journal.synced:
            journal.sync_within(self.sync_wait)
            self._send_due_acks()
        if journal is None or (journal.synced and not self.pending_acks):
            self._SyncObj__transport.send(node, message)
            return
        self.pending_acks.add(node, message, journal.end, journal.generation)

    def sync_progress(self) -> None:
        """Take a finished journal sync, start the next one, and send the acknowledgements it
        made durable (the driver calls this around every tick). Raises ``StorageError``."""
        journal = self.journal
        if journal is None:
            return
        journal.sync_within(self.sync_wait)
        self._send_due_acks()

    def _send_due_acks(self) -> None:
        journal = self.journal
        assert journal is not None
        transport = self._SyncObj__transport
        for node, message in self.pending_acks.due(journal.durable_end, journal.generation):
            transport.send(node, message)

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N803 (library's name)
        """The library's tick, its commit rule capped at what a majority holds durably. A
        follower that heard from the leader in this tick, or applied entries (whose commit only
        the leader can have told it, in the tick before), counts its election timeout from the
        end of the tick: the time it spent (applying a long run of entries, seconds for a
        restarted member catching up on a large log) is no sign that the leader is gone, and
        must not make it stand for election."""
        deadline = self._SyncObj__raftElectionDeadline
        applied = self._SyncObj__raftLastApplied
        self._capped_tick(timeToWait)
        now_due = self._SyncObj__raftElectionDeadline
        # A deadline moved earlier (the leader's connection dropped: an early election) stays.
        busy = now_due > deadline or (now_due == deadline
                                      and self._SyncObj__raftLastApplied > applied)
        if busy and self._SyncObj__raftState == _FOLLOWER and not self._SyncObj__transferInProgress:
            self._SyncObj__raftElectionDeadline = (
                _syncobj_module.monotonicTime() + self._SyncObj__generateRaftTimeout())

    def _capped_tick(self, timeToWait: float) -> None:  # noqa: N803 (library's name)
        match = self._SyncObj__raftMatchIndex
        journal = self.journal
        if not isinstance(match, DurableMatchIndex) or journal is None:
            super()._onTick(timeToWait)
            return
        if self._isLeader() and not journal.synced:
            match.cap = commit_cap(journal.durable_index(),
                                   [match.get(n, 0) for n in self._SyncObj__otherNodes])
        try:
            super()._onTick(timeToWait)
        finally:
            match.cap = None

    # --- stopping ---------------------------------------------------------------------------

    def destroy(self) -> None:
        """Clean stop: close connections, stop a snapshot write, sync and close the journal."""
        self.snapshots.close()
        self.snapshot_decoder.close()
        super().destroy()

    def abandon(self) -> None:
        """Stop without writing anything more (after a storage failure; or a simulated crash):
        connections closed, a snapshot write stopped, the journal closed unsynced."""
        self.snapshots.close()
        self.snapshot_decoder.close()
        transport = getattr(self, "_SyncObj__transport", None)
        if transport is not None:
            transport.destroy()
        if self.journal is not None:
            self.journal.abandon()
