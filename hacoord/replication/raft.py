"""The Raft replicator: a :class:`~hacoord.replication.driver.RaftDriver` on the member's event loop.

Design (see ARCHITECTURE.md for what it absorbs from PySyncObj 0.3.17):

* One thread. PySyncObj runs with ``autoTick=False`` over an epoll poller whose descriptor the
  event loop watches; a timer ticks it for timeouts. Commands are applied on the loop's thread,
  so HTTP handlers read the state without locks and waiters are plain futures. Only the
  journal's fdatasync runs on a worker thread (:class:`~hacoord.replication.syncer.ThreadSyncer`),
  which wakes the loop when it is done.
* Group commit. Commands queue up and go to the log as batches (one log entry each), at most
  ``max_in_flight`` batches at once: a lone write is proposed at once and commits in one round
  trip, while under load batches grow instead of the message count.
* Leader only. ``submit`` refuses on a follower (the server forwards over HTTP), which avoids the
  library's follower-submission paths that lose callbacks under load.
* Waiters resolve from the applied command itself (by request id), not from PySyncObj's
  callbacks, which never fire for entries a follower received inside a snapshot; every wait has
  a timeout, after which the outcome is unknown and a retry with the same request id is safe.
* Journal plus snapshot, always together: hacoord's checksummed journal, synced before anything
  is acknowledged (:mod:`hacoord.replication.journal`), and its own checksummed snapshots,
  written by a child process off the loop (:mod:`hacoord.replication.snapshot_store`).
* Fail stop. A failed write or sync of the member's files (a full disk, an I/O error) stops the
  member's part in Raft at once: the engine is dropped unsynced, the member reports not ready
  and says why once, and every few seconds it tries to build a new engine from what is durable
  on disk. Files that cannot be what the member synced make it refuse to start instead
  (:class:`FatalReplicationError` naming the file and ``hacoord member rejoin``).
* No reads before the state is loaded: :attr:`RaftReplicator.loaded` is false until the member,
  since it started (or reopened), has heard from a leader that has committed an entry of its
  own term, and applied up to that leader's commit index - so it never serves an older state
  than it served before it stopped (nor judges a token by one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hacoord.core.commands import Command, encode
from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome, Rejected
from hacoord.replication.applying import apply_logged
from hacoord.replication.base import (
    MemberInfo,
    MembershipRefused,
    NotAppliedError,
    NotLeaderError,
    OutcomeUnknownError,
    RaftStatus,
    ReplicationError,
)
from hacoord.replication.driver import FAIL_NAMES, JOURNAL_FILE, RaftDriver, RaftTuning
from hacoord.replication.feed import ChangeFeed, Routing, routing_shadow
from hacoord.replication.invariants import InvariantWatch
from hacoord.replication.journal import cut_to_durable
from hacoord.replication.memberset import Config, MembershipError, changed, majority
from hacoord.replication.rejoin import member_lock
from hacoord.replication.safepickle import UnsafeLogEntry
from hacoord.replication.snapshot_store import SnapshotWriter
from hacoord.replication.steps import process_age
from hacoord.replication.storage import (
    FaultHook,
    NewerRelease,
    StorageCorrupt,
    StorageError,
    ensure_private_dir,
)
from hacoord.replication.syncer import ThreadSyncer

log = logging.getLogger(__name__)

ROLES = {0: "follower", 1: "candidate", 2: "leader"}
REOPEN_FIRST = 1.0   # seconds before the first reopen after a storage failure
REOPEN_MAX = 10.0    # the longest wait between reopens
FILE_CHECK_PERIOD = 1.0  # seconds between checks that the journal is still in its directory
STOPPING = "this member is stopping"  # why a request waiting at a stopping member ends
#: Seconds after a stop began when the writes and reads still waiting are answered: well within
#: uvicorn's grace (``timeout_graceful_shutdown`` of 1 s, after its own 0.1 s), which cuts off
#: whatever still runs then, with a 500 and a logged traceback.
ANSWER_AT_STOP = 0.5
HAND_OVER_WAIT = 1.0  # seconds a stopping leader waits for a follower to take over
HAND_OVER_POLL = 0.01
REACH_WAIT = 2.0  # seconds a leader waits to connect to a member it is asked to add
REMOVAL_HAND_OVER_WAIT = 3.0  # seconds a leader asked to remove itself waits for a successor
HAND_OVER_RETRY = 0.4  # seconds before a leader handing over asks a follower again
REMOVED_AFTER = 2.0  # seconds out of a committed membership before a member calls itself removed
#: How long a tick may wait for a journal sync (an fdatasync here is 0.2 ms typical, 1-3 ms at
#: p99) before leaving it to the worker thread: acknowledgements of a fast disk leave at once,
#: and a slow disk holds the loop no longer than this.
SYNC_WAIT = 0.003

__all__ = ["FAIL_NAMES", "FatalReplicationError", "RaftReplicator", "RaftTuning"]


class FatalReplicationError(ReplicationError):
    """The member cannot go on safely (damaged files, port taken, ...). ``logged``: the
    replicator has already logged it (CRITICAL), so the caller need not again."""

    def __init__(self, message: str, logged: bool = False) -> None:
        super().__init__(message)
        self.logged = logged


@dataclass
class _Waiter:
    future: asyncio.Future[Outcome]
    command: Command


class OnDisk(NamedTuple):
    """What a member had on disk: its last durable log entry (index, term) and the term of its
    vote record."""

    index: int
    term: int
    vote_term: int


class RaftReplicator:
    """A member of a Raft group replicating :class:`ClusterState`. See the module docstring.

    All public methods must be called on the event loop that ran :meth:`start`.
    ``snapshot_writer`` builds the writer of each engine's own dumps (default: a forked child);
    ``fault`` is the tests' hook into storage operations (see :mod:`hacoord.replication.storage`).
    """

    def __init__(self, member_id: str, members: dict[str, MemberInfo], data_dir: Path,
                 secret: str | None, tuning: RaftTuning | None = None, *,
                 snapshot_writer: Callable[[], SnapshotWriter] | None = None,
                 fault: FaultHook | None = None) -> None:
        if member_id not in members:
            raise ValueError(f"member {member_id!r} is not among the configured members")
        self.member_id = member_id
        #: The membership from the start flags: in force until the log or a snapshot names
        #: another (:mod:`hacoord.replication.membership`).
        self._configured = dict(members)
        #: The membership in force on this member (the latest in its log).
        self.members = dict(members)
        #: This member is not in the committed membership it caught up to: it takes no part.
        self.removed = False
        self._removed_since: float | None = None
        self.data_dir = Path(data_dir)
        self.tuning = tuning or RaftTuning()
        self._secret = secret
        self._snapshot_writer = snapshot_writer
        self._fault = fault
        self._by_raft_address = {m.raft_address: m.id for m in members.values()}
        self.feed = ChangeFeed()
        self.invariants = InvariantWatch()
        self._driver: RaftDriver | None = None
        self._state = ClusterState()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._reopen_delay = REOPEN_FIRST
        self._next_file_check = 0.0
        self._tick_scheduled = False
        self._waiting: dict[str, _Waiter] = {}
        #: Confirmed reads waiting for the applied index to reach theirs: (index, future).
        self._reads: list[tuple[int, asyncio.Future[int]]] = []
        #: Reads waiting for a read index to be confirmed.
        self._confirming: set[asyncio.Future[int | None]] = set()
        # Counted here, not only by SafeSyncObj: a failing journal sync or send after the
        # library's tick must make the member unready too.
        self.tick_failures = 0
        self.consecutive_tick_failures = 0
        self.leader_changes = 0
        self._last_leader: str | None = None
        #: Set when the member cannot go on (the server then stops the process).
        self.fatal: str | None = None
        #: Why the member is not taking part in Raft right now (a storage failure), or None.
        self.storage_failure: str | None = None
        self.storage_failures = 0
        self.reopens = 0
        #: The applied index the state must reach again before reads are served.
        self._must_reach = 0
        self._stopping = False
        #: A stop began :data:`ANSWER_AT_STOP` seconds ago: requests still waiting were answered,
        #: and those that come now are not waited on.
        self._done_waiting = False
        #: What this member had on disk at its last storage failure: its reopened data must
        #: hold at least that much (it may have acknowledged all of it).
        self._had_on_disk = OnDisk(0, 0, 0)
        self._lock: int | None = None
        self._loaded = False

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        return self._driver.sm.state if self._driver is not None else self._state

    @property
    def loaded(self) -> bool:
        """True once the member, since it started (or reopened after a storage failure), has
        heard from a leader that has committed an entry of its own term and applied up to that
        leader's commit index (and at least what it had applied before): until then its state
        may be older than what it served before, so reads wait. Checked on every tick."""
        return self._driver is not None and self._loaded

    def _check_loaded(self, driver: RaftDriver) -> None:
        obj = driver.obj
        leader_commit = obj.leader_commit_index
        if (obj._getLeader() is not None and leader_commit is not None
                and obj.leader_commit_is_current
                and obj.raftLastApplied >= max(leader_commit, self._must_reach)):
            self._loaded = True
            age = process_age()
            log.info("caught up at applied index %d (revision %d): serving reads%s",
                     obj.raftLastApplied, self.state.revision,
                     "" if age is None else f" ({age:.2f} s after the process started)")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            ensure_private_dir(self.data_dir)
        except OSError as exc:
            raise FatalReplicationError(f"cannot use data directory {self.data_dir}: "
                                        f"{exc.strerror}") from None
        try:
            self._lock = member_lock(self.data_dir)
        except BlockingIOError:
            raise FatalReplicationError(f"another member process is using {self.data_dir}") from None
        except OSError as exc:
            raise FatalReplicationError(f"cannot lock {self.data_dir}: {exc.strerror}") from None
        try:
            _check_port_free(self._configured[self.member_id].raft_address)
            self._open()
        except (StorageCorrupt, StorageError, FatalReplicationError) as exc:
            os.close(self._lock)
            self._lock = None
            if isinstance(exc, FatalReplicationError):
                raise
            prefix = "" if isinstance(exc, StorageCorrupt) else "cannot open this member's data: "
            raise FatalReplicationError(prefix + str(exc)) from None
        driver = self._driver
        assert driver is not None
        # Reading this member's own snapshot takes most of a second at 100,000 partitions:
        # a worker thread does it while nothing ticks yet, and the first tick adopts it.
        await asyncio.to_thread(driver.obj.preload)
        self._watch(driver)
        self._timer = self._loop.call_later(self.tuning.tick_period, self._on_timer)
        self._tick()  # adopts the snapshot and applies what the journal holds as committed
        if self.fatal:
            await self.stop()
            raise FatalReplicationError(self.fatal, logged=True)

    def _open(self) -> None:
        """Build an engine from the files on disk and start watching its sockets."""
        me = self._configured[self.member_id]
        others = [m.raft_address for m in self._configured.values() if m.id != self.member_id]
        writer = self._snapshot_writer() if self._snapshot_writer is not None else None
        driver = RaftDriver(
            me.raft_address, others, self.data_dir, self._secret, self.tuning,
            on_applied=self._on_applied, on_restored=self._on_restored,
            prepare_restore=routing_shadow, on_role_changed=self._on_role_changed,
            on_failed=self._on_batch_failed, wanted=lambda rid: rid in self._waiting,
            snapshot_writer=writer, fault=self._fault,
            syncer=ThreadSyncer(on_done=self._wake_from_thread),
            meta_writer=ThreadSyncer(name="journal-meta"), sync_wait=SYNC_WAIT,
            snapshot_decoder=ThreadSyncer(on_done=self._wake_from_thread, name="snapshot-decode"),
            members=tuple(self._configured.values()))
        self._driver = driver
        driver.obj.on_config = self._on_config
        self._on_config(driver.obj.local_config)
        self._loaded = False
        self._must_reach = max(self._must_reach, driver.start_commit_index)
        loop = self._loop
        assert loop is not None
        driver.obj.on_early_election = lambda delay: loop.call_later(delay + 0.0005,
                                                                     self._schedule_tick)

    def _watch(self, driver: RaftDriver) -> None:
        """Tick whenever the engine's sockets have something."""
        assert self._loop is not None
        self._loop.add_reader(driver.obj.poller.fileno(), self._schedule_tick)

    def begin_stop(self) -> None:
        """Shutdown has begun: this member no longer stands for election (a slow shutdown must
        not depose the leader it is about to leave); long polls are answered now, and writes
        and reads still waiting here :data:`ANSWER_AT_STOP` seconds later, before the HTTP
        server's short grace runs out and cuts them off. A waiting write's outcome is unknown
        (it may yet commit): the client retries it with the same request id elsewhere."""
        if self._stopping:
            return
        self._stopping = True
        if self._driver is not None:
            self._driver.obj.standing_down = True
        self.feed.close()
        if self._loop is not None:
            self._loop.call_later(ANSWER_AT_STOP, self._answer_waiting)
        else:
            self._answer_waiting()

    def _answer_waiting(self) -> None:
        """Answer what still waits once a stop has begun: most writes commit, and most reads
        are confirmed, in the moments this leaves them."""
        self._done_waiting = True
        self._fail_all(OutcomeUnknownError(
            f"{STOPPING} before the write's outcome was known; retry with the same request id "
            "at another member"))
        self._fail_reads(f"{STOPPING}; read at another member")

    @property
    def done_waiting(self) -> bool:
        return self._done_waiting

    async def stop(self) -> None:
        self.begin_stop()
        await self._hand_over()
        if self._timer is not None:
            self._timer.cancel()
        if self._reopen is not None:
            self._reopen.cancel()
        self._answer_waiting()
        driver, self._driver = self._driver, None
        if driver is not None:
            self._state = driver.sm.state
            self._unwatch(driver)
            journal = driver.journal
            last = journal[-1][1] if journal is not None and len(journal) else 0
            try:
                driver.close()
            except StorageError as exc:
                log.error("stopping without a final journal sync: %s", exc)
                driver.abandon()
            else:
                log.info("replicator stopped: journal synced through index %d", last)
            driver.obj.poller.close()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def _hand_over(self) -> None:
        """A leader stopping cleanly (its API already closed, so it takes no new writes) first
        hands leadership to a follower that holds its whole log, and waits (at most
        ``HAND_OVER_WAIT``) for it to take over: the cluster then goes on after one round trip,
        where a leader that simply vanished costs an election timeout (and often a split
        vote). Raft ticks go on meanwhile; if no follower catches up in time, the member stops
        as before."""
        driver = self._driver
        if driver is None or self._loop is None or self.fatal or not driver.obj._isLeader():
            return
        successor = await self._transfer(driver, hold=False)
        if successor is not None:
            log.info("handed leadership over to %s before stopping", successor or "(not named yet)")
        elif driver.obj._isLeader():
            log.info("stopping while still leading: no follower took over in %.1fs", HAND_OVER_WAIT)

    async def _transfer(self, driver: RaftDriver, hold: bool,
                        wait: float = HAND_OVER_WAIT) -> str | None:
        """Ask a follower holding this leader's whole log to take over, and wait (at most
        ``wait`` seconds) until it did, asking again every ``HAND_OVER_RETRY`` (the one asked
        may have lost its election). ``hold``: propose nothing new meanwhile, so that a
        follower can catch up under a steady write load (queued writes wait, and are answered
        retryable once this member is deposed). Returns the successor's id ("" when deposed
        with none named yet), or None if this member still leads."""
        assert self._loop is not None
        asked = False
        deadline = self._loop.time() + wait
        ask_again = 0.0
        driver.holding += hold
        try:
            while self._driver is driver and self._loop.time() < deadline:
                if not driver.obj._isLeader():
                    # Deposed by the successor's vote request; its first append names it.
                    successor = self.leader_id()
                    if successor is not None and successor != self.member_id:
                        return successor
                    await asyncio.sleep(HAND_OVER_POLL)
                    continue
                if not driver.obj.connected_peers():
                    return None  # nobody to hand over to (the others are stopping too)
                # Holding, wait until what was proposed is committed: an entry appended after
                # the ask would make the others refuse the successor's vote (it would lack it).
                if (not asked or self._loop.time() >= ask_again) and not (hold and driver.batches):
                    asked = driver.obj.hand_over()
                    ask_again = self._loop.time() + HAND_OVER_RETRY
                    self._schedule_tick()
                await asyncio.sleep(HAND_OVER_POLL)
        finally:
            driver.holding -= hold
            self._schedule_tick()
        return None if driver.obj._isLeader() else ""

    def _unwatch(self, driver: RaftDriver) -> None:
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(driver.obj.poller.fileno())

    # --- storage failure ----------------------------------------------------------------------

    def _storage_failed(self, exc: StorageError) -> None:
        """Fail stop: drop the engine unsynced, answer waiters, plan a reopen from disk."""
        driver = self._driver
        if driver is None:
            return
        self.storage_failures += 1
        self.storage_failure = str(exc)
        journal = driver.journal
        durable_end, identity = None, None
        if journal is not None:
            durable_end, identity = journal.durable_end, journal.identity()
            index = journal.durable_index()
            self._had_on_disk = OnDisk(index, journal.term_of(index) or 0, journal.stored_term)
        self._drop_engine(driver)
        log.critical("storage failure: %s. This member stopped taking part in Raft (not ready; "
                     "it acknowledges and votes for nothing) and will reopen its data from what "
                     "is durable on disk", exc)
        self._fail_all(OutcomeUnknownError(f"storage failure on {self.member_id}; retry with the "
                                           "same request id"))
        self._cut_to_durable(durable_end, identity)
        self._plan_reopen()

    def _drop_engine(self, driver: RaftDriver) -> None:
        """Stop the engine without another write; keep its state for status pages. Reads
        waiting for it are answered: nothing else would."""
        self._driver = None
        self._state = driver.sm.state
        self._must_reach = max(self._must_reach, driver.obj.raftLastApplied)
        self._unwatch(driver)
        driver.abandon()
        driver.obj.poller.close()
        self._fail_reads(f"{self.member_id} stopped taking part in Raft; read at another member")

    def _fail_reads(self, why: str) -> None:
        """Answer every read waiting for a read index or for the applied index to reach it."""
        reads, self._reads = self._reads, []
        for future in [*self._confirming, *(future for _, future in reads)]:
            if not future.done():
                future.set_exception(NotAppliedError(why))

    def _cut_to_durable(self, durable_end: int | None, identity: tuple[int, int] | None) -> None:
        if durable_end is None:
            return
        path = self.data_dir / JOURNAL_FILE
        try:
            if not cut_to_durable(path, durable_end, identity):
                log.warning("not cutting %s back: it is not the file that failed (the data "
                            "directory was replaced)", path)
        except OSError as exc:
            log.warning("cannot cut %s back to its durable end yet: %s", path, exc)

    def _plan_reopen(self) -> None:
        if self._loop is None or self._stopping:
            return
        self._reopen = self._loop.call_later(self._reopen_delay, self._try_reopen)
        self._reopen_delay = min(REOPEN_MAX, self._reopen_delay * 2)

    def _try_reopen(self) -> None:
        self._reopen = None
        if self._stopping or self._driver is not None:
            return
        journal = self.data_dir / JOURNAL_FILE
        try:
            os.stat(journal)
        except (FileNotFoundError, NotADirectoryError):
            # Opening would make a new, empty journal: the member would vote and acknowledge
            # again with less than it had acknowledged.
            self.fatal = (f"this member's journal {journal} is gone (its data directory was "
                          "removed or moved while the member ran): stopping rather than go on "
                          "with less than it acknowledged; the other members still hold the "
                          "cluster's data: run `hacoord member rejoin --data-dir "
                          f"{self.data_dir} --force` and start it again to let it catch up "
                          "from them")
            log.critical("%s", self.fatal)
            return
        except OSError as exc:  # the disk does not answer yet: try again, as for any failure
            log.warning("cannot look for %s after the storage failure, trying again in %.0fs: "
                        "%s", journal, self._reopen_delay, exc)
            self._plan_reopen()
            return
        try:
            self._open()  # the first tick reads the snapshot on the loop: a rare path
        except StorageCorrupt as exc:
            self.fatal = str(exc)
            log.critical("%s", exc)
            return
        except (StorageError, OSError) as exc:
            log.warning("reopen after the storage failure failed, trying again in %.0fs: %s",
                        self._reopen_delay, exc)
            self._plan_reopen()
            return
        assert self._driver is not None
        if self._holds_less(self._driver):
            return
        self._watch(self._driver)
        self.reopens += 1
        self.storage_failure = None
        self._reopen_delay = REOPEN_FIRST
        log.warning("reopened this member's data from disk (applied index %d); catching up "
                    "before serving reads", self._driver.obj.raftLastApplied if self._driver else 0)
        self._schedule_tick()

    def _holds_less(self, driver: RaftDriver) -> bool:
        """True (and the member stops for good) if the data just reopened lacks what the member
        had on disk before the failure (its last durable entry, in its term, and the term of
        its vote record): the directory was replaced by an older copy while it ran, and going
        on would vote and acknowledge again with less than it had acknowledged."""
        had, journal = self._had_on_disk, driver.journal
        if journal is None:
            return False
        last = journal[-1][1] if len(journal) else 0
        term = journal.term_of(had.index)
        if had.index and last < had.index:
            lack = f"holds its log only to index {last}, but the member had it to index {had.index}"
        elif had.index and term is not None and term != had.term:
            lack = (f"holds entry {had.index} of term {term}, but the member had it of term "
                    f"{had.term}")
        elif journal.stored_term < had.vote_term:
            lack = (f"records term {journal.stored_term}, but the member had voted in term "
                    f"{had.vote_term}")
        else:
            return False
        self.fatal = (f"this member's data directory {self.data_dir} {lack} on disk before the "
                      "storage failure: the directory was replaced by an older copy while the "
                      "member ran; stopping rather than go on with less than it acknowledged: "
                      "move the directory aside, run `hacoord member rejoin --data-dir "
                      f"{self.data_dir} --force` and start the member again to let it catch up "
                      "from the others")
        log.critical("%s", self.fatal)
        self._driver = None  # the state shown stays the one the member had
        driver.abandon()
        driver.obj.poller.close()
        return True

    # --- ticking ------------------------------------------------------------------------------

    def _on_timer(self) -> None:
        """The periodic tick (timeouts, heartbeats), unless one is already scheduled: a direct
        tick then would clear the flag while that one is still queued, and the next
        :meth:`_schedule_tick` would queue a second. While ticks keep asking for more (a
        member applying a long backlog), every timer added one more to the queue, until a
        dozen ran back to back in each turn of the loop and held its timers for 100-350 ms."""
        if not self._tick_scheduled:
            self._tick()
        if self._driver is not None:
            self._driver.expire_batches()
        assert self._loop is not None
        if self._driver is not None and self._loop.time() >= self._next_file_check:
            self._next_file_check = self._loop.time() + FILE_CHECK_PERIOD
            try:
                self._driver.check_files()
            except StorageError as exc:
                self._storage_failed(exc)
        self._timer = self._loop.call_later(self.tuning.tick_period, self._on_timer)

    def _wake_from_thread(self) -> None:
        """A journal sync finished on its worker thread: tick now (acknowledgements and the
        leader's commit wait for it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule_tick)

    def _schedule_tick(self) -> None:
        if not self._tick_scheduled and self._loop is not None:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        driver = self._driver
        if driver is None:
            return
        again = False
        try:
            again = driver.tick()
            self.consecutive_tick_failures = 0
        except StorageError as exc:
            self._storage_failed(exc)
            return
        except (StorageCorrupt, UnsafeLogEntry, NewerRelease) as exc:
            self.fatal = str(exc)
            log.critical("%s", exc)
            self._drop_engine(driver)
            return
        except Exception:
            self.tick_failures += 1
            self.consecutive_tick_failures += 1
            if self.consecutive_tick_failures in (1, 10, 100) or self.consecutive_tick_failures % 1000 == 0:
                log.exception("raft tick failed (%d in a row)", self.consecutive_tick_failures)
        self._note_leader()
        if self._driver is not None:
            self._note_removed(self._driver)
        if self._reads and self._driver is not None:
            self._release_reads(self._driver.obj.raftLastApplied)
        if not self._loaded and self._driver is not None:
            self._check_loaded(self._driver)
        if again:
            # Acks handled at the end of this tick move the commit index only in the next one.
            self._schedule_tick()

    def _on_config(self, members: Config) -> None:
        """The membership in force changed (on the ticking thread)."""
        self.members = {m.id: m for m in members}
        self._by_raft_address.update({m.raft_address: m.id for m in members})

    def _note_removed(self, driver: RaftDriver) -> None:
        """Judge whether this member is out of the membership for good: a committed membership
        without it, caught up with the leader, for ``REMOVED_AFTER`` seconds (a new member's
        first snapshot may predate its addition, which follows in the log)."""
        obj = driver.obj
        now = time.monotonic()
        if not (obj.removed and obj.config_committed and obj._safe_caught_up()):
            self._removed_since = None
        elif self._removed_since is None:
            self._removed_since = now
        removed = self._removed_since is not None and now - self._removed_since >= REMOVED_AFTER
        if removed and not self.removed:
            log.warning("this member was removed from the cluster (members now: %s): it takes "
                        "no part any more; stop it, and delete its data directory before "
                        "using the host for another member", ", ".join(sorted(self.members)))
        self.removed = removed

    async def change_members(self, add: MemberInfo | None = None, remove: str | None = None,
                             timeout: float = 10.0) -> bool:
        """On the leader: add the member ``add`` or remove the member ``remove`` (one of the
        two). Returns False when that was already so, True once the change is committed.
        Raises :class:`NotLeaderError` (also after handing leadership over when asked to
        remove this member: the next leader removes it), :class:`MembershipRefused`,
        :class:`NotAppliedError` (not committed; nothing changed) or
        :class:`OutcomeUnknownError`."""
        driver = self._driver
        if self.fatal:
            raise FatalReplicationError(self.fatal)
        if driver is None or not self.is_leader():
            raise NotLeaderError(self.leader_id())
        obj = driver.obj
        try:
            new = changed(obj.config, add, remove)
        except MembershipError as exc:
            raise MembershipRefused(str(exc)) from None
        if new is None:
            return False
        if add is not None:  # as the membership holds it: added, its addresses hold for all
            add = next(m for m in new if m.id == add.id)
        if remove == self.member_id:
            successor = await self._transfer(driver, hold=True, wait=REMOVAL_HAND_OVER_WAIT)
            if successor is None:
                raise NotAppliedError(f"this member leads, and no follower took over within "
                                      f"{REMOVAL_HAND_OVER_WAIT:.0f} s")
            raise NotLeaderError(successor or None)
        if add is not None:
            await self._reach_new(obj, add)
        self._check_change(obj, new)
        assert self._loop is not None
        future: asyncio.Future[str | None] = self._loop.create_future()

        def done(error: str | None) -> None:
            if not future.done():
                future.set_result(error)

        driver.change_members(new, done)
        self._schedule_tick()
        try:
            error = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise OutcomeUnknownError(f"the membership change was not committed within "
                                      f"{timeout:.1f}s; ask for it again") from None
        if error is not None:
            raise NotAppliedError(error)
        log.info("membership change committed: members now %s", ", ".join(sorted(self.members)))
        return True

    async def _reach_new(self, obj: Any, add: MemberInfo) -> None:
        """Connect to the member about to be added (at most ``REACH_WAIT`` seconds): a member
        that does not answer on its Raft port (not started, a wrong address, another secret)
        is not added, since it would count toward the quorum at once."""
        obj.reach((add,))
        node = obj._SyncObj__nodeClass(add.raft_address)
        named = getattr(obj.transport, "cluster_aware", None)  # it said what it understands
        assert self._loop is not None
        deadline = self._loop.time() + REACH_WAIT
        while node not in obj._SyncObj__connectedNodes or (named is not None
                                                          and node not in named):
            if self._loop.time() >= deadline or self._driver is None:
                raise MembershipRefused(
                    f"{add.id} does not answer at {add.raft_address} (its Raft address): start "
                    "it first, with the cluster's secret and the current members as its peers")
            self._schedule_tick()
            await asyncio.sleep(HAND_OVER_POLL)

    def _check_change(self, obj: Any, new: Config) -> None:
        """Refuse a change while a member runs a release without membership changes, or one
        after which the members this leader reaches (a member being added among them, once
        connected) are no majority: writes would stop until the unreachable ones answer."""
        connected = {node.id for node in obj._SyncObj__connectedNodes}
        new = tuple(obj.local(m) for m in new)
        addresses = [m.raft_address for m in new]
        twice = sorted({a for a in addresses if addresses.count(a) > 1})
        if twice:  # one node for two members: this leader would count one ack for both
            raise MembershipRefused(f"this leader reaches two members at {twice[0]}")
        supports = getattr(obj.transport, "supports", None)
        older = sorted(m.id for m in new if m.raft_address in connected and supports is not None
                       and not supports(obj._SyncObj__nodeClass(m.raft_address), "membership"))
        if older:
            raise MembershipRefused(f"{', '.join(older)} run(s) a release without membership "
                                    "changes: finish the upgrade first")
        reached = [m.id for m in new if m.id == self.member_id or m.raft_address in connected]
        need = majority(len(new))
        if len(reached) < need:
            unreachable = sorted(m.id for m in new if m.id not in reached)
            raise MembershipRefused(
                f"after this change {need} of {len(new)} members must answer, and this leader "
                f"reaches {len(reached)}" + (f" (not {', '.join(unreachable)})" if unreachable
                                            else "") + ": remove an unreachable member first")

    def _note_leader(self) -> None:
        leader = self.leader_id()
        if leader != self._last_leader:
            self._last_leader = leader
            if leader is not None:
                self.leader_changes += 1
                log.info("leader is now %s (term %d)", leader, self.term)

    def _on_role_changed(self, old: int, new: int) -> None:
        log.info("role %s -> %s", ROLES.get(old, old), ROLES.get(new, new))
        if new != 2 and self._driver is not None:
            # Deposed: nothing queued here will be proposed; callers retry on the new leader.
            for rid in self._driver.drop_queue():
                self._fail(rid, NotAppliedError("leadership lost before the command was proposed"))

    # --- submitting ---------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._driver is not None and self._driver.obj._isLeader()

    def peers_name_clusters(self) -> bool:
        driver = self._driver
        if driver is None:
            return False
        aware = getattr(driver.obj.transport, "cluster_aware", None)
        if aware is None:  # a transport without the check (the tests' simulated network)
            return True
        return all(node in aware for node in driver.obj.otherNodes)

    def leader_id(self) -> str | None:
        if self._driver is None:
            return None
        node = self._driver.obj._getLeader()
        if node is None:
            return None
        return self._by_raft_address.get(node.address)

    @property
    def term(self) -> int:
        return self._driver.obj.raftCurrentTerm if self._driver is not None else 0

    async def submit(self, command: Command, timeout: float) -> Outcome:
        if self.fatal:
            raise FatalReplicationError(self.fatal)
        if not self.is_leader():
            raise NotLeaderError(self.leader_id())
        if not command.request_id:
            command = dataclasses.replace(command, request_id=uuid.uuid4().hex)
        rid = command.request_id
        if rid in self.state.requests:
            return apply_logged(self.state, command)  # a duplicate: answered from memory, no change
        waiter = self._waiting.get(rid)
        if waiter is not None and command.fingerprint and \
                waiter.command.fingerprint not in ("", command.fingerprint):
            return Rejected("request_id_reused", f"request id {rid!r} is in use by another "
                            "request; use a new id for a new request", self.state.revision)
        if waiter is None:
            if self._done_waiting:  # nothing would answer it before the API stops
                raise NotAppliedError(f"{STOPPING}; retry at another member")
            if len(self._waiting) >= self.tuning.max_pending:
                raise NotAppliedError("too many commands in flight; retry later")
            assert self._loop is not None and self._driver is not None
            waiter = self._waiting[rid] = _Waiter(self._loop.create_future(), command)
            self._driver.propose(rid, encode(command))
            self._schedule_tick()
        future = waiter.future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise OutcomeUnknownError(f"no outcome within {timeout:.1f}s; retry with the same "
                                      "request id") from None
        finally:
            if future.done() and self._waiting.get(rid) is waiter:
                del self._waiting[rid]

    async def read_index(self, timeout: float) -> int | None:
        """A linearizable read point without a log write (:mod:`hacoord.replication.readindex`):
        returns the applied index once the leader (this member, or the one a follower asks) has
        confirmed with a majority that it still leads, and this member has applied everything
        committed before the call; None while the leader has not yet committed an entry of its
        own term (use a barrier command then). Raises :class:`NotLeaderError` (no leader
        known), or :class:`NotAppliedError` when none was confirmed in ``timeout`` seconds."""
        if self.fatal:
            raise FatalReplicationError(self.fatal)
        if self._done_waiting:
            raise NotAppliedError(f"{STOPPING}; read at another member")
        driver = self._driver
        if driver is None or self.leader_id() is None:
            raise NotLeaderError(self.leader_id())
        assert self._loop is not None
        confirmed: asyncio.Future[int | None] = self._loop.create_future()
        self._confirming.add(confirmed)
        confirmed.add_done_callback(self._confirming.discard)

        def answered(index: int | None, error: str | None) -> None:
            if confirmed.done():
                return  # the caller gave up
            if error in (None, "not_current", "unsupported"):
                confirmed.set_result(index)
            elif error == "not_leader":
                confirmed.set_exception(NotLeaderError(self.leader_id()))
            else:
                confirmed.set_exception(NotAppliedError(
                    "no majority confirmed this member's leadership in time; retry"))

        driver.obj.read_index(answered)
        self._schedule_tick()
        try:
            index = await asyncio.wait_for(confirmed, timeout)
            if index is None or driver.obj.raftLastApplied >= index:
                return index
            if self._done_waiting or self._driver is not driver:
                raise NotAppliedError(f"{self.member_id} cannot wait to apply up to the read "
                                      "index now (stopping, or out of Raft); read at another member")
            reached: asyncio.Future[int] = self._loop.create_future()
            self._reads.append((index, reached))
            return await asyncio.wait_for(reached, timeout)
        except TimeoutError:
            raise NotAppliedError(f"no read point within {timeout:.1f}s; retry") from None

    def _release_reads(self, applied: int) -> None:
        waiting, self._reads = self._reads, []
        for index, future in waiting:
            if future.done():
                continue
            if index <= applied:
                future.set_result(index)
            else:
                self._reads.append((index, future))

    def _on_batch_failed(self, request_ids: list[str], reason: str) -> None:
        for rid in request_ids:
            self._fail(rid, NotAppliedError(f"not committed ({reason}); retry"))

    def _fail(self, rid: str, error: Exception) -> None:
        waiter = self._waiting.pop(rid, None)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_exception(error)
            waiter.future.exception()  # mark retrieved: the caller may have timed out already

    def _fail_all(self, error: Exception) -> None:
        for rid in list(self._waiting):
            self._fail(rid, error)

    # --- applying -----------------------------------------------------------------------------

    def _on_applied(self, rid: str, outcome: Outcome) -> None:
        # After a reopen the engine applies the log again from its snapshot: the feed already
        # holds those revisions, and the same log gives the same events.
        if outcome.ok and outcome.events and outcome.revision > self.feed.revision:
            self.feed.record(outcome.events)
            self.invariants.observe(self.state, outcome)
        waiter = self._waiting.pop(rid, None) if rid else None
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(outcome)

    def _on_restored(self, routing: Routing | None = None) -> None:
        """A snapshot replaced the state: answer waiters whose commands it already contains.
        ``routing`` is the new state's :func:`routing_shadow`, if it was made ahead."""
        if self.state.revision > self.feed.revision:
            self.feed.reset(self.state.revision, self.state, routing)
        for rid in [r for r in self._waiting if r in self.state.requests]:
            self._on_applied(rid, apply_logged(self.state, self._waiting[rid].command))

    # --- status -------------------------------------------------------------------------------

    def status(self) -> RaftStatus:
        driver = self._driver
        if driver is None:
            role = "storage_failed" if self.storage_failure else "stopped"
            return RaftStatus(self.member_id, role, 0, None, 0, 0, self.state.revision,
                              False, False, storage_failure=self.storage_failure,
                              storage_failures=self.storage_failures, loaded=False)
        obj = driver.obj
        raw = obj.getStatus()
        leader = self.leader_id()
        leader_commit = raw.get("leader_commit_idx") or 0
        transport = obj.transport
        features = {getattr(node, "address", None): sorted(named)
                    for node, named in getattr(transport, "features", {}).items()}
        peers = {}
        for member in self.members.values():
            if member.id == self.member_id:
                continue
            addr = member.raft_address
            peers[member.id] = {
                "connected": raw.get(f"partner_node_status_server_{addr}", 0) == 2,
                "match_index": raw.get(f"match_idx_server_{addr}"),
                "features": features.get(addr, []),
            }
        loaded = self.loaded
        listening = bool(getattr(transport, "listening", True))
        ready = (self.fatal is None and not self.removed and loaded and listening
                 and leader is not None
                 and raw["has_quorum"] and self.consecutive_tick_failures < 3
                 and raw["last_applied"] >= leader_commit)
        snapshots = obj.snapshots
        return RaftStatus(
            member_id=self.member_id,
            role=ROLES.get(raw["state"], "unknown"),
            term=raw["raft_term"],
            leader_id=leader,
            commit_index=raw["commit_idx"],
            applied_index=raw["last_applied"],
            revision=self.state.revision,
            ready=ready,
            has_quorum=raw["has_quorum"],
            log_length=raw["log_len"],
            tick_failures=self.tick_failures,
            leader_changes=self.leader_changes,
            invariant_violations=self.invariants.violations,
            in_flight=len(self._waiting),
            applied_commands=driver.sm.applied_commands,
            apply_seconds=driver.sm.apply_seconds,
            peers=peers,
            loaded=loaded,
            storage_failures=self.storage_failures,
            snapshot_index=snapshots.header.index if snapshots.header else 0,
            snapshot_writes=snapshots.writes,
            snapshot_write_failures=snapshots.write_failures,
            snapshot_write_seconds=snapshots.last_write_seconds,
            rejoining=bool(driver.journal is not None and driver.journal.rejoining),
            listening=listening,
            peer_refused=dict(getattr(transport, "refused", {})),
            pre_votes={"started": obj.pre_votes_started, "won": obj.pre_votes_won,
                       "granted": obj.pre_votes_granted, "refused": obj.pre_votes_refused},
            read_index={"rounds": obj.read_rounds, "confirmed": obj.read_rounds_confirmed,
                        "failed": obj.read_rounds_failed, "reads": obj.reads_confirmed,
                        "for_followers": obj.reads_for_followers},
        )


def _check_port_free(address: str) -> None:
    """Fail with a clear message if the Raft port is taken (PySyncObj would retry silently)."""
    host, port = address.rsplit(":", 1)
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            raise FatalReplicationError(f"cannot bind Raft address {address}: {exc.strerror}") from None
