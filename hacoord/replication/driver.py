"""``RaftDriver``: one member's Raft engine and the order it is driven in, without asyncio.

The driver owns the engine (:class:`~hacoord.replication.engine.HacoordSyncObj` and its
:class:`~hacoord.replication.statemachine.StateMachine`), the queue of commands waiting to be
proposed and the batches in flight. :meth:`RaftDriver.tick` is the member's whole tick, in the
order production runs it:

1. propose queued commands as group-commit batches (leader only, at most ``max_in_flight``);
2. take the journal's finished sync, start the next (on the syncer: a worker thread in
   production) and send the follower acknowledgements it made durable;
3. the library's tick (timeouts, elections, commit, apply, received messages); the commit rule
   counts the leader's own copy only as far as it is durable, and a follower's acknowledgements
   wait for its journal (see :mod:`hacoord.replication.durability`);
4. send the entries added in this tick to the followers at once;
5. as step 2: the leader's own copy syncs while the followers sync theirs.

A member without peers (a one-member cluster) syncs the journal in place at steps 2 and 5:
nobody else's copy can count.

:class:`~hacoord.replication.raft.RaftReplicator` runs a driver on the member's asyncio loop;
the deterministic tests run several drivers over an in-memory network and a fake clock, through
the seams the constructor offers (transport, poller, snapshot writer, fault hook, clock). A
:class:`~hacoord.replication.storage.StorageError` from :meth:`tick` means the member must fail
stop: the caller abandons the driver and later builds a new one from the files on disk.

Threads: every method runs on the one thread that ticks (the member's event loop).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObjConf
from pysyncobj.node import Node, TCPNode
from pysyncobj.poller import Poller

from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome
from hacoord.replication.base import MemberInfo
from hacoord.replication.engine import HacoordSyncObj
from hacoord.replication.peer import GuardedTransport
from hacoord.replication.snapshot_store import SnapshotWriter
from hacoord.replication.statemachine import StateMachine, encode_batch
from hacoord.replication.steps import STEPS
from hacoord.replication.storage import FaultHook
from hacoord.replication.syncer import JournalSyncer

FAIL_NAMES = {v: k.lower() for k, v in vars(FAIL_REASON).items() if k.isupper()}
JOURNAL_FILE = "raft.journal"
SNAPSHOT_FILE = "raft.snapshot"


@dataclass(frozen=True)
class RaftTuning:
    """Raft timing and batching. The defaults favour fast failover on a LAN or one host."""

    tick_period: float = 0.01
    append_entries_period: float = 0.05
    #: Seconds a leader's tick may spend sending entries or snapshot chunks, and a member's
    #: tick applying committed entries (the rest goes on in the next tick, right after
    #: whatever else is ready on the loop).
    send_budget: float = 0.005
    apply_budget: float = 0.01
    election_timeout_min: float = 0.3
    election_timeout_max: float = 0.6
    connection_timeout: float = 1.0
    connection_retry: float = 0.2
    leader_fallback_timeout: float = 1.2
    log_compaction_min_entries: int = 5000
    log_compaction_min_time: float = 300.0
    #: Snapshot once the commands applied since the last one took this many seconds to apply
    #: (or as long as the last snapshot took to write, if longer): what a restart replays.
    #: None: only the library's entry-count and time rules.
    log_compaction_replay: float | None = 0.1
    max_in_flight: int = 4
    max_batch_commands: int = 256
    max_batch_bytes: int = 256 * 1024
    #: Bytes of entries in one append message (an entry larger than this goes in chunks). A
    #: follower handles a message in one go: 1 MiB took it 20-60 ms while catching up.
    message_bytes: int = 256 * 1024
    max_pending: int = 20_000
    fsync: bool = True

    def conf_kwargs(self) -> dict[str, Any]:
        return {
            "appendEntriesPeriod": self.append_entries_period,
            "raftMinTimeout": self.election_timeout_min,
            "raftMaxTimeout": self.election_timeout_max,
            "connectionTimeout": self.connection_timeout,
            "connectionRetryTime": self.connection_retry,
            "leaderFallbackTimeout": self.leader_fallback_timeout,
            "logCompactionMinEntries": self.log_compaction_min_entries,
            "logCompactionMinTime": self.log_compaction_min_time,
            # Batch mode, but the driver sends new entries right after the tick that added them
            # (HacoordSyncObj.send_new_entries): one message per follower per group-commit
            # batch, instead of the library's choice between a message per command and a wait
            # for the next heartbeat.
            "appendEntriesUseBatch": True,
            "appendEntriesBatchSizeBytes": self.message_bytes,
        }


@dataclass
class _Batch:
    request_ids: list[str]
    deadline: float


class RaftDriver:
    """One member's engine, command queue and tick order. See the module docstring.

    Callbacks (all on the ticking thread): ``on_applied(request_id, outcome)`` after each
    applied command; ``on_restored(prepared)`` after a snapshot replaced the state, with what
    ``prepare_restore(state)`` made of it (perhaps on the snapshot decoder's thread);
    ``on_role_changed(old, new)`` with PySyncObj's role numbers; ``on_failed(request_ids,
    reason)`` for a batch that certainly did not commit. ``wanted(request_id)`` is asked before
    a queued command is proposed: False when its caller gave up on it.

    Raises :class:`~hacoord.replication.storage.StorageCorrupt` or
    :class:`~hacoord.replication.storage.StorageError` from the constructor when the member's
    files cannot be used.
    """

    def __init__(self, self_address: str, other_addresses: list[str], data_dir: Path,
                 secret: str | None, tuning: RaftTuning, *,
                 on_applied: Callable[[str, Outcome], None],
                 on_restored: Callable[[object], None],
                 prepare_restore: Callable[[ClusterState], object] = lambda _state: None,
                 on_role_changed: Callable[[int, int], None],
                 on_failed: Callable[[list[str], str], None],
                 wanted: Callable[[str], bool] = lambda _rid: True,
                 transport_class: Any = GuardedTransport, node_class: type[Node] = TCPNode,
                 poller: Poller | None = None, snapshot_writer: SnapshotWriter | None = None,
                 fault: FaultHook | None = None, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, syncer: JournalSyncer | None = None,
                 meta_writer: JournalSyncer | None = None, sync_wait: float = 0.0,
                 snapshot_decoder: JournalSyncer | None = None,
                 members: tuple[MemberInfo, ...] | None = None) -> None:
        self.tuning = tuning
        self.clock = clock
        self._on_failed = on_failed
        self._wanted = wanted
        self.sm = StateMachine(on_applied, on_restored, prepare_restore)
        conf = SyncObjConf(
            autoTick=False,
            password=secret,
            bindAddress=self_address,
            journalFile=str(Path(data_dir) / JOURNAL_FILE),
            fullDumpFile=str(Path(data_dir) / SNAPSHOT_FILE),
            commandsWaitLeader=False,
            dynamicMembershipChange=False,
            maxBindRetries=1,
            onStateChanged=on_role_changed,
            **tuning.conf_kwargs(),
        )
        self.obj = HacoordSyncObj(
            self_address, other_addresses, conf, state_machine=self.sm, durable=tuning.fsync,
            snapshot_writer=snapshot_writer, poller=poller, fault=fault, syncer=syncer,
            meta_writer=meta_writer, sync_wait=sync_wait, snapshot_decoder=snapshot_decoder,
            send_budget=tuning.send_budget, apply_budget=tuning.apply_budget,
            compaction_replay=tuning.log_compaction_replay, rng=rng,
            nodeClass=node_class,
            transportClass=transport_class,
            members=members if members is not None else tuple(
                MemberInfo(a, a, "") for a in [self_address, *other_addresses]))
        self.journal = self.obj.journal
        #: Propose nothing while above 0 (a leader handing over: followers catch up meanwhile).
        self.holding = 0
        #: A membership change waiting for the next tick: (members, done).
        self._config_change: tuple[tuple[MemberInfo, ...], Callable[[str | None], None]] | None = None
        self.queue: deque[tuple[str, bytes]] = deque()
        self.batches: dict[int, _Batch] = {}
        self._batch_ids = itertools.count(1)
        #: The commit index this member had recorded when it started: reads wait until the
        #: state has been applied that far (it never serves less than it had).
        self.start_commit_index = self.journal.getRaftCommitIndex() if self.journal else 0

    # --- proposing ----------------------------------------------------------------------------

    def propose(self, request_id: str, raw: bytes) -> None:
        """Queue one encoded command; it is proposed at the next tick (leader only)."""
        self.queue.append((request_id, raw))

    def drop_queue(self) -> list[str]:
        """Deposed: nothing queued will be proposed here. Returns their request ids."""
        dropped = [rid for rid, _ in self.queue]
        self.queue.clear()
        return dropped

    def change_members(self, members: tuple[MemberInfo, ...],
                       done: Callable[[str | None], None]) -> None:
        """Propose ``members`` as the new membership at the next tick (leader only; one member
        added or removed). ``done(None)`` once it is committed and applied here, else
        ``done(why not)``; a change still waiting is answered as replaced."""
        if self._config_change is not None:
            self._config_change[1]("another membership change was asked for meanwhile")
        self._config_change = (members, done)

    def _propose_members(self) -> None:
        change, self._config_change = self._config_change, None
        if change is not None:
            refusal = self.obj.propose_config(*change)
            if refusal is not None:
                change[1](refusal)

    @property
    def wants_tick(self) -> bool:
        """True when queued commands (or a membership change) could be proposed now."""
        return (bool(self.queue) and len(self.batches) < self.tuning.max_in_flight
                and self.holding <= 0 or self._config_change is not None)

    def _propose(self) -> None:
        """Move queued commands into the log, a batch at a time, within the in-flight bound."""
        obj = self.obj
        if not self.queue or not obj._isLeader() or self.holding > 0:
            return
        while self.queue and len(self.batches) < self.tuning.max_in_flight:
            rids, raws, size = [], [], 0
            while self.queue and len(rids) < self.tuning.max_batch_commands:
                rid, raw = self.queue[0]
                if rids and size + len(raw) > self.tuning.max_batch_bytes:
                    break
                self.queue.popleft()
                if not self._wanted(rid):  # its caller gave up before it was proposed
                    continue
                rids.append(rid)
                raws.append(raw)
                size += len(raw)
            if not rids:
                continue
            batch_id = next(self._batch_ids)
            self.batches[batch_id] = _Batch(rids, self.clock() + 30.0)
            self.sm.apply_batch(encode_batch(raws),
                                callback=lambda res, err, b=batch_id: self._on_batch_done(b, err))

    def _on_batch_done(self, batch_id: int, err: int) -> None:
        batch = self.batches.pop(batch_id, None)
        if batch is not None and err != FAIL_REASON.SUCCESS:
            self._on_failed(batch.request_ids, FAIL_NAMES.get(err, str(err)))

    def expire_batches(self) -> None:
        """Forget batches whose callback never came (PySyncObj skips callbacks in some paths),
        so they do not hold the in-flight bound forever. Their waiters time out on their own."""
        now = self.clock()
        for batch_id in [b for b, batch in self.batches.items() if batch.deadline < now]:
            del self.batches[batch_id]

    # --- ticking ------------------------------------------------------------------------------

    def tick(self) -> bool:
        """One tick in production order; True if another should follow at once (events were
        handled, or queued commands can be proposed). Raises ``StorageError`` (fail stop)."""
        started, ran = time.perf_counter(), time.thread_time()
        self._propose_members()
        self._propose()
        self._sync()
        self.obj.doTick(0.0)
        self.obj.send_new_entries()
        self._sync()
        STEPS.note("raft tick", time.perf_counter() - started, time.thread_time() - ran)
        return (bool(self.obj.poller.last_events) or self.wants_tick or self.obj.send_backlog
                or self.obj.apply_backlog)

    def check_files(self) -> None:
        """Raise ``StorageError`` (fail stop) if the journal's path no longer names the file the
        member writes (:meth:`~hacoord.replication.journal.HacoordJournal.check_linked`)."""
        if self.journal is not None and self.journal.failed is None:
            self.journal.check_linked()

    def _sync(self) -> None:
        if self.journal is None:
            return
        if not self.obj._SyncObj__otherNodes:  # alone: no other member's copy can count
            self.journal.sync()
        else:
            self.obj.sync_progress()

    # --- stopping -----------------------------------------------------------------------------

    def close(self) -> None:
        """Clean stop: sync and close the journal, close connections."""
        if self.journal is not None and self.journal.failed is None:
            self.journal.sync()
        self.obj.destroy()

    def abandon(self) -> None:
        """Stop without another write (storage failure, simulated crash)."""
        self.obj.abandon()
