"""Fencing on a data node: refuse requests stamped with a partition epoch older than one seen.

Each partition's epoch grows whenever its replicas or its leader change (see the routing table). A
data node that learns epochs (from the routing table, a watch, or requests it served) records them
with :meth:`EpochGuard.update`; a request carrying an older epoch comes from someone acting on an
outdated view (a deposed leader, a client with an old routing table) and is refused by
:meth:`EpochGuard.check`. Plain in-memory bookkeeping, safe to share between threads; it imports
nothing from the coordinator, so a data node can embed it with the client alone.
"""

from __future__ import annotations

import threading


class StalePartitionEpoch(Exception):
    """A request carried an older epoch than the one known for its partition. (The coordinator's
    409 ``stale_epoch``, :class:`hacoord.client.StaleEpoch`, is about a node's session epoch.)"""

    def __init__(self, resource: str, partition: int, epoch: int, known: int) -> None:
        super().__init__(f"{resource}/{partition}: epoch {epoch} is stale (known: {known})")
        self.resource = resource
        self.partition = partition
        self.epoch = epoch
        self.known = known


class EpochGuard:
    """The highest epoch known for each (resource, partition); it never goes back."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def update(self, resource: str, partition: int, epoch: int) -> int:
        """Record ``epoch`` for the partition if it is newer; returns the epoch now known."""
        key = (resource, partition)
        with self._lock:
            known = max(self._known.get(key, epoch), epoch)
            self._known[key] = known
            return known

    def check(self, resource: str, partition: int, epoch: int) -> None:
        """Raise :class:`StalePartitionEpoch` if ``epoch`` is older than the one known. An epoch
        equal to or newer than the known one passes (a newer one is news: record it with
        ``update``)."""
        with self._lock:
            known = self._known.get((resource, partition))
        if known is not None and epoch < known:
            raise StalePartitionEpoch(resource, partition, epoch, known)

    def known(self, resource: str, partition: int) -> int | None:
        """The highest epoch recorded for the partition, or None."""
        with self._lock:
            return self._known.get((resource, partition))

    def forget(self, resource: str) -> None:
        """Drop every epoch of ``resource`` (after it was deleted: a re-created resource of the
        same name starts again at epoch 1)."""
        with self._lock:
            for key in [k for k in self._known if k[0] == resource]:
                del self._known[key]
