"""Which partitions each node leads: an index derived from the partitions, never serialized.

A liveness change moves leaderships only on partitions whose leader is gone (a node judged down,
or no leader at all). Finding those by scanning every partition costs tens of milliseconds at
100,000 partitions, on every member, for every judgement; the index answers in time proportional
to what it returns. :class:`~hacoord.core.model.ClusterState` builds it on first use and keeps it
current through its leader-changing methods; it is rebuilt from the partitions whenever a state
is restored, so it never travels in a snapshot and cannot disagree with one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hacoord.core.model import Resource


#: A partition's key is its resource's sequence number shifted left by this, plus its index (one
#: small int per partition: a tuple or a set per resource would cost several times the memory).
_SHIFT = 24


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
        """Forget every partition of ``resource`` (it is being deleted)."""
        base = self._base(name)
        for i, part in enumerate(resource.partitions):
            self._discard(part.leader, base + i)
        del self._names[self._seq.pop(name)]

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
        mask = (1 << _SHIFT) - 1
        return [(self._names[key >> _SHIFT], key & mask) for key in sorted(keys)]

    def as_dict(self) -> dict[str | None, list[tuple[str, int]]]:
        """A plain, comparable picture (for invariant checks and tests)."""
        return {leader: self.led_by([leader]) for leader in self._by_leader}
