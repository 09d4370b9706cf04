"""Raft safety fixes for PySyncObj 0.3.17: :class:`SafeSyncObj` and the version guard.

Why this module exists
======================
PySyncObj 0.3.17 can lose writes it acknowledged.  The leader pipelines several
``append_entries`` batches per tick and moves ``nextIndex`` past each batch as it sends.  A
success ack (``next_node_idx``) for an *older* batch then sets ``nextIndex`` back behind batches
already sent, so they are sent again, while the acks of the later batches raise ``matchIndex``.
When the follower receives such a resend it deletes every entry after the message's
``prevLogIdx`` whenever its log is longer - even entries that match - and re-adds only the
message's entries; it acknowledges ``last entry of the message + 1`` and advances its commit
index to ``min(leaderCommit, its own last index)``.  The leader still counts the follower as
holding the deleted entries, commits them and reports SUCCESS.  If the leader then dies and the
third member lagged, the survivors elect a leader without those entries and reuse their indexes
for other commands (reproduced step by step in ``tests/adapter/test_raft_safety.py``).

What :class:`SafeSyncObj` changes
=================================
Two message types are handled here; every other message goes to the library unchanged (the
start-up dump load and the tick are wrapped too, see the next sections), through
:class:`~hacoord.replication.prevote.PreVoteSyncObj`, which holds a pre-vote before each
election.

* Follower, ``append_entries`` (regular, chunked ``transmission`` and ``serialized`` snapshot
  forms) follows the receiver rules of the Raft paper (Figure 2):

  - reject (reset ack) when the entry at ``prevLogIdx`` is missing (hint: own log end + 1) or
    has another term (hint: first index of that term's run, above the commit index); a
    ``prevLogIdx`` before the first entry kept by log compaction is committed, so it matches
    (0.3.17 rejects it, and the leader falls back to sending a snapshot);
  - skip every entry the log already holds with the same index and term;
  - delete only from the first index whose term differs, and never at or below the commit
    index: such a conflict means safety was already broken elsewhere, so it is logged CRITICAL,
    counted in :attr:`SafeSyncObj.refused_truncations` and the message is refused;
  - acknowledge only what the message covered (``prevLogIdx + len(entries) + 1``), never the
    follower's own log end, and advance the commit index to
    ``min(leaderCommit, last index covered)``, never backwards;
  - a snapshot older than the commit index is not installed (it would move the commit index
    and the applied state backwards); the ack then covers the snapshot's last index, which the
    follower holds because it is committed;
  - a newer snapshot is installed following Raft's InstallSnapshot rule (Figure 13, step 6):
    if the follower holds an entry with the snapshot's last index and term, the entries after
    it are kept (0.3.17 cleared the whole journal, dropping entries the follower had
    acknowledged while the leader still counted them); otherwise the log is replaced by the
    snapshot's entries. The ack covers the snapshot's last index and no more;
  - a chunked entry whose ``finish`` chunk does not yet complete the pickle (0.3.17's sender
    labels chunks by the command's length, not the pickle's) waits for the next chunk instead
    of raising.

  The other effects of the library's branch are kept: election deadline (unless a leadership
  transfer is pending), leader tracking and ``onLeaderChanged``, term update, switch to
  follower, membership changes (through hooks: :mod:`hacoord.replication.membership`),
  leader-commit bookkeeping and persisting the commit index in the journal's meta.

* Acks (``next_node_idx``) carry the sender's current term.  On the leader an ack from another
  term is ignored; a success ack only raises ``matchIndex`` and never moves ``nextIndex``
  backwards.  A failure with reset moves ``nextIndex`` back to retry, never forward: with
  pipelining, 0.3.17 receives one rejection per batch, each with its own hint (say 19, then
  20), and setting ``nextIndex`` to each in turn can alternate forever between the same two
  values; nor below ``matchIndex + 1``.  Acks also carry the follower's last log index: one
  below ``matchIndex`` can only come from a follower that lost acknowledged entries (restart
  without its journal; acks on one link arrive in order), so ``matchIndex`` is lowered too.
  Every member of a cluster must run ``SafeSyncObj``: acks from an unpatched member carry no
  term and are ignored.  Any ack whose ``last_log_idx`` is below ``matchIndex`` lowers
  ``matchIndex`` to it: the leader never counts a follower for more than it says it holds.

Snapshots
=========
Where a snapshot is staged, read and made the member's dump is the business of a subclass
(:class:`~hacoord.replication.engine.HacoordSyncObj` with its
:class:`~hacoord.replication.snapshot_store.SnapshotStore`): it implements
:meth:`SafeSyncObj._safe_snapshot_chunk`, :meth:`SafeSyncObj._safe_begin_decode`,
:meth:`SafeSyncObj._safe_snapshot_staged`, :meth:`SafeSyncObj._safe_discard_staged` and
:meth:`SafeSyncObj._safe_install_staged`. ``SafeSyncObj`` alone decides *whether* to install
and what to keep, and refuses snapshots.

The decode may run elsewhere and end ticks later. Meanwhile the member leaves its log alone:
it takes no entries and no new snapshot chunks and sends no answer (a rejection would send the
leader back to a new snapshot), though it still follows the leader's term and commit index and
counts the leader as heard. The first tick after the decode ends installs the snapshot and
acknowledges it to its sender; the leader's next message, refused if it was sent past what the
member now holds, moves the leader's next index back to where the member can go on. A member
that stood for election meanwhile drops the snapshot: the next leader sends what it needs.

Rejoin
======
A member whose files were moved aside (``hacoord member rejoin``) starts with an empty log.  Its
vote could then elect a leader that lacks entries this member had acknowledged, so while its
journal says ``rejoining`` it neither votes nor stands for election; once it has applied up to
a leader's commit index it clears the mark (durably) and takes part again. Its vote in that term
may have been lost with its data, so it then records one for the leader it caught up with: no
other candidate of that term can have it twice.

Restart between full dump and journal compaction
================================================
The library writes the full dump first and compacts the journal on a later tick; a restart in
between cleared the whole journal, losing entries after the dump that the member may already
have acknowledged.  ``HacoordSyncObj`` loads the dump by the same rule as an install: entries
after a matching last entry are kept, and the journal is compacted to the dump.

Tick-loop health
================
0.3.17 can leave a member with an empty log, after which every tick raises ``IndexError``
forever while the process looks alive.  The fixes above remove the truncation that led there in
our tests; :class:`SafeSyncObj` also counts failed ticks (:attr:`SafeSyncObj.tick_failures`,
:attr:`SafeSyncObj.consecutive_tick_failures`, :attr:`SafeSyncObj.last_tick_error`) and exposes
:attr:`SafeSyncObj.log_is_empty`, so the adapter can report such a member as not ready.

Threads: every method here runs on the member's tick thread (or the caller of ``doTick``).

The patch reaches into SyncObj's name-mangled private members, so it is only valid for the
exact version it was written against: :func:`check_pysyncobj_version` refuses any other.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import pysyncobj.pickle as pysyncobj_pickle
import pysyncobj.syncobj as _syncobj
from pysyncobj.node import Node, TCPNode
from pysyncobj.transport import TCPTransport
from pysyncobj.version import VERSION as _LIBRARY_VERSION

from hacoord.replication.prevote import PRE_VOTE, PreVoteSyncObj
from hacoord.replication.storage import NewerRelease

logger = logging.getLogger(__name__)

SUPPORTED_PYSYNCOBJ_VERSION = "0.3.17"

# Private members of SyncObj the patch relies on; checked so that a change fails at start.
_REQUIRED_PRIVATE_METHODS = (
    "_SyncObj__onMessageReceived",
    "_SyncObj__getEntries",
    "_SyncObj__deleteEntriesFrom",
    "_SyncObj__setCurrentTerm",
    "_SyncObj__setState",
    "_SyncObj__onLeaderChanged",
    "_SyncObj__generateRaftTimeout",
    "_SyncObj__loadDumpFile",
    "_SyncObj__parseChangeClusterRequest",
    "_SyncObj__doChangeCluster",
    "_SyncObj__getCurrentLogIndex",
    "_SyncObj__getCurrentLogTerm",
    "_SyncObj__connectedToAnyone",
    "_SyncObj__tryLogCompaction",
)


def check_pysyncobj_version() -> None:
    """Raise ``RuntimeError`` unless the installed pysyncobj is exactly the supported version.

    Both the distribution metadata and ``pysyncobj.version.VERSION`` are checked (either may be
    missing in odd installs, not both), and so are the private members the patch overrides.
    """
    try:
        dist_version: str | None = importlib.metadata.version("pysyncobj")
    except importlib.metadata.PackageNotFoundError:
        dist_version = None
    found = {v for v in (dist_version, _LIBRARY_VERSION) if v is not None}
    if found != {SUPPORTED_PYSYNCOBJ_VERSION}:
        raise RuntimeError(
            f"hacoord's Raft safety patch (hacoord.replication.raft_safety) supports pysyncobj "
            f"=={SUPPORTED_PYSYNCOBJ_VERSION} only, found distribution {dist_version!r} / "
            f"module {_LIBRARY_VERSION!r}. Re-check the patch against the new version's "
            f"syncobj.py before changing the pin.")
    missing = [name for name in _REQUIRED_PRIVATE_METHODS if not hasattr(_syncobj.SyncObj, name)]
    if missing:
        raise RuntimeError(f"pysyncobj.SyncObj lacks private members the patch needs: {missing}")


class SafeSyncObj(PreVoteSyncObj):
    """``pysyncobj.SyncObj`` with Raft's follower append rules and term-checked, monotonic acks.

    Same constructor as ``SyncObj``; raises ``RuntimeError`` if pysyncobj is not
    :data:`SUPPORTED_PYSYNCOBJ_VERSION`.  See the module docstring for what changes and why.

    Public attributes (read from any thread; written only by the tick thread):

    * ``tick_failures`` - ticks that raised since start;
    * ``consecutive_tick_failures`` - ticks that raised since the last good one (non-zero means
      the tick loop is failing: report the member as not ready);
    * ``last_tick_error`` - ``"ExcType: message"`` of the last failed tick, or ``None``;
    * ``refused_truncations`` - conflicting entries at or below the commit index refused;
    * ``removed`` - this member is not in its own latest membership: it stands for no
      election (set by :class:`~hacoord.replication.membership.MembershipSyncObj`).
    """

    removed = False

    def __init__(self, selfNode: Node | str | None, otherNodes: Any,
                 conf: _syncobj.SyncObjConf | None = None, consumers: Any = None,
                 nodeClass: type[Node] = TCPNode, transport: Any = None,
                 transportClass: Any = TCPTransport) -> None:
        check_pysyncobj_version()
        # Set before SyncObj.__init__: the base records the attribute names present at init and
        # puts every attribute added later into full-dump snapshots; the tick thread may also
        # start inside SyncObj.__init__.
        self.tick_failures = 0
        self.consecutive_tick_failures = 0
        self.last_tick_error: str | None = None
        self.refused_truncations = 0
        self._safe_empty_log_reported = False
        #: Set when the member is shutting down: it no longer stands for election.
        self.standing_down = False
        #: Received snapshots: installed keeping the log after them, installed replacing the
        #: log, and ignored as older than the commit index.
        self.snapshots_kept_tail = 0
        self.snapshots_replaced_log = 0
        self.snapshots_stale = 0
        #: Received snapshots dropped after their decode: the member was no longer a follower.
        self.snapshots_dropped = 0
        #: The member whose snapshot is being decoded (None: no decode under way).
        self._safe_decoding_from: Node | None = None
        super().__init__(selfNode, otherNodes, conf=conf, consumers=consumers,
                         nodeClass=nodeClass, transport=transport,
                         transportClass=transportClass)

    # -- health -----------------------------------------------------------------------------
    @property
    def leader_commit_index(self) -> int | None:
        """The commit index the leader last told this member (its own, on the leader); None
        until a leader was heard from."""
        return self._SyncObj__leaderCommitIndex

    @property
    def leader_commit_is_current(self) -> bool:
        """True once the entry at the leader's commit index is of the current term: the leader
        has committed an entry of its own term, so its commit index covers every entry
        committed before it led. Until then it may be far behind (after every member
        restarted, the commit index comes back from the members' metadata, which lags the
        journal), and a state applied up to it may be older than one served before."""
        index = self._SyncObj__leaderCommitIndex
        raft_log = self._SyncObj__raftLog
        if index is None or len(raft_log) == 0 or not raft_log[0][1] <= index <= raft_log[-1][1]:
            return False
        return bool(self._SyncObj__getEntries(index, 1)[0][2] == self._SyncObj__raftCurrentTerm)

    @property
    def log_is_empty(self) -> bool:
        """True when the Raft log holds no entry at all (0.3.17 then fails every tick)."""
        return len(self._SyncObj__raftLog) == 0

    def _onTick(self, timeToWait: float = 0.0) -> None:
        """The library's tick, counting failures (re-raised: the tick thread logs them)."""
        try:
            self._safe_check_rejoin()
            self._safe_advance_commit(self._safe_finish_install())
            super()._onTick(timeToWait)
        except Exception as exc:
            self.tick_failures += 1
            self.consecutive_tick_failures += 1
            self.last_tick_error = f"{type(exc).__name__}: {exc}"
            if self.log_is_empty and not self._safe_empty_log_reported:
                self._safe_empty_log_reported = True
                logger.critical("Raft log of %s is empty: every tick fails until the member is "
                                "rebuilt from a snapshot", self.selfNode)
            raise
        self.consecutive_tick_failures = 0

    # -- message dispatch -------------------------------------------------------------------
    def _SyncObj__onMessageReceived(self, node: Node, message: Any) -> None:
        """Overrides SyncObj's private handler (bound by name at init): see module docstring."""
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries":
            self._safe_on_append_entries(node, message)
        elif kind == "next_node_idx":
            self._safe_on_next_node_idx(node, message)
        elif kind in ("request_vote", PRE_VOTE) and self._safe_rejoining():
            return  # no vote until caught up with a leader (see "Rejoin")
        elif kind == "response_vote" and node not in self._SyncObj__otherNodes:
            return  # a vote counts only from a member of this member's membership
        else:
            super()._SyncObj__onMessageReceived(node, message)

    # -- rejoin -----------------------------------------------------------------------------
    def _safe_rejoining(self) -> bool:
        return bool(getattr(self._SyncObj__raftLog, "rejoining", False))

    def _safe_check_rejoin(self) -> None:
        """While rejoining (or standing down): never stand for election; once a rejoining
        member has caught up with a leader, it takes part again."""
        if (self.standing_down or self.removed) and not self._isLeader():
            self._SyncObj__raftElectionDeadline = (
                _syncobj.monotonicTime() + self._SyncObj__generateRaftTimeout())
            return
        if self._safe_rejoining() and not self._safe_finish_rejoin():
            self._SyncObj__raftElectionDeadline = (
                _syncobj.monotonicTime() + self._SyncObj__generateRaftTimeout())

    def _safe_caught_up(self) -> bool:
        """This member follows a leader and has applied up to that leader's commit index."""
        leader_commit = self._SyncObj__leaderCommitIndex
        return (self._SyncObj__raftLeader is not None and leader_commit is not None
                and self._SyncObj__raftLastApplied >= leader_commit)

    def _safe_finish_rejoin(self) -> bool:
        """If this rejoining member has caught up with a leader, let it take part again and
        return True. Asked at the start of a tick and again after its apply (before the poll
        raises the leader's commit index again: under steady writes the start of a tick always
        found the member one poll behind)."""
        if not self._safe_rejoining() or not self._safe_caught_up():
            return False
        vote = None
        if self._SyncObj__votedForNodeId is None:
            # Its vote in this term may have gone with its data: count it as given to the
            # leader it caught up with, so that no other candidate gets it in this term.
            vote = self._SyncObj__votedForNodeId = self._SyncObj__raftLeader.id
        self._SyncObj__raftLog.finish_rejoin(vote)  # one write: the vote, the mark cleared
        logger.info("rejoined: caught up with the leader at index %d; voting again",
                    self._SyncObj__leaderCommitIndex)
        return True

    # -- leader side ------------------------------------------------------------------------
    def _safe_on_next_node_idx(self, node: Node, message: dict[str, Any]) -> None:
        if not self._isLeader() or message.get("term") != self.raftCurrentTerm:
            return
        match_index = self._SyncObj__raftMatchIndex
        next_index = self._SyncObj__raftNextIndex
        if node not in match_index or node not in next_index:
            return
        acked = message["next_node_idx"]
        last = message.get("last_log_idx", acked - 1)
        # ``get``: the true value (a subclass may cap what item reads return, see
        # hacoord.replication.durability).
        matched = match_index.get(node, 0)
        if message["success"]:
            # An ack covers what one message carried; an older batch's ack must not pull
            # nextIndex back behind batches already sent (that resend is what lost data).
            match_index[node] = min(max(matched, acked - 1), last)
            next_index[node] = max(next_index[node], acked)
        elif message["reset"]:
            if last < matched:
                # Acks of one link arrive in order, and a follower never deletes entries it
                # acknowledged in this term: it lost them (restarted without its log).
                logger.warning("%s no longer holds entries up to %d it acknowledged; resending "
                               "from %d", node, matched, acked)
                match_index[node] = min(last, acked - 1)
                next_index[node] = acked
            else:
                # Pipelined rejections answer messages with growing prevLogIdx, and each hint
                # is at most its message's prevLogIdx: keep the lowest, or the leader would
                # alternate between hints forever.  Entries up to matchIndex are known to
                # match, so a hint below it (a conflicting term's run) restarts after it.
                next_index[node] = max(min(next_index[node], acked), matched + 1)
        self._SyncObj__lastResponseTime[node] = _syncobj.monotonicTime()

    # -- follower side ----------------------------------------------------------------------
    def _safe_on_append_entries(self, node: Node, message: dict[str, Any]) -> None:
        term = message["term"]
        if term < self.raftCurrentTerm:
            return  # a deposed leader's message: ignored, as by the library
        if term > self.raftCurrentTerm:
            self._SyncObj__transferInProgress = False
        self._pre_vote_heard_from_leader()
        self._safe_heard_from_leader()
        if self._SyncObj__raftLeader != node:
            self._SyncObj__onLeaderChanged()
        self._SyncObj__raftLeader = node
        if term > self.raftCurrentTerm:
            self._SyncObj__setCurrentTerm(term, None)
        self._SyncObj__setState(_syncobj._RAFT_STATE.FOLLOWER)
        leader_commit = message["commit_index"]
        self._SyncObj__leaderCommitIndex = leader_commit
        if self._safe_decoding_from is not None:
            # A received snapshot is being decoded: the log waits for it. No answer either;
            # the install acknowledges, and the leader's next message finds where to go on.
            return

        covered: int | None = None
        if "prevLogIdx" in message:
            entries = message.get("entries", [])
            if message.get("transmission") is not None:
                entries = self._safe_receive_chunk(node, message)
                if entries is None:
                    return
            covered = self._safe_append(node, message["prevLogIdx"], message["prevLogTerm"],
                                        entries)
        elif message.get("serialized") is not None:
            covered = self._safe_install_snapshot(node, message["serialized"])
            # Decoding and installing a large snapshot can take longer than an election
            # timeout; the leader was alive when it sent it, so that time does not count.
            self._safe_heard_from_leader()
        self._safe_advance_commit(covered)
        self._SyncObj__raftLog.setRaftCommitIndex(self._SyncObj__raftCommitIndex)

    def _safe_advance_commit(self, covered: int | None) -> None:
        """Raft receiver step 5: the commit index follows the leader's, as far as the log
        matches the leader's (``covered``: the last index an accepted message covered)."""
        leader_commit = self._SyncObj__leaderCommitIndex
        if covered is not None and leader_commit is not None:
            target = min(leader_commit, covered)
            if target > self._SyncObj__raftCommitIndex:
                self._SyncObj__raftCommitIndex = target

    def _safe_heard_from_leader(self) -> None:
        """Postpone this member's election: the leader was just heard from (not during a
        leadership transfer, which the outgoing leader must not delay)."""
        if not self._SyncObj__transferInProgress:
            self._SyncObj__raftElectionDeadline = (
                _syncobj.monotonicTime() + self._SyncObj__generateRaftTimeout())

    def _safe_receive_chunk(self, node: Node, message: dict[str, Any]) -> list[Any] | None:
        """Collect one chunk of a large entry; return ``[entry]`` once complete, else None."""
        stage, data = message["transmission"], message["data"]
        if stage == "start":
            self._SyncObj__recvTransmission = data
        elif stage in ("process", "finish") and isinstance(
                self._SyncObj__recvTransmission, bytes):
            self._SyncObj__recvTransmission += data
        elif stage not in ("process", "finish"):
            raise ValueError(f"unknown append_entries transmission stage {stage!r}")
        else:
            # A chunk without its start (lost, or a surplus 'finish'): nothing to add it to.
            self._safe_send_ack(node, success=False, reset=False)
            return None
        if stage == "finish":
            try:
                entry = pysyncobj_pickle.loads(self._SyncObj__recvTransmission)
            except Exception:
                pass  # labelled 'finish' before the last chunk: wait for the rest
            else:
                self._SyncObj__recvTransmission = ""
                return [entry]
        self._safe_send_ack(node, success=False, reset=False)
        return None

    def _safe_append(self, node: Node, prev_idx: int | None, prev_term: int | None,
                     entries: list[Any]) -> int | None:
        """Raft receiver steps 2-4; return the last index the message covered, None if refused."""
        if prev_idx is None:
            self._safe_send_ack(node, success=False, reset=True)
            return None
        commit_index = self._SyncObj__raftCommitIndex
        # An entry before the first one kept after log compaction is committed, hence matches.
        if prev_idx >= self._SyncObj__raftLog[0][1]:
            prev = self._SyncObj__getEntries(prev_idx, 1)
            if not prev:  # beyond our log end: retry from our end (hint <= prevLogIdx)
                self._safe_send_ack(node, success=False, reset=True)
                return None
            if prev[0][2] != prev_term:
                hint = self._safe_conflict_start(prev_idx, prev[0][2])
                self._safe_send_ack(node, next_idx=hint, success=False, reset=True)
                return None

        append_from = len(entries)
        for pos, entry in enumerate(entries):
            idx, term = entry[1], entry[2]
            if idx > self._safe_last_index():
                append_from = pos
                break
            existing = self._SyncObj__getEntries(idx, 1)
            if not existing or existing[0][2] == term:
                continue  # already held (or compacted, hence committed)
            if idx <= commit_index:
                self.refused_truncations += 1
                logger.critical(
                    "refusing append_entries from %s: entry %d (term %d) conflicts with "
                    "committed entry of term %d (commit index %d); a committed entry can only "
                    "differ if Raft safety was already violated", node, idx, term,
                    existing[0][2], commit_index)
                self._safe_send_ack(node, success=False, reset=False)
                return None
            self._safe_truncate_from(idx)
            append_from = pos
            break

        for entry in entries[append_from:]:
            self._SyncObj__raftLog.add(*entry)
        self._safe_entries_added(entries[append_from:])

        covered = prev_idx + len(entries)
        self._safe_send_ack(node, next_idx=covered + 1, success=True)
        return covered

    def _safe_conflict_start(self, idx: int, term: int) -> int:
        """First index of the run of ``term`` entries ending at ``idx`` (not below the commit).

        The leader retries from there instead of one index per round trip (Raft section 5.3).
        """
        floor = max(self._SyncObj__raftCommitIndex, self._SyncObj__raftLog[0][1]) + 1
        while idx > floor:
            before = self._SyncObj__getEntries(idx - 1, 1)
            if not before or before[0][2] != term:
                break
            idx -= 1
        return idx

    def _safe_truncate_from(self, idx: int) -> None:
        """Delete uncommitted entries from ``idx`` on, undoing membership changes they made."""
        self._SyncObj__deleteEntriesFrom(idx)
        self._safe_entries_removed(idx)

    def _safe_entries_added(self, entries: Any) -> None:
        """Hook: a follower appended ``entries`` (index order) from the leader."""

    def _safe_entries_removed(self, idx: int) -> None:
        """Hook: a follower deleted its entries from ``idx`` on (a conflict with the leader)."""

    def _safe_install_snapshot(self, node: Node, serialized: Any) -> int | None:
        """Take one snapshot chunk; once complete, have it decoded. Return what
        :meth:`_safe_finish_install` returns if the decode ended at once, else None."""
        if self._safe_decoding_from is not None:
            return None  # the last one is still being decoded: a new transmission must wait
        if not self._safe_snapshot_chunk(serialized):
            return None  # more chunks to come (the library does not ack chunks either)
        self._safe_decoding_from = node
        self._safe_begin_decode()
        return self._safe_finish_install()

    def _safe_finish_install(self) -> int | None:
        """Once the received snapshot is decoded, install it (Figure 13) unless it is older
        than the commit index, and acknowledge it to its sender. Return the last index the
        ack covered; None while the decode runs, or if nothing was acknowledged."""
        node = self._safe_decoding_from
        if node is None:
            return None
        try:
            staged = self._safe_snapshot_staged()
        except NewerRelease:
            self._safe_decoding_from = None
            self._safe_discard_staged()
            raise  # fatal: the member stops rather than be sent it again and again
        except Exception as exc:
            logger.error("received snapshot from %s cannot be read: %s", node, exc)
            self._safe_decoding_from = None
            self._safe_discard_staged()
            self._safe_send_ack(node, success=False, reset=True)
            return None
        if staged is None:
            return None
        self._safe_decoding_from = None
        if self._SyncObj__raftState != _syncobj._RAFT_STATE.FOLLOWER:
            # It stood for election meanwhile (the leader fell silent): whoever leads now
            # sends what this member needs.
            logger.info("dropping the snapshot from %s: no longer a follower", node)
            self.snapshots_dropped += 1
            self._safe_discard_staged()
            return None
        last_entry = tuple(staged)
        snapshot_idx, snapshot_term = last_entry[1], last_entry[2]
        if snapshot_idx <= self._SyncObj__raftCommitIndex:
            # Installing would move commit index and applied state backwards; the follower
            # already holds everything up to its commit index.  Its own dump is untouched.
            logger.info("ignoring snapshot from %s ending at %d: commit index is %d",
                        node, snapshot_idx, self._SyncObj__raftCommitIndex)
            self.snapshots_stale += 1
            self._safe_discard_staged()
            self._safe_send_ack(node, next_idx=snapshot_idx + 1, success=True)
            return snapshot_idx
        held = (self._SyncObj__getEntries(snapshot_idx, 1)
                if snapshot_idx >= self._SyncObj__raftLog[0][1] else [])
        keep_tail = bool(held) and held[0][2] == snapshot_term
        self._safe_install_staged(keep_tail)
        if keep_tail:
            self.snapshots_kept_tail += 1
        else:
            self.snapshots_replaced_log += 1
        self._safe_send_ack(node, next_idx=snapshot_idx + 1, success=True)
        return snapshot_idx

    # -- snapshot storage: provided by a subclass (HacoordSyncObj) ---------------------------
    def _safe_snapshot_chunk(self, serialized: Any) -> bool:
        """Stage one chunk of a received snapshot; True once a whole snapshot is staged."""
        raise NotImplementedError("SafeSyncObj needs a snapshot store: use HacoordSyncObj")

    def _safe_begin_decode(self) -> None:
        """Start decoding and checking the snapshot just staged (perhaps elsewhere)."""
        raise NotImplementedError("SafeSyncObj needs a snapshot store: use HacoordSyncObj")

    def _safe_snapshot_staged(self) -> tuple[Any, int, int] | None:
        """The staged snapshot's last entry ``(command, index, term)`` once it is decoded and
        checked (None until then); raises what the decode raised."""
        raise NotImplementedError

    def _safe_discard_staged(self) -> None:
        """Forget the staged snapshot (it is not installed)."""
        raise NotImplementedError

    def _safe_install_staged(self, keep_tail: bool) -> None:
        """Make the staged snapshot the member's state and dump; keep the log entries after
        its last entry (``keep_tail``) or replace the log with its two entries; set the
        applied index to its last index."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------
    def _safe_last_index(self) -> int:
        return self._SyncObj__raftLog[-1][1]

    def _safe_send_ack(self, node: Node, success: bool, reset: bool = False,
                       next_idx: int | None = None) -> None:
        """Send ``next_node_idx``; without ``next_idx`` it is the follower's own log end + 1."""
        self._SyncObj__transport.send(node, self._safe_ack_message(success, reset, next_idx))

    def _safe_ack_message(self, success: bool, reset: bool = False,
                          next_idx: int | None = None) -> dict[str, Any]:
        """The ``next_node_idx`` message :meth:`_safe_send_ack` sends, as of now."""
        if next_idx is None:
            next_idx = self._safe_last_index() + 1
        return {
            "type": "next_node_idx",
            "next_node_idx": next_idx,
            "reset": reset,
            "success": success,
            "term": self.raftCurrentTerm,
            "last_log_idx": self._safe_last_index(),
        }
