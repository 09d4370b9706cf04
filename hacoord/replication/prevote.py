"""Pre-vote and leader stickiness (Raft thesis, section 9.6) for PySyncObj 0.3.17.

Why
===
In 0.3.17 a member whose election deadline passes raises its term and asks for votes at once.
A member cut off from the others while its connections stay up (a dropped link, a firewall
rule, a long pause) does that at every election timeout, raising its term by one each time,
and gets nothing back. When the link heals, its first message carries a term higher than the
leader's; the leader steps down and the cluster holds a needless election at that term (the
chaos suite's partitions showed terms jumping by 17-36 after a heal). A member cut off from the
leader alone (a partial partition) can likewise depose a healthy leader again and again.

What changes
============
When its deadline passes, a follower (or a candidate whose election failed) first holds a
*pre-vote*: it asks every voter whether it *would* vote for it in the next term
(``pre_vote``: the term it would stand in and its last log entry) and changes nothing of its
own. It stands for election for real only once a majority (itself included) said yes. Until
then its term stays where it was, so a cut-off member comes back at the term everyone else has,
and the leader's next heartbeat makes it a follower again.

A member says yes (``pre_vote_response`` with ``granted``) only if all of these hold:

* the term asked for is above its own (it would consider such a candidate at all);
* the asker's log is at least as up to date as its own (it would grant the real vote);
* it does not know a live leader: it is not the leader itself, and it has not heard from a
  connected leader within three quarters of the minimum election timeout (*leader
  stickiness*: a member cut off from the leader alone cannot gather a majority while the
  others still hear from it);
* it is not rejoining (a rejoining member does not vote at all, see raft_safety).

A member that says yes puts its own election deadline off by a fresh timeout, as a real vote
does: the asker is about to stand, and standing too would split the vote. For the same reason
it drops a pre-vote of its own for that term, under way or won, unless it goes first: of two
members that ask at once with equally up-to-date logs, the one with the lower id keeps its
pre-vote and stands (the order in which the survivors of a leader whose connections closed
hold their early elections, see the engine); the other waits. Were both to stand, they would
split the vote (in a 3-member cluster that costs a term); were both to wait, nobody would stand
for a whole election timeout.

A member connected to nobody holds no election (as in 0.3.17), and draws its deadline again
whenever it passes. The library leaves it in the past, so members whose links came up together
(a cluster started, or restarted after all its members died, on a machine slow enough that
start-up outlasts the election timeout) all stood at their first connected tick, and the vote
split: a chaos run's kill-all took two terms to elect a leader.

A refusal carries the refuser's term; a pre-candidate behind it adopts that term (as a follower,
without a vote) so that its next pre-vote asks for a term the others can grant (etcd does the
same; otherwise a member with the better log and a lower term, and one with a higher term and
a worse log, would refuse each other forever).

Asking changes nothing on anyone: no term, no vote, no deadline is touched by a ``pre_vote``,
so Raft's safety argument is unchanged; only who starts an election, and when, is.

Kept as they were:

* a leadership transfer (``timeout_now``) skips the pre-vote: the outgoing leader asked for it;
* a lone member (no peers) stands at once;
* a leader that has not heard from a majority for ``leaderFallbackTimeout`` steps down (the
  library's check-quorum), so a leader cut off from a majority stops serving and does not hold
  the others' leases either.

Messages from members that do not know these types are ignored by the library, so in a cluster
being upgraded a member on the older release never answers a pre-vote: the newer members stand
only with each other's support, the older ones as before.

Threads: every method runs on the member's tick thread.
"""

from __future__ import annotations

import logging
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj.node import Node

logger = logging.getLogger(__name__)

PRE_VOTE = "pre_vote"
PRE_VOTE_RESPONSE = "pre_vote_response"
#: A member counts the leader as live for this share of the minimum election timeout after it
#: last heard from it. Less than the whole timeout: the first member to ask, at its deadline
#: (at least the minimum timeout after the leader fell silent), must find the others' leases
#: run out even if they heard the leader's last heartbeat a little later than it did (with the
#: whole timeout, a leader isolated in a 3-member cluster was replaced after two election
#: timeouts in 3 of 20 rounds). Heartbeats come every 50 ms, so a live leader renews it often.
LEASE_SHARE = 0.75


