"""The Raft replicator: PySyncObj driven from the member's asyncio event loop.

Design (see ARCHITECTURE.md for what it absorbs from PySyncObj 0.3.17):

* One thread. PySyncObj runs with ``autoTick=False`` over an epoll poller whose descriptor the
  event loop watches; a timer ticks it for timeouts. Commands are applied on the loop's thread,
  so HTTP handlers read the state without locks and waiters are plain futures.
* Group commit. Commands queue up and go to the log as batches (one log entry each), at most
  ``max_in_flight`` batches at once: a lone write is proposed at once and commits in one round
  trip, while under load batches grow instead of the message count.
* Leader only. ``submit`` refuses on a follower (the server forwards over HTTP), which avoids the
  library's follower-submission paths that lose callbacks under load.
* Waiters resolve from the applied command itself (by request id), not from PySyncObj's
  callbacks, which never fire for entries a follower received inside a snapshot; every wait has
  a timeout, after which the outcome is unknown and a retry with the same request id is safe.
* Journal plus snapshot, always together: hacoord's checksummed journal, synced before anything
  is acknowledged (:mod:`hacoord.replication.journal`), and its own JSON snapshot format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObjConf

from hacoord.core.apply import apply
from hacoord.core.commands import Command, encode
from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome
from hacoord.replication.base import (
    MemberInfo,
    MemberStatus,
    NotAppliedError,
    NotLeaderError,
    OutcomeUnknownError,
    ReplicationError,
)
from hacoord.replication.engine import HacoordSyncObj
from hacoord.replication.feed import ChangeFeed
from hacoord.replication.invariants import InvariantWatch
from hacoord.replication.journal import HacoordJournal
from hacoord.replication.statemachine import StateMachine, encode_batch

log = logging.getLogger(__name__)

ROLES = {0: "follower", 1: "candidate", 2: "leader"}
FAIL_NAMES = {v: k.lower() for k, v in vars(FAIL_REASON).items() if k.isupper()}


class FatalReplicationError(ReplicationError):
    """The member cannot go on safely (unreadable snapshot, port taken, ...)."""


@dataclass(frozen=True)
class RaftTuning:
    """Raft timing and batching. The defaults favour fast failover on a LAN or one host."""

    tick_period: float = 0.01
    append_entries_period: float = 0.05
    election_timeout_min: float = 0.3
    election_timeout_max: float = 0.6
    connection_timeout: float = 1.0
    connection_retry: float = 0.2
    leader_fallback_timeout: float = 1.2
    log_compaction_min_entries: int = 5000
    log_compaction_min_time: float = 300.0
    max_in_flight: int = 4
    max_batch_commands: int = 256
    max_batch_bytes: int = 256 * 1024
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
            # Batch mode, but the replicator sends new entries right after the tick that added
            # them (HacoordSyncObj.send_new_entries): one message per follower per group-commit
            # batch, instead of the library's choice between a message per command and a wait
            # for the next heartbeat.
            "appendEntriesUseBatch": True,
            "appendEntriesBatchSizeBytes": 4 * self.max_batch_bytes,
        }


@dataclass
class _Waiter:
    future: asyncio.Future[Outcome]
    command: Command


@dataclass
class _Batch:
    request_ids: list[str]
    deadline: float


class RaftReplicator:
    """A member of a Raft group replicating :class:`ClusterState`. See the module docstring.

    All public methods must be called on the event loop that ran :meth:`start`.
    """

    def __init__(self, member_id: str, members: dict[str, MemberInfo], data_dir: Path,
                 secret: str | None, tuning: RaftTuning | None = None) -> None:
        if member_id not in members:
            raise ValueError(f"member {member_id!r} is not among the configured members")
        self.member_id = member_id
        self.members = members
        self.data_dir = Path(data_dir)
        self.tuning = tuning or RaftTuning()
        self._secret = secret
        self._by_raft_address = {m.raft_address: m.id for m in members.values()}
        self._sm = StateMachine(self._on_applied, self._on_restored)
        self.feed = ChangeFeed()
        self.invariants = InvariantWatch()
        self._obj: HacoordSyncObj | None = None
        self._journal: HacoordJournal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tick_scheduled = False
        self._queue: deque[tuple[str, bytes]] = deque()
        self._waiting: dict[str, _Waiter] = {}
        self._batches: dict[int, _Batch] = {}
        self._batch_ids = itertools.count(1)
        # Counted here, not only by SafeSyncObj: a failing journal sync or send after the
        # library's tick must make the member unready too.
        self.tick_failures = 0
        self.consecutive_tick_failures = 0
        self.leader_changes = 0
        self._last_leader: str | None = None
        self.fatal: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        return self._sm.state

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        me = self.members[self.member_id]
        _check_port_free(me.raft_address)
        conf = SyncObjConf(
            autoTick=False,
            password=self._secret,
            bindAddress=me.raft_address,
            journalFile=str(self.data_dir / "raft.journal"),
            fullDumpFile=str(self.data_dir / "raft.snapshot"),
            serializer=self._sm.write_snapshot,
            deserializer=self._sm.read_snapshot,
            commandsWaitLeader=False,
            dynamicMembershipChange=False,
            maxBindRetries=1,
            onStateChanged=self._on_role_changed,
            **self.tuning.conf_kwargs(),
        )
        others = [m.raft_address for m in self.members.values() if m.id != self.member_id]
        self._obj = HacoordSyncObj(me.raft_address, others, conf, consumers=[self._sm],
                                   durable=self.tuning.fsync)
        self._journal = self._obj.journal
        obj = self._obj
        self._sm.install_gate = lambda: obj.loading_snapshot
        loop = self._loop
        obj.on_early_election = lambda delay: loop.call_later(delay + 0.0005, self._schedule_tick)
        self._loop.add_reader(self._obj.poller.fileno(), self._schedule_tick)
        self._timer = self._loop.call_later(self.tuning.tick_period, self._on_timer)
        self._tick()

    async def stop(self) -> None:
        if self._loop is not None and self._obj is not None:
            self._loop.remove_reader(self._obj.poller.fileno())
        if self._timer is not None:
            self._timer.cancel()
        for waiter in self._waiting.values():
            if not waiter.future.done():
                waiter.future.set_exception(NotAppliedError("member is shutting down"))
        self._waiting.clear()
        if self._obj is not None:
            if self._journal is not None:
                self._journal.sync()
            self._obj.destroy()
            self._obj.poller.close()
            self._obj = None

    # --- ticking ------------------------------------------------------------------------------

    def _on_timer(self) -> None:
        self._tick()
        self._expire_batches()
        assert self._loop is not None
        self._timer = self._loop.call_later(self.tuning.tick_period, self._on_timer)

    def _schedule_tick(self) -> None:
        if not self._tick_scheduled and self._loop is not None:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_scheduled = False
        obj = self._obj
        if obj is None:
            return
        self._propose()
        if self._journal is not None:
            # Entries the leader added in the previous tick become durable before this tick
            # counts the leader's own copy towards a commit.
            self._journal.sync()
        try:
            obj.doTick(0.0)
            obj.send_new_entries()
            if self._journal is not None:
                # The leader's own copy syncs while the followers receive and sync theirs.
                self._journal.sync()
            self.consecutive_tick_failures = 0
        except Exception:
            self.tick_failures += 1
            self.consecutive_tick_failures += 1
            if self.consecutive_tick_failures in (1, 10, 100) or self.consecutive_tick_failures % 1000 == 0:
                log.exception("raft tick failed (%d in a row)", self.consecutive_tick_failures)
        if self._sm.load_error and self.fatal is None:
            self.fatal = self._sm.load_error
        self._note_leader()
        if obj.poller.last_events or (self._queue and len(self._batches) < self.tuning.max_in_flight):
            # Acks handled at the end of this tick move the commit index only in the next one.
            self._schedule_tick()

    def _note_leader(self) -> None:
        leader = self.leader_id()
        if leader != self._last_leader:
            self._last_leader = leader
            if leader is not None:
                self.leader_changes += 1
                log.info("leader is now %s (term %d)", leader, self.term)

    def _on_role_changed(self, old: int, new: int) -> None:
        log.info("role %s -> %s", ROLES.get(old, old), ROLES.get(new, new))
        if new != 2:
            # Deposed: nothing queued here will be proposed; callers retry on the new leader.
            while self._queue:
                rid, _ = self._queue.popleft()
                self._fail(rid, NotAppliedError("leadership lost before the command was proposed"))

    # --- submitting ---------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._obj is not None and self._obj._isLeader()

    def leader_id(self) -> str | None:
        if self._obj is None:
            return None
        node = self._obj._getLeader()
        if node is None:
            return None
        return self._by_raft_address.get(node.address)

    @property
    def term(self) -> int:
        return self._obj.raftCurrentTerm if self._obj is not None else 0

    async def submit(self, command: Command, timeout: float) -> Outcome:
        if self.fatal:
            raise FatalReplicationError(self.fatal)
        if not self.is_leader():
            raise NotLeaderError(self.leader_id())
        if not command.request_id:
            command = dataclasses.replace(command, request_id=uuid.uuid4().hex)
        rid = command.request_id
        if rid in self.state.requests:
            return apply(self.state, command)  # a duplicate: answered from memory, no change
        waiter = self._waiting.get(rid)
        if waiter is None:
            if len(self._waiting) >= self.tuning.max_pending:
                raise NotAppliedError("too many commands in flight; retry later")
            assert self._loop is not None
            waiter = self._waiting[rid] = _Waiter(self._loop.create_future(), command)
            self._queue.append((rid, encode(command)))
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

    def _propose(self) -> None:
        """Move queued commands into the log, a batch at a time, within the in-flight bound."""
        obj = self._obj
        if obj is None or not self._queue or not obj._isLeader():
            return
        while self._queue and len(self._batches) < self.tuning.max_in_flight:
            rids, raws, size = [], [], 0
            while self._queue and len(rids) < self.tuning.max_batch_commands:
                rid, raw = self._queue[0]
                if rids and size + len(raw) > self.tuning.max_batch_bytes:
                    break
                self._queue.popleft()
                if rid not in self._waiting:  # its caller gave up before it was proposed
                    continue
                rids.append(rid)
                raws.append(raw)
                size += len(raw)
            if not rids:
                continue
            batch_id = next(self._batch_ids)
            self._batches[batch_id] = _Batch(rids, time.monotonic() + 30.0)
            self._sm.apply_batch(encode_batch(raws),
                                 callback=lambda res, err, b=batch_id: self._on_batch_done(b, err))
            self._schedule_tick()

    def _on_batch_done(self, batch_id: int, err: int) -> None:
        batch = self._batches.pop(batch_id, None)
        if batch is not None and err != FAIL_REASON.SUCCESS:
            reason = FAIL_NAMES.get(err, str(err))
            for rid in batch.request_ids:
                self._fail(rid, NotAppliedError(f"not committed ({reason}); retry"))
        self._propose()

    def _expire_batches(self) -> None:
        """Forget batches whose callback never came (PySyncObj skips callbacks in some paths),
        so they do not hold the in-flight bound forever. Their waiters time out on their own."""
        now = time.monotonic()
        for batch_id in [b for b, batch in self._batches.items() if batch.deadline < now]:
            del self._batches[batch_id]

    def _fail(self, rid: str, error: Exception) -> None:
        waiter = self._waiting.pop(rid, None)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_exception(error)
            waiter.future.exception()  # mark retrieved: the caller may have timed out already

    # --- applying -----------------------------------------------------------------------------

    def _on_applied(self, rid: str, outcome: Outcome) -> None:
        if outcome.ok and outcome.events:
            self.feed.record(outcome.events)
            self.invariants.observe(self.state, outcome)
        waiter = self._waiting.pop(rid, None) if rid else None
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(outcome)

    def _on_restored(self) -> None:
        """A snapshot replaced the state: answer waiters whose commands it already contains."""
        self.feed.reset(self.state.revision, self.state)
        for rid in [r for r in self._waiting if r in self.state.requests]:
            self._on_applied(rid, apply(self.state, self._waiting[rid].command))

    # --- status -------------------------------------------------------------------------------

    def status(self) -> MemberStatus:
        obj = self._obj
        if obj is None:
            return MemberStatus(self.member_id, "stopped", 0, None, 0, 0, self.state.revision,
                                False, False)
        raw = obj.getStatus()
        leader = self.leader_id()
        leader_commit = raw.get("leader_commit_idx") or 0
        peers = {}
        for member in self.members.values():
            if member.id == self.member_id:
                continue
            addr = member.raft_address
            peers[member.id] = {
                "connected": raw.get(f"partner_node_status_server_{addr}", 0) == 2,
                "match_index": raw.get(f"match_idx_server_{addr}"),
            }
        ready = (self.fatal is None and leader is not None and raw["has_quorum"]
                 and self.consecutive_tick_failures < 3 and raw["last_applied"] >= leader_commit)
        return MemberStatus(
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
            applied_commands=self._sm.applied_commands,
            apply_seconds=self._sm.apply_seconds,
            peers=peers,
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
