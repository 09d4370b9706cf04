"""Raft over a journal synced in the background: nothing counts before it is on disk.

With the journal's ``fdatasync`` on a worker thread (:mod:`hacoord.replication.syncer`), an
entry can be in the log, sent and even acknowledged by others before this member's own copy is
durable. Raft's promise - an entry is committed once a majority holds it *durably* - then needs
two rules, which :class:`~hacoord.replication.engine.HacoordSyncObj` applies with the pieces here:

* **A follower acknowledges only what is on its disk.** An acknowledgement is built when the
  library would send it, then held in :class:`PendingAcks` until the journal's durable end covers
  the journal as it was at that moment; acknowledgements leave in the order they were made. A
  truncation or rewrite of the journal (a conflict with a new leader, a snapshot install) drops
  the held ones: they speak of entries the file no longer holds. Raft tolerates lost messages;
  the leader sends again.
* **The leader counts its own copy only once it is durable.** PySyncObj's commit rule counts the
  leader for every entry in its log. Before each tick, :func:`commit_cap` finds the highest index
  a majority holds durably - the followers' acknowledged indexes and the leader's own durable one
  - and :class:`DurableMatchIndex` (the library's ``matchIndex`` table) answers the commit rule's
  reads capped at that index, so the library commits nothing beyond it. Every other read of the
  table (status, leadership transfer, the acknowledgement handler) sees the true values.

A tick may wait a few milliseconds for a sync (``sync_wait``; 3 ms in a member): on a fast
disk the acknowledgement then leaves in the same tick, as when syncing in place, and only a slow
sync is left to finish in the background.

A one-member cluster has nobody to count: its driver syncs before every tick instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any


def commit_cap(own_durable: int, followers: Iterable[int]) -> int:
    """The highest index held durably by a majority of the members: the leader (up to
    ``own_durable``) and each follower (up to its acknowledged match index)."""
    held = sorted([own_durable, *followers], reverse=True)
    return held[len(held) // 2]


class DurableMatchIndex(dict[Any, int]):
    """PySyncObj's ``matchIndex`` table whose item reads, while :attr:`cap` is set, are capped at
    it (the library reads items only in its commit rule; ``get`` and iteration see the true
    values)."""

    cap: int | None = None

    def __getitem__(self, node: Any) -> int:
        value = dict.__getitem__(self, node)
        cap = self.cap
        return value if cap is None or value <= cap else cap


class PendingAcks:
    """Acknowledgements waiting for the journal to be durable up to where it ended when each
    was made, in order."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Any, dict[str, Any], int, int]] = deque()
        #: Acknowledgements dropped because the journal was truncated or rewritten under them.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, node: Any, message: dict[str, Any], end: int, generation: int) -> None:
        """Hold ``message`` for ``node`` until the journal is durable up to ``end`` (in journal
        ``generation``)."""
        self._queue.append((node, message, end, generation))

    def due(self, durable_end: int, generation: int) -> list[tuple[Any, dict[str, Any]]]:
        """The acknowledgements that may leave now, oldest first; those of an older journal
        generation are dropped."""
        ready = []
        queue = self._queue
        while queue:
            node, message, end, made_in = queue[0]
            if made_in != generation:
                queue.popleft()
                self.dropped += 1
            elif end <= durable_end:
                queue.popleft()
                ready.append((node, message))
            else:
                break
        return ready
