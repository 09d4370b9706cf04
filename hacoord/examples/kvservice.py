"""The key-value example's node logic: what it holds, and how it serves, replicates and copies.

:class:`KVService` is the :class:`~hacoord.agent.AssignmentHandler` of a kv node: the agent tells it
which partitions it holds, under which epoch and in which role, and it serves accordingly:

- reads on the leader and the followers; writes on the leader only, which stamps each with a
  version, applies it, and sends it synchronously to every other replica and to the replica being
  added, before acknowledging it (a write that fails is not acknowledged, but may be visible);
- every request carries the partition epoch the caller acts under: older than the epoch the node
  knows is refused (:class:`~hacoord.fencing.EpochGuard`), newer means the node has not caught up
  with the coordinator yet (refused too, as retryable);
- a partition it catches up on (a move to this node) is copied from the leader's dump; writes made
  meanwhile reach it through replication, and versions make the two merge in any order.

Each partition's lock serialises its writes, its dump and its assignment changes, so once the
leader knows of a replica being added every later write goes to it, and the dump it then serves
holds every earlier one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hacoord.agent import Assignment, AssignmentHandler, Role
from hacoord.examples.kvhttp import KVCallError, KVNodeCaller
from hacoord.examples.kvstore import Entry, PartitionData
from hacoord.fencing import EpochGuard, StalePartitionEpoch

log = logging.getLogger(__name__)

SERVES_READS = frozenset({Role.LEADER, Role.FOLLOWER})
TAKES_REPLICATION = frozenset({Role.FOLLOWER, Role.CATCHING_UP})


class KVError(Exception):
    """A request the node refuses: the HTTP ``status``, a ``code``, a message and extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


@dataclass
class _Held:
    """A partition the node holds, with its data; ``lock`` guards every field."""

    assignment: Assignment
    data: PartitionData = field(default_factory=PartitionData)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sequence: int = 0
    released: bool = False


