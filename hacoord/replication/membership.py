"""Which members form the Raft group, changed online one member at a time.

The group's configuration (each member's id, Raft address and API URL) travels in the Raft log
as an entry of its own (:mod:`hacoord.replication.memberset`: a command type PySyncObj does not
know, so the library's apply skips it) holding the *whole* new configuration. The rules are
those of Raft's single-server changes (Ongaro's thesis, section 4.1, with the correction
published after it: the third rule below):

* **a member uses the latest configuration in its log**, committed or not: from the moment the
  entry is appended (leader) or received (follower). An entry removed by a conflicting append
  takes its configuration with it; a snapshot carries the configuration as of its last index;
* **one member added or removed per change**, so any majority of the old configuration and any
  majority of the new one share a member: two leaders of one term cannot be elected, one by
  each;
* **one change at a time**: the leader appends a change only once the last one is committed;
* **not before the leader has committed an entry of its own term** (its no-op): without that, a
  change appended by a leader of an older term and a change by this one could each be
  committed by a majority that does not overlap the other's.

PySyncObj has its own membership entries (``dynamicMembershipChange``), kept off here: they
carry one node, not the whole configuration, are re-applied at start only from a full dump (a
restarted member took its start flags plus the dump's member set, ignoring changes in its
journal), and their nodes carry no member id or API URL.

Members may know each other by different Raft addresses (a proxy, a NAT, a name only some
resolve): an entry holds the addresses its leader used, and each member reaches a member of the
first membership by the address its own start flags give, a member added later by the address
it was added with (:meth:`MembershipSyncObj.local`). A member recognises itself by its id.

A member that is not in its own latest configuration is *removed*: it stands for no election.
A removed member is not told (the leader stops sending to it as the change is appended): its
operator stops it. A new member catching up may pass through memberships without itself (a
snapshot taken before its addition); the log it then receives adds it.

The transport keeps every member of every membership seen (and of the start flags): a member
replaying older memberships must still hear the leader of a newer one, and a change that a
conflicting leader undoes must not leave a member deaf to that leader. A peer that proves it
knows the cluster's secret from an address no membership here names (a member added while this
one was down) is taken in too. Only votes from members of the member's own latest membership
count.

Threads: the member's ticking thread (its event loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pysyncobj import FAIL_REASON
from pysyncobj import syncobj as _syncobj

from hacoord.core.model import valid_address
from hacoord.replication.base import MemberInfo
from hacoord.replication.memberset import (
    Config,
    MembershipError,
    check_config,
    decode_config,
    encode_config,
)
from hacoord.replication.readindex import ReadIndexSyncObj

log = logging.getLogger(__name__)
#: Peers taken in from addresses no membership named (see ``accept_peer``), at most.
MAX_STRANGERS = 64

class MembershipSyncObj(ReadIndexSyncObj):
    """A ReadIndexSyncObj whose member set follows configuration entries (module docstring).

    ``members`` is the configuration from the member's start flags: it holds until the log or a
    snapshot names another, and it says by which address this member reaches each member of
    the first configuration (see :meth:`local`). :meth:`propose_config` (leader) appends a
    change.
    """

    def __init__(self, *args: Any, members: Sequence[MemberInfo] = (), **kwargs: Any) -> None:
        #: The configuration before the first configuration entry of the log.
        self._config_base: Config = tuple(members)
        #: Configuration entries in the log, oldest first: (index, configuration).
        self._config_log: list[tuple[int, Config]] = []
        #: The Raft address by which this member's start flags name each member.
        self._flags = {m.id: m.raft_address for m in members}
        self._me: str | None = None
        self.removed = False
        #: The members the transport knows (it refuses connections from any other address):
        #: every member of every membership this member has seen, and its start flags. Never
        #: fewer: a member catching up replays older memberships, and must still hear the
        #: leader of a newer one (Raft's members take messages from outside their membership).
        self._reachable: set[Any] = set()
        self._strangers = 0
        #: Called with the configuration (local addresses) whenever this member's changes.
        self.on_config: Callable[[Config], None] | None = None
        super().__init__(*args, **kwargs)
        me = self.selfNode.id if self.selfNode is not None else None
        self._me = next((m.id for m in members if m.raft_address == me), None)
        transport = self._SyncObj__transport
        for message in ("add", "remove"):  # the library's own, unauthenticated beyond the secret
            transport.setOnUtilityMessageCallback(message, None)
        self._reachable = set(self._SyncObj__otherNodes)
        self._config_rescan(0)

    # --- what is in force -------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration in force here: the latest in the log (as the log holds it)."""
        return self._config_log[-1][1] if self._config_log else self._config_base

    @property
    def local_config(self) -> Config:
        """:attr:`config` with each member's Raft address as this member reaches it."""
        return tuple(self.local(m) for m in self.config)

    def local(self, member: MemberInfo) -> MemberInfo:
        """``member`` with the Raft address this member reaches it by: a member of the first
        membership by the address its own start flags give (members may know each other by
        different addresses: a proxy, a NAT, a name), one added later by the address it was
        added with."""
        address = member.raft_address if member.added else self._flags.get(member.id,
                                                                            member.raft_address)
        return MemberInfo(member.id, address, member.api_url, member.added)

    @property
    def config_index(self) -> int:
        """The log index of the entry that set :attr:`config` (0: start flags or snapshot)."""
        return self._config_log[-1][0] if self._config_log else 0

    def config_at(self, index: int) -> Config:
        """The configuration in force once entries up to ``index`` are in the log."""
        for idx, members in reversed(self._config_log):
            if idx <= index:
                return members
        return self._config_base

    @property
    def config_committed(self) -> bool:
        return self.config_index <= self._SyncObj__raftCommitIndex

    # --- keeping it current -----------------------------------------------------------------

    def _config_rescan(self, after: int, base: Config | None = None) -> None:
        """Recompute from the log's entries after index ``after`` (on a start, or when a
        snapshot replaced what came before; ``base``: the snapshot's configuration)."""
        if base:
            self._config_base = base
        self.reach(self._config_base)
        self._config_log = []
        raft_log = self._SyncObj__raftLog
        if len(raft_log):
            first = max(after + 1, raft_log[0][1])
            for command, idx, _term in self._SyncObj__getEntries(first):
                self._config_note(command, idx)
        self._config_use()

    def _config_note(self, command: bytes, idx: int) -> bool:
        if command[:1] != b"\x10":
            return False
        try:
            members = decode_config(command)
        except MembershipError as exc:  # only a member of a newer release could write it
            log.critical("ignoring membership entry %d: %s", idx, exc)
            return False
        if members is None:
            return False
        while self._config_log and self._config_log[-1][0] >= idx:
            self._config_log.pop()
        self._config_log.append((idx, members))
        self.reach(members)
        return True

    def _safe_entries_added(self, entries: Sequence[tuple[bytes, int, int]]) -> None:
        if any([self._config_note(command, idx) for command, idx, _ in entries]):
            self._config_use()

    def _safe_entries_removed(self, idx: int) -> None:
        if self._config_log and self._config_log[-1][0] >= idx:
            while self._config_log and self._config_log[-1][0] >= idx:
                self._config_log.pop()
            self._config_use()

    def _nodes(self, members: Config) -> set[Any]:
        node_class = self._SyncObj__nodeClass
        me = getattr(self.selfNode, "id", None)
        addresses = (self.local(m).raft_address for m in members if m.id != self._me)
        return {node_class(address) for address in addresses if address != me}

    def reach(self, members: Config) -> None:
        """Let the transport connect with ``members`` (it never forgets one; see
        ``_reachable``)."""
        transport = self._SyncObj__transport
        for node in self._nodes(members) - self._reachable:
            transport.addNode(node)
            self._reachable.add(node)

    def accept_peer(self, address: str) -> bool:
        """The transport's question about a peer that authenticated (it knows the cluster's
        secret) from an address no membership seen here names: a member added while this one
        was away, or one this member's log has not reached yet, possibly the leader. Taken in
        (at most ``MAX_STRANGERS`` such addresses), so that this member hears it."""
        if self._strangers >= MAX_STRANGERS or not valid_address(address):
            return False
        node = self._SyncObj__nodeClass(address)
        if node not in self._reachable:
            self._strangers += 1
            self._SyncObj__transport.addNode(node)
            self._reachable.add(node)
        return True

    def _config_use(self) -> None:
        """Make the library's voters and the transport's members the configuration's."""
        members = self.config
        if not members:
            return
        voters = self._nodes(members)
        self.reach(members)
        self.removed = self._me is not None and all(m.id != self._me for m in members)
        current = self._SyncObj__otherNodes
        if voters != current:
            log.info("members now %s%s", ", ".join(f"{m.id} ({m.raft_address})"
                                                   for m in self.local_config),
                     " (this member is not among them)" if self.removed else "")
            self._config_voters(voters, current)
        if self.on_config is not None:
            self.on_config(self.local_config)

    def _config_voters(self, voters: set[Any], current: set[Any]) -> None:
        """The library's member set and its per-follower tables, as voters ``voters``."""
        next_index, match_index = self._SyncObj__raftNextIndex, self._SyncObj__raftMatchIndex
        for node in current - voters:
            next_index.pop(node, None)
            match_index.pop(node, None)
            self._SyncObj__serializer.cancelTransmisstion(node)  # a snapshot it was being sent
        now, last = _syncobj.monotonicTime(), self._SyncObj__getCurrentLogIndex()
        for node in voters - current:
            next_index[node] = last + 1
            match_index[node] = 0
            if self._isLeader():
                self._SyncObj__lastResponseTime[node] = now
        self._SyncObj__otherNodes = set(voters)

    # --- changing it (leader) ---------------------------------------------------------------

    def config_refusal(self) -> str | None:
        """Why this member cannot append a configuration change now, or None."""
        if not self._isLeader():
            return "this member is not the leader"
        if not self.leader_commit_is_current:
            return "the leader has not yet committed an entry of its term; try again"
        if not self.config_committed:
            return "the previous membership change is not committed yet; try again"
        return None

    def propose_config(self, members: Config, done: Callable[[str | None], None]) -> str | None:
        """Append ``members`` as the new configuration (one member added or removed). Returns
        why not, or None; ``done(None)`` once it is applied here in this term, ``done(reason)``
        if it was not committed."""
        refusal = self.config_refusal()
        if refusal is not None:
            return refusal
        old = {m.id for m in self.config}
        new = {m.id for m in members}
        if len(old ^ new) != 1 or not ({m for m in members if m.id in old} <= set(self.config)):
            return "a change adds or removes exactly one member"
        try:
            check_config(members)
        except MembershipError as exc:
            return str(exc)
        idx = self._SyncObj__getCurrentLogIndex() + 1
        term = self._SyncObj__raftCurrentTerm
        self._SyncObj__raftLog.add(encode_config(members), idx, term)
        self._config_log.append((idx, members))
        self._config_use()

        def committed(_result: Any, error: int) -> None:
            done(None if error == FAIL_REASON.SUCCESS else "leadership changed before it committed")

        self._SyncObj__commandsWaitingCommit[idx].append((term, committed))
        return None
