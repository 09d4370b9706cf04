"""Linearizable reads without a log write: the read index (Raft thesis, section 6.4).

A consistent read used to commit a ``Barrier`` command: a log entry, a journal sync on a
majority, and an apply, for every read (group commit shared some of it). A read index needs
none of that. The leader

1. checks that it has committed an entry of its own term (until then its commit index may lag
   behind entries an earlier leader committed; the caller falls back to the barrier);
2. takes its commit index as the read's index;
3. confirms that it still leads: it sends a ``read_index_probe`` (its term and a round number)
   to every voter, and the round is confirmed once a majority, itself included, answered
   ``read_index_ack`` in the same term. A member answers only a probe of its own current term:
   a member that has moved on to a newer term knows of a newer election and stays silent;
4. answers once it has applied up to the read's index.

Why that is enough: a write acknowledged before the read arrived was committed by this leader
or an earlier one, so it is at or below the commit index of step 2 (step 1). Another leader
could have committed something newer only after winning a newer term's election, which needs
a majority that moved on; the probes of step 3 were sent after the read arrived and a majority
answered them in this term, so no such election had ended when they were answered. A deposed
leader (cut off, or out-voted while it was paused) never gathers that majority: its reads fail
after ``round_timeout`` and the client asks again elsewhere.

Every read waiting when a round starts shares that round: one probe per voter per round, no
matter how many reads. A round starts at the first tick after a read asks, so reads are never
held back behind an earlier round.

A follower serves a consistent read the same way: it asks the leader for a read index
(``read_index_request``), the leader confirms one as for its own reads and answers
(``read_index_response``), sending its commit index to the followers at once, and the follower
answers once it has applied up to that index. The reads that ask between two ticks share one
request, sent at the tick: it leaves after every one of them arrived, so the index confirmed for
it serves them all. The read costs the leader one round and one small message, not the read's
answer.

Threads: every method runs on the member's tick thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj.node import Node

from hacoord.replication.raft_safety import SafeSyncObj

logger = logging.getLogger(__name__)

PROBE = "read_index_probe"
ACK = "read_index_ack"
REQUEST = "read_index_request"
RESPONSE = "read_index_response"
#: The most reads one follower's request counts for (the count is what it says: bounded).
MAX_SHARED = 1_000_000

#: ``callback(index, error)``: the confirmed read index, or None and why not (``not_leader``:
#: this member does not lead, or stopped leading; ``not_current``: it has not committed an
#: entry of its term yet; ``unsupported``: a connected voter, or the leader a follower would
#: ask, runs a release without the read index (mid-upgrade); ``timeout``: no majority
#: confirmed the round in time).
ReadCallback = Callable[[int | None, str | None], None]


@dataclass
class _Round:
    term: int
    index: int
    started: float
    callbacks: list[ReadCallback]
    acked: set[str] = field(default_factory=set)


class ReadIndexSyncObj(SafeSyncObj):
    """``SafeSyncObj`` that answers read-index requests: see the module docstring.

    Counters (read from any thread): ``read_rounds`` started, ``read_rounds_confirmed``,
    ``read_rounds_failed`` (timed out, or leadership lost), ``reads_confirmed``, and
    ``reads_for_followers`` (reads confirmed for followers: a request counts the reads it
    stands for).
    """

    #: Seconds a round may wait for a majority before its reads fail (a leader that hears from
    #: no majority steps down after ``leaderFallbackTimeout`` anyway).
    round_timeout = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before SyncObj.__init__: attributes added later go into full-dump snapshots.
        self.read_rounds = 0
        self.read_rounds_confirmed = 0
        self.read_rounds_failed = 0
        self.reads_confirmed = 0
        self._ri_waiting: list[ReadCallback] = []
        self._ri_rounds: dict[int, _Round] = {}
        self._ri_last_round = 0
        self.reads_for_followers = 0
        #: A follower's reads to ask the leader about at the next tick.
        self._ri_to_ask: list[ReadCallback] = []
        #: A follower's requests to the leader: id -> (their reads, when asked, term).
        self._ri_asked: dict[int, tuple[list[ReadCallback], float, int]] = {}
        self._ri_last_asked = 0
        #: A round with a follower's reads was confirmed: send the commit index now.
        self._ri_push_commit = False
        super().__init__(*args, **kwargs)

    def read_index(self, callback: ReadCallback) -> None:
        """Ask for a read index (on a follower, the leader's); ``callback`` runs on the tick
        thread, perhaps at once."""
        if not self._isLeader():
            self._ri_ask_leader(callback)
        elif not self.leader_commit_is_current:
            callback(None, "not_current")
        elif not all(self._ri_understood_by(node) for node in self._SyncObj__otherNodes
                     if node in self._SyncObj__connectedNodes):
            callback(None, "unsupported")
        else:
            self._ri_waiting.append(callback)

    def _ri_understood_by(self, node: Node) -> bool:
        """False if ``node`` runs a release that ignores the read index's messages (it said so
        when it connected); a transport that does not say (the tests' network) is trusted."""
        supports = getattr(self._SyncObj__transport, "supports", None)
        return supports is None or bool(supports(node, "read_index"))

    def _ri_leader_refusal(self) -> str | None:
        """Why this follower cannot ask its leader for a read index now, or None."""
        leader = self._SyncObj__raftLeader
        if leader is None or leader not in self._SyncObj__connectedNodes:
            return "not_leader"
        if not self._ri_understood_by(leader):
            return "unsupported"
        return None

    def _ri_ask_leader(self, callback: ReadCallback) -> None:
        refusal = self._ri_leader_refusal()
        if refusal is not None:
            callback(None, refusal)
        else:
            self._ri_to_ask.append(callback)

    def _ri_send_asks(self) -> None:
        """One request to the leader for every read that asked since the last tick."""
        if not self._ri_to_ask:
            return
        reads, self._ri_to_ask = self._ri_to_ask, []
        refusal = "not_leader" if self._isLeader() else self._ri_leader_refusal()
        if refusal is not None:
            for callback in reads:
                callback(None, refusal)
            return
        self._ri_last_asked += 1
        term = self.raftCurrentTerm
        self._ri_asked[self._ri_last_asked] = (reads, _syncobj.monotonicTime(), term)
        self._SyncObj__transport.send(self._SyncObj__raftLeader, {
            "type": REQUEST, "term": term, "id": self._ri_last_asked,
            "reads": min(len(reads), MAX_SHARED)})

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N803 (the library's name)
        super()._onTick(timeToWait)
        self._ri_after_tick()

    def _ri_after_tick(self) -> None:
        now = _syncobj.monotonicTime()
        for ident in [i for i, (_, asked, _) in self._ri_asked.items()
                      if now - asked > self.round_timeout]:
            for callback in self._ri_asked.pop(ident)[0]:
                callback(None, "timeout")
        self._ri_send_asks()
        if not self._isLeader():
            self._ri_fail_all("not_leader")
            return
        for number in [n for n, r in self._ri_rounds.items()
                       if now - r.started > self.round_timeout]:
            self._ri_fail(self._ri_rounds.pop(number), "timeout")
        if self._ri_waiting:
            self._ri_start_round(now)
        if self._ri_push_commit:
            # Followers apply up to their reads' index only once they learn it is committed.
            self._ri_push_commit = False
            self._SyncObj__sendAppendEntries()

    def _ri_start_round(self, now: float) -> None:
        waiting, self._ri_waiting = self._ri_waiting, []
        if not self.leader_commit_is_current:  # the term changed under the reads
            for callback in waiting:
                callback(None, "not_current")
            return
        self._ri_last_round += 1
        number = self._ri_last_round
        term = self.raftCurrentTerm
        round_ = _Round(term, self._SyncObj__raftCommitIndex, now, waiting)
        self.read_rounds += 1
        voters = self._SyncObj__otherNodes
        if not voters:
            self._ri_confirm(round_)
            return
        self._ri_rounds[number] = round_
        transport = self._SyncObj__transport
        for node in voters:
            transport.send(node, {"type": PROBE, "term": term, "round": number})

    def _SyncObj__onMessageReceived(self, node: Node, message: Any) -> None:  # noqa: N802
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == PROBE:
            self._ri_on_probe(node, message)
        elif kind == ACK:
            self._ri_on_ack(node, message)
        elif kind == REQUEST:
            self._ri_on_request(node, message)
        elif kind == RESPONSE:
            self._ri_on_response(message)
        else:
            super()._SyncObj__onMessageReceived(node, message)

    def _ri_on_probe(self, node: Node, message: dict[str, Any]) -> None:
        """Answer a leader's probe of this member's own term (and only that)."""
        if message.get("term") == self.raftCurrentTerm and not self._isLeader():
            self._SyncObj__transport.send(node, {
                "type": ACK, "term": self.raftCurrentTerm, "round": message.get("round")})

    def _ri_on_request(self, node: Node, message: dict[str, Any]) -> None:
        """A follower's reads: confirm an index as for this member's own, then answer them."""
        ident, term = message.get("id"), self.raftCurrentTerm
        reads = message.get("reads", 1)  # how many reads share the request (1: an older member)
        reads = reads if isinstance(reads, int) and 1 <= reads <= MAX_SHARED else 1

        def answer(index: int | None, error: str | None) -> None:
            if index is not None:
                self.reads_for_followers += reads
                self.reads_confirmed += reads - 1  # the round counted the request once
                self._ri_push_commit = True
            self._SyncObj__transport.send(node, {"type": RESPONSE, "term": term, "id": ident,
                                                 "index": index, "error": error})

        if message.get("term") != term or not self._isLeader():
            answer(None, "not_leader")
        else:
            self.read_index(answer)

    def _ri_on_response(self, message: dict[str, Any]) -> None:
        asked = self._ri_asked.pop(message.get("id"), None)  # type: ignore[arg-type]
        if asked is None:
            return  # timed out already
        reads, _, term = asked
        index, error = message.get("index"), message.get("error")
        if message.get("term") != term or term != self.raftCurrentTerm:
            index, error = None, "not_leader"
        elif not isinstance(index, int) or error is not None:
            index = None
            error = error if error in ("not_current", "unsupported", "timeout") else "not_leader"
        for callback in reads:
            callback(index, error)

    def _ri_on_ack(self, node: Node, message: dict[str, Any]) -> None:
        number = message.get("round")
        if not self._isLeader() or message.get("term") != self.raftCurrentTerm \
                or not isinstance(number, int):
            return
        voters = {n.id for n in self._SyncObj__otherNodes}
        if node.id not in voters:
            return
        # An answer to a round answers every earlier one too: the member was in this term
        # when it read the later probe, which was sent after the earlier ones.
        for earlier in sorted(n for n in self._ri_rounds if n <= number):
            round_ = self._ri_rounds[earlier]
            if round_.term != self.raftCurrentTerm:
                continue
            round_.acked.add(node.id)
            if len(round_.acked & voters) + 1 > (len(voters) + 1) / 2:
                del self._ri_rounds[earlier]
                self._ri_confirm(round_)

    def _ri_confirm(self, round_: _Round) -> None:
        self.read_rounds_confirmed += 1
        self.reads_confirmed += len(round_.callbacks)
        for callback in round_.callbacks:
            callback(round_.index, None)

    def _ri_fail(self, round_: _Round, reason: str) -> None:
        self.read_rounds_failed += 1
        for callback in round_.callbacks:
            callback(None, reason)

    def _ri_fail_all(self, reason: str) -> None:
        rounds, self._ri_rounds = self._ri_rounds, {}
        waiting, self._ri_waiting = self._ri_waiting, []
        for round_ in rounds.values():
            self._ri_fail(round_, reason)
        for callback in waiting:
            callback(None, reason)