class PreVoteSyncObj(_syncobj.SyncObj):
    """``pysyncobj.SyncObj`` that holds a pre-vote before an election: see the module docstring.

    :class:`~hacoord.replication.raft_safety.SafeSyncObj` builds on it. Counters (read from any
    thread): ``pre_votes_started``, ``pre_votes_won``, ``pre_votes_granted`` (yes answers given)
    and ``pre_votes_refused`` (no answers given).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before SyncObj.__init__: attributes added later go into full-dump snapshots.
        self.pre_votes_started = 0
        self.pre_votes_won = 0
        self.pre_votes_granted = 0
        self.pre_votes_refused = 0
        #: The term the pre-vote under way asks for (None: none under way).
        self._pv_term: int | None = None
        self._pv_grants: set[str] = set()
        #: The term a majority said yes to: the next due election is held for real if it is
        #: still for that term (None: no pre-vote won).
        self._pv_won: int | None = None
        #: When this member last heard from a leader of its term (monotonic clock).
        self._pv_leader_heard = float("-inf")
        super().__init__(*args, **kwargs)

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N803 (the library's name)
        self._pre_vote_before_tick()
        super()._onTick(timeToWait)

    def _SyncObj__onMessageReceived(self, node: Node, message: Any) -> None:  # noqa: N802
        """Overrides SyncObj's private handler (bound by name at init): the two pre-vote
        messages are handled here, every other goes to the library."""
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == PRE_VOTE:
            self._pre_vote_on_request(node, message)
        elif kind == PRE_VOTE_RESPONSE:
            self._pre_vote_on_response(node, message)
        else:
            _syncobj.SyncObj._SyncObj__onMessageReceived(self, node, message)

    # -- the asker ----------------------------------------------------------------------------
    def _pre_vote_before_tick(self) -> None:
        """Before the library's tick: if an election is due and not yet backed by a majority,
        hold a pre-vote instead (pushing the library's deadline back); if it is backed, let the
        library hold it."""
        now = _syncobj.monotonicTime()
        if (self._SyncObj__raftState == _syncobj._RAFT_STATE.LEADER
                or self.selfNode is None
                or self._SyncObj__raftElectionDeadline >= now):
            return
        if not self._SyncObj__connectedToAnyone():
            # Draw the deadline again: kept in the past, it would fall due at the first tick
            # with a connection, on every member whose links came up together. A pre-vote won
            # before the links went down is stale by then: the member asks again.
            self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
            self._pv_term = self._pv_won = None
            return
        voters = self._SyncObj__otherNodes
        won, self._pv_won = self._pv_won, None
        if (won == self.raftCurrentTerm + 1 or self._SyncObj__transferInProgress
                or not voters):
            self._pv_term = None
            return  # the library's own election runs in this tick
        self._pv_term = self.raftCurrentTerm + 1
        self._pv_grants = set()
        self.pre_votes_started += 1
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        message = {
            "type": PRE_VOTE,
            "term": self._pv_term,
            "last_log_index": self._SyncObj__getCurrentLogIndex(),
            "last_log_term": self._SyncObj__getCurrentLogTerm(),
        }
        transport = self._SyncObj__transport
        for node in voters:
            transport.send(node, message)

    def _pre_vote_on_response(self, node: Node, message: dict[str, Any]) -> None:
        term = message.get("term")
        if not isinstance(term, int) or self._pv_term is None:
            return
        if message.get("granted") is True:
            if term != self._pv_term:
                return  # an answer to an earlier round, for another term
            self._pv_grants.add(node.id)
            voters = self._SyncObj__otherNodes
            if len(self._pv_grants & {n.id for n in voters}) + 1 > (len(voters) + 1) / 2:
                self._pv_won, self._pv_term = term, None
                self.pre_votes_won += 1
                # Due now: the next tick (the poller had events, so it follows at once) holds
                # the election.
                self._SyncObj__raftElectionDeadline = 0
        elif term > self.raftCurrentTerm:
            # Refused by a member at a higher term: adopt it (no vote), ask for the next one.
            self._pv_term = None
            self._SyncObj__setCurrentTerm(term, None)
            self._SyncObj__setState(_syncobj._RAFT_STATE.FOLLOWER)
            self._SyncObj__raftLeader = None

    def _pre_vote_heard_from_leader(self) -> None:
        """A leader of this member's term was just heard from: no pre-vote is needed."""
        self._pv_leader_heard = _syncobj.monotonicTime()
        self._pv_term = self._pv_won = None

    # -- the answerer -------------------------------------------------------------------------
    def _pre_vote_on_request(self, node: Node, message: dict[str, Any]) -> None:
        term = message.get("term")
        last_index, last_term = message.get("last_log_index"), message.get("last_log_term")
        if not all(isinstance(v, int) for v in (term, last_index, last_term)):
            return
        asking = (last_term, last_index)
        mine = (self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex())
        granted = (term > self.raftCurrentTerm
                   and not self._pre_vote_knows_leader()
                   and asking >= mine)
        if granted:
            self.pre_votes_granted += 1
            if not (asking == mine and self._pre_vote_goes_first(node, term)):
                # The asker is about to stand: standing too would split the vote. As a real
                # vote does, a yes puts this member's own deadline off by a fresh election
                # timeout, and drops its own pre-vote for that term, under way or won.
                self._SyncObj__raftElectionDeadline = (
                    _syncobj.monotonicTime() + self._SyncObj__generateRaftTimeout())
                self._pv_term = self._pv_won = None
        else:
            self.pre_votes_refused += 1
        # A yes names the term asked for; a no names this member's own term.
        self._SyncObj__transport.send(node, {
            "type": PRE_VOTE_RESPONSE, "granted": granted,
            "term": term if granted else self.raftCurrentTerm})

    def _pre_vote_goes_first(self, asker: Node, term: int) -> bool:
        """Of two members asking for ``term`` at once, with logs as up to date as each other's
        (the caller's check), the one with the lower id keeps its pre-vote (the order of the
        early elections after a leader's connection closed): were both to drop theirs, nobody
        would stand for a whole election timeout. True if this member is asking for ``term``
        and goes first."""
        if term not in (self._pv_term, self._pv_won) or self.selfNode is None:
            return False
        return bool(self.selfNode.id < asker.id)

    def _pre_vote_knows_leader(self) -> bool:
        """Leader stickiness: this member leads, or heard from a leader it is still connected
        to within LEASE_SHARE of the minimum election timeout."""
        if self._SyncObj__raftState == _syncobj._RAFT_STATE.LEADER:
            return True
        leader = self._SyncObj__raftLeader
        if leader is None or leader not in self._SyncObj__connectedNodes:
            return False
        lease = self.conf.raftMinTimeout * LEASE_SHARE
        return bool(_syncobj.monotonicTime() - self._pv_leader_heard < lease)
