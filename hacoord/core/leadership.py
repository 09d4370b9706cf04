"""Which partitions each node leads: an index derived from the partitions, never serialized.

A liveness change moves leaderships only on partitions whose leader is gone (a node judged down,
or no leader at all). Finding those by scanning every partition costs tens of milliseconds at
100,000 partitions, on every member, for every judgement; the index answers in time proportional
to what it returns. :class:`~hacoord.core.model.ClusterState` builds it on first use and keeps it
current through its leader-changing methods; it is rebuilt from the partitions whenever a state
is restored, so it never travels in a snapshot and cannot disagree with one.

Deleting a resource costs the same small step whatever its size: its partitions' keys stay in
the index, unseen (every answer leaves out keys of resources no longer indexed), and
:meth:`LeaderIndex.tidy` forgets them - and lets their partitions go - a bounded number at a time,
after each later log entry. Forgetting 100,000 keys at once held a member's loop for 36 ms, and
freeing the partitions for 11 more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hacoord.core.model import Resource


#: A partition's key is its resource's sequence number shifted left by this, plus its index (one
#: small int per partition: a tuple or a set per resource would cost several times the memory).
_SHIFT = 24
#: Partitions of deleted resources forgotten per :meth:`LeaderIndex.tidy` (about 2 ms' work).
TIDY_BUDGET = 5_000


class LeaderIndex:
    """Partitions by leader (None: partitions without a leader).

    Resources get sequence numbers in the order they are indexed, which is the order of
    ``ClusterState.resources`` (resources are only ever added at the end), so sorting keys
    sorts partitions the way a scan of the state meets them.
    """

    def __init__(self) -> None:
        self._by_leader: dict[str | None, set[int]] = {}
        self._seq: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._next_seq = 0
        #: Deleted resources' partitions whose keys are still in the index, with their base key.
        self._deleted: list[tuple[int, list[Any]]] = []

    @classmethod
    def build(cls, resources: Mapping[str, Resource]) -> LeaderIndex:
        """The index of every partition of ``resources``."""
        index = cls()
        for name, res in resources.items():
            index.add_resource(name, res, 0)
        return index

    def _base(self, resource: str) -> int:
        seq = self._seq.get(resource)
        if seq is None:
            seq = self._seq[resource] = self._next_seq
            self._names[seq] = resource
            self._next_seq += 1
        return seq << _SHIFT

    def add_resource(self, name: str, resource: Resource, start: int) -> None:
        """Index the partitions of ``resource`` from ``start`` on (a new resource or slice)."""
        base, by_leader = self._base(name), self._by_leader
        for i, part in enumerate(resource.partitions[start:], start):
            leader = part.leader
            keys = by_leader.get(leader)
            if keys is None:
                keys = by_leader[leader] = set()
            keys.add(base + i)

    def remove_resource(self, name: str, resource: Resource) -> None:
        """Forget every partition of ``resource`` (it is being deleted): at once for what is
        seen, over the next :meth:`tidy` calls for the memory."""
        seq = self._seq.pop(name)
        del self._names[seq]
        self._deleted.append((seq << _SHIFT, list(resource.partitions)))

    @property
    def untidy(self) -> int:
        """Keys of deleted resources still held."""
        return sum(len(parts) for _, parts in self._deleted)

    def tidy(self, budget: int = TIDY_BUDGET) -> None:
        """Drop up to ``budget`` keys of deleted resources (and the index's hold on their
        partitions), last partitions first."""
        deleted = self._deleted
        while budget > 0 and deleted:
            base, parts = deleted[-1]
            end = len(parts)
            start = max(0, end - budget)
            for i in range(start, end):
                self._discard(parts[i].leader, base + i)
            del parts[start:]
            budget -= end - start
            if not parts:
                deleted.pop()

    def _discard(self, leader: str | None, key: int) -> None:
        keys = self._by_leader.get(leader)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_leader[leader]

    def move(self, old: str | None, new: str | None, resource: str, index: int) -> None:
        """Partition ``resource``/``index`` changed leader from ``old`` to ``new``."""
        if old != new:
            key = self._base(resource) + index
            self._discard(old, key)
            self._by_leader.setdefault(new, set()).add(key)

    def led_by(self, leaders: Iterable[str | None]) -> list[tuple[str, int]]:
        """The partitions led by any of ``leaders``, in the order a scan of the state would meet
        them (resources in order, then by index), so every member produces the same events in
        the same order whether it built the index from the log or from a snapshot."""
        keys: set[int] = set()
        for leader in set(leaders):
            keys.update(self._by_leader.get(leader, ()))
        mask, names = (1 << _SHIFT) - 1, self._names
        return [(names[key >> _SHIFT], key & mask) for key in sorted(keys)
                if key >> _SHIFT in names]

    def as_dict(self) -> dict[str | None, list[tuple[str, int]]]:
        """A plain, comparable picture (for invariant checks and tests)."""
        picture = {leader: self.led_by([leader]) for leader in self._by_leader}
        return {leader: led for leader, led in picture.items() if led}
