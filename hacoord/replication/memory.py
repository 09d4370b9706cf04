"""An in-process replicator with the same interface as the Raft one, for fast tests.

It applies each command at once through :func:`hacoord.core.apply` and always leads (unless a
test says otherwise with :meth:`MemoryReplicator.set_leader`). Its Raft ``term`` is a plain
attribute; a change of leader moves it on by one, as an election would.
"""

from __future__ import annotations

import time

from hacoord.core.commands import Command
from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome
from hacoord.replication.applying import apply_logged
from hacoord.replication.base import MemberInfo, MembershipRefused, NotLeaderError, RaftStatus
from hacoord.replication.feed import ChangeFeed
from hacoord.replication.invariants import InvariantWatch
from hacoord.replication.memberset import MembershipError, changed


class MemoryReplicator:
    """A single-member "group" held in memory. See :class:`~hacoord.replication.base.Replicator`."""

    def __init__(self, member_id: str = "m1", members: dict[str, MemberInfo] | None = None) -> None:
        self.member_id = member_id
        self.members = members or {member_id: MemberInfo(member_id, "127.0.0.1:0", "http://127.0.0.1:0")}
        self._state = ClusterState()
        self._leader: str | None = member_id
        self._index = 1
        self.term = 1
        self.feed = ChangeFeed()
        self.invariants = InvariantWatch()
        self.apply_seconds = 0.0
        self.done_waiting = False

    @property
    def state(self) -> ClusterState:
        return self._state

    loaded = True  # nothing to load

    async def start(self) -> None:
        """Nothing to open."""

    def begin_stop(self) -> None:
        """Answer long polls now (nothing else waits here)."""
        self.done_waiting = True
        self.feed.close()

    async def stop(self) -> None:
        """Nothing to close."""

    def set_leader(self, leader_id: str | None) -> None:
        """Pretend another member (or none) leads, to exercise forwarding and errors. A new
        leader means a new term."""
        if leader_id != self._leader:
            self.term += 1
        self._leader = leader_id

    def is_leader(self) -> bool:
        return self._leader == self.member_id

    def peers_name_clusters(self) -> bool:
        return True

    def leader_id(self) -> str | None:
        return self._leader

    async def submit(self, command: Command, timeout: float) -> Outcome:
        if not self.is_leader():
            raise NotLeaderError(self._leader)
        self._index += 1
        started = time.perf_counter()
        outcome = apply_logged(self._state, command)
        self.apply_seconds += time.perf_counter() - started
        if outcome.ok and outcome.events:
            self.feed.record(outcome.events)
            self.invariants.observe(self._state, outcome)
        return outcome

    async def change_members(self, add: MemberInfo | None = None, remove: str | None = None,
                             timeout: float = 10.0) -> bool:
        """The membership as a list held here (no Raft group to change); the leader refuses to
        remove itself as the real one does, handing over."""
        if not self.is_leader():
            raise NotLeaderError(self._leader)
        try:
            new = changed(tuple(self.members.values()), add, remove)
        except MembershipError as exc:
            raise MembershipRefused(str(exc)) from None
        if new is None:
            return False
        if remove == self.member_id:
            raise NotLeaderError(None)
        self.members = {m.id: m for m in new}
        self._index += 1
        return True

    async def read_index(self, timeout: float) -> int | None:
        """Everything is applied at once: the read point is now."""
        if not self.is_leader():
            raise NotLeaderError(self._leader)
        return self._index

    def status(self) -> RaftStatus:
        return RaftStatus(
            member_id=self.member_id, role="leader" if self.is_leader() else "follower", term=self.term,
            leader_id=self._leader, commit_index=self._index, applied_index=self._index,
            revision=self._state.revision, ready=True, has_quorum=True, log_length=self._index,
            invariant_violations=self.invariants.violations, applied_commands=self._index,
            apply_seconds=self.apply_seconds,
        )