class KVService(AssignmentHandler):
    """The partitions node ``node_id`` holds and the operations on them. ``peers`` calls the other
    nodes; ``address_of`` gives a node's ``host:port`` (the agent's :meth:`~NodeAgent.address_of`,
    bound with :meth:`bind`). ``copy_delay`` seconds are spent after each copy, as a large
    partition would take (writes made meanwhile reach the copy by replication). Thread-safe."""

    def __init__(self, node_id: str, peers: KVNodeCaller, copy_delay: float = 0.0) -> None:
        self.node_id = node_id
        self.copy_delay = copy_delay
        self.guard = EpochGuard()
        self._peers = peers
        self._held: dict[tuple[str, int], _Held] = {}
        self._lock = threading.Lock()
        self._address_of: Callable[[str], str | None] = lambda node: None

    def bind(self, address_of: Callable[[str], str | None]) -> None:
        """Where to look up other nodes' addresses (usually ``agent.address_of``)."""
        self._address_of = address_of

    # --- what the agent tells ------------------------------------------------------------------

    def on_assign(self, assignment: Assignment) -> None:
        self.guard.update(assignment.resource, assignment.partition, assignment.epoch)
        with self._lock:
            held = self._held.get(assignment.key)
            if held is None:
                self._held[assignment.key] = _Held(assignment)
                return
        with held.lock:  # waits for a write in progress under the previous assignment
            held.assignment = assignment

    def on_release(self, resource: str, partition: int) -> None:
        with self._lock:
            held = self._held.pop((resource, partition), None)
        if held is not None:
            with held.lock:
                held.released = True

    def catch_up(self, assignment: Assignment) -> None:
        leader = assignment.route.leader
        address = self._address_of(leader) if leader is not None else None
        if address is None:
            raise RuntimeError(f"{assignment.resource}/{assignment.partition} has no leader to copy from")
        entries = self._peers.dump(address, assignment.resource, assignment.partition, assignment.epoch)
        with self._lock:
            held = self._held.get(assignment.key)
        if held is None:
            return
        with held.lock:
            if not held.released:
                added = held.data.merge_all(entries)
                log.info("%s/%s copied from %s: %d entries, %d newer than held", assignment.resource,
                         assignment.partition, leader, len(entries), added)
        time.sleep(self.copy_delay)

    def on_session_lost(self, reason: str) -> None:
        log.error("node %s serves nothing any more: %s", self.node_id, reason)

    # --- requests ------------------------------------------------------------------------------

    def get(self, resource: str, partition: int, key: str, epoch: int) -> Entry:
        """The entry of ``key``, served by the leader or a follower."""
        with self._serving(resource, partition, epoch, SERVES_READS, "not_serving") as held:
            entry = held.data.get(key)
        if entry is None:
            raise KVError(404, "no_such_key", f"no key {key!r} in {resource}/{partition}")
        return entry

    def put(self, resource: str, partition: int, key: str, value: str, epoch: int) -> Entry:
        """Write ``key`` on the leader and every other replica (and the one being added)."""
        with self._serving(resource, partition, epoch, {Role.LEADER}, "not_leader") as held:
            held.sequence += 1
            entry = Entry(value, (epoch, held.sequence))
            held.data.merge(key, entry)
            route = held.assignment.route
            for node in [n for n in (*route.replicas, *route.adding) if n != self.node_id]:
                self._replicate_to(node, route.adding, resource, partition, epoch, key, entry)
        return entry

    def replicate(self, resource: str, partition: int, epoch: int, key: str, entry: Entry) -> None:
        """Take a write from the partition's leader."""
        with self._serving(resource, partition, epoch, TAKES_REPLICATION, "not_follower") as held:
            held.data.merge(key, entry)

    def dump(self, resource: str, partition: int, epoch: int) -> dict[str, Entry]:
        """Every entry, for a node catching up (served by the leader, at the caller's epoch)."""
        with self._serving(resource, partition, epoch, {Role.LEADER}, "not_leader") as held:
            return held.data.dump()

    # --- introspection ------------------------------------------------------------------------

    def partitions(self) -> list[dict[str, Any]]:
        """What the node holds: each partition's assignment and its number of keys."""
        with self._lock:
            held = sorted(self._held.items())
        out = []
        for _, part in held:
            with part.lock:
                out.append({**part.assignment.to_dict(), "keys": len(part.data)})
        return out

    def metrics(self) -> dict[str, float | None]:
        """Reported to the coordinator: partitions held and keys stored."""
        parts = self.partitions()
        return {"kv_partitions": float(len(parts)), "kv_keys": float(sum(p["keys"] for p in parts))}

    # --- plumbing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _serving(self, resource: str, partition: int, epoch: int, roles: frozenset[Role] | set[Role],
                 refusal: str) -> Iterator[_Held]:
        """Hold the partition's lock while a request stamped with ``epoch`` is served, if this node
        holds the partition under exactly that epoch in one of ``roles``."""
        try:
            self.guard.check(resource, partition, epoch)
        except StalePartitionEpoch as exc:
            raise KVError(409, "stale_epoch", str(exc), known=exc.known) from None
        with self._lock:
            held = self._held.get((resource, partition))
        if held is None:
            raise KVError(421, "not_held", f"{self.node_id} does not hold {resource}/{partition}")
        with held.lock:
            assignment = held.assignment
            if held.released:
                raise KVError(421, "not_held", f"{self.node_id} does not hold {resource}/{partition}")
            if epoch < assignment.epoch:
                raise KVError(409, "stale_epoch", f"{resource}/{partition}: epoch {epoch} is stale "
                              f"(known: {assignment.epoch})", known=assignment.epoch)
            if epoch > assignment.epoch:
                raise KVError(503, "epoch_ahead", f"{self.node_id} has not seen epoch {epoch} of "
                              f"{resource}/{partition} yet (at {assignment.epoch})", known=assignment.epoch)
            if assignment.role not in roles:
                raise KVError(421, refusal, f"{self.node_id} is {assignment.role.value} of "
                              f"{resource}/{partition}", leader=assignment.route.leader)
            yield held

    def _replicate_to(self, node: str, adding: tuple[str, ...], resource: str, partition: int,
                      epoch: int, key: str, entry: Entry) -> None:
        address = self._address_of(node)
        try:
            if address is None:
                raise KVCallError(0, "unreachable", f"no known address for {node}")
            self._peers.replicate(address, resource, partition, epoch, key, entry)
        except KVCallError as exc:
            if node in adding and exc.code == "not_held":
                # Not told of the move yet: the copy it makes once told holds this write.
                return
            raise KVError(503, "replication_failed", f"{node} did not take the write: {exc}") from None
