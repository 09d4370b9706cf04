"""The replication interface the server talks to, and its errors.

Two implementations: :class:`~hacoord.replication.raft.RaftReplicator` (PySyncObj, the real one)
and :class:`~hacoord.replication.memory.MemoryReplicator` (one process, for fast tests). Both are
driven from one asyncio event loop: every method here is called on that loop's thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from hacoord.core.commands import Command
from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome
from hacoord.replication.feed import ChangeFeed


class ReplicationError(Exception):
    """Base of the errors :meth:`Replicator.submit` raises."""


class NotLeaderError(ReplicationError):
    """This member does not lead; ``leader_id`` names the member that does, if known."""

    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id


class NotAppliedError(ReplicationError):
    """The command was certainly not applied (leadership changed before it committed, or the
    queue was full). Retrying with the same request id is safe."""


class MembershipRefused(ReplicationError):
    """A membership change that cannot be made: it clashes with the membership, or would leave
    the cluster without a majority of reachable members. Nothing changed."""


class OutcomeUnknownError(ReplicationError):
    """No answer in time: the command may or may not be applied. Retrying with the same request
    id is safe (the state machine de-duplicates it)."""


@dataclass(frozen=True)
class MemberInfo:
    """One coordinator member as configured: its id, Raft address and API URL. ``added``: it
    joined through a membership change, so its addresses are the ones every member uses (a
    member of the first membership may be known to each member by an address of its own, as
    each was started with; see :mod:`hacoord.replication.membership`)."""

    id: str
    raft_address: str
    api_url: str
    added: bool = False


@dataclass
class RaftStatus:
    """What a member knows about itself and the Raft group, for ``status`` and readiness (the
    API shows it as :class:`hacoord.client.MemberStatus`)."""

    member_id: str
    role: str
    term: int
    leader_id: str | None
    commit_index: int
    applied_index: int
    revision: int
    ready: bool
    has_quorum: bool
    log_length: int = 0
    tick_failures: int = 0
    leader_changes: int = 0
    invariant_violations: int = 0
    in_flight: int = 0
    applied_commands: int = 0
    apply_seconds: float = 0.0
    peers: dict[str, Any] = field(default_factory=dict)
    #: The state has been applied as far as the member had it (reads are served).
    loaded: bool = True
    #: Why the member is out of Raft after a failed write or sync of its files, if it is.
    storage_failure: str | None = None
    storage_failures: int = 0
    snapshot_index: int = 0
    snapshot_writes: int = 0
    snapshot_write_failures: int = 0
    snapshot_write_seconds: float = 0.0
    #: After ``hacoord member rejoin``: no vote until caught up with a leader.
    rejoining: bool = False
    #: The Raft listener is open (a member whose listener is down is not ready).
    listening: bool = True
    #: Connections the Raft peer port dropped, by reason (hacoord.replication.peer).
    peer_refused: dict[str, int] = field(default_factory=dict)
    #: Pre-votes (hacoord.replication.prevote): ``started`` and ``won`` by this member,
    #: ``granted`` and ``refused`` to others.
    pre_votes: dict[str, int] = field(default_factory=dict)
    #: Read index (hacoord.replication.readindex): ``rounds`` started, ``confirmed`` and
    #: ``failed`` rounds, ``reads`` confirmed, ``for_followers`` (reads confirmed for a
    #: follower's request).
    read_index: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Replicator(Protocol):
    """What the server needs from replication. All methods run on the event loop's thread."""

    member_id: str
    members: dict[str, MemberInfo]
    feed: ChangeFeed

    @property
    def state(self) -> ClusterState:
        """The locally applied state. Treat as read-only; it changes between awaits."""

    async def start(self) -> None:
        """Open files and sockets and begin taking part in the group."""

    async def stop(self) -> None:
        """Leave cleanly: flush, close sockets."""

    def is_leader(self) -> bool:
        """True while this member believes it leads (it may be deposed without knowing)."""

    def leader_id(self) -> str | None:
        """The member this one believes leads, if any."""

    @property
    def term(self) -> int:
        """The current Raft term as this member knows it. While :meth:`is_leader` holds, it is the
        term of this member's leadership: leader-only decisions carry it so that ``apply`` can
        refuse those of a deposed leader."""

    async def submit(self, command: Command, timeout: float) -> Outcome:
        """Replicate ``command`` and return its outcome once applied here. Leader only; raises
        :class:`NotLeaderError`, :class:`NotAppliedError` or :class:`OutcomeUnknownError`."""

    async def change_members(self, add: MemberInfo | None = None, remove: str | None = None,
                             timeout: float = 10.0) -> bool:
        """On the leader: add the member ``add`` or remove the member ``remove``; False when
        that was already so, True once committed. Raises :class:`NotLeaderError`,
        :class:`MembershipRefused`, :class:`NotAppliedError` or :class:`OutcomeUnknownError`."""

    async def read_index(self, timeout: float) -> int | None:
        """A linearizable read point without a log write: once it returns, the local state
        holds every write acknowledged before the call. None: not available yet (the caller
        submits a barrier command, or forwards the read, instead). A follower asks the leader;
        raises :class:`NotLeaderError` (no leader known) or :class:`NotAppliedError`."""

    @property
    def loaded(self) -> bool:
        """True once the state has been applied as far as the member had it; reads wait for it."""

    def begin_stop(self) -> None:
        """Shutdown has begun: answer long polls now, and the writes and reads waiting here
        soon (before the HTTP server's grace runs out); stand for no election."""

    @property
    def done_waiting(self) -> bool:
        """True once a stop began long enough ago that what waits here was answered: requests
        are then answered at once, not waited on (the HTTP server's grace is short)."""

    def status(self) -> RaftStatus:
        """A snapshot of this member's Raft and state-machine status."""

    def peers_name_clusters(self) -> bool:
        """Every other member runs a release that knows cluster ids (they said so on the peer
        port): only then is the cluster named, so that no member rejects the naming as an
        unknown command."""
