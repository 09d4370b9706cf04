"""What a data node holds: its assignments, derived from the routing, and how they change.

:class:`AssignmentBook` keeps, for one node, the latest route it has seen of every partition, ordered
by the revision it was seen at, and says what changed each time it is fed a routing table, a single
route or a change-feed event. Information older than what it already has (a routing table read
before an event was applied, a route about a resource deleted since) is ignored, so it can be fed
from several sources (the watch, a re-read after a caught-up report) in any order. Pure
bookkeeping: no I/O, no threads, no locking (the agent serialises its use).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from hacoord.client import PartitionRoute, RoutingTable, WatchEvent
from hacoord.protocol import events as ev

Key = tuple[str, int]


class Role(enum.StrEnum):
    """The part a node plays for a partition it holds."""

    LEADER = "leader"
    FOLLOWER = "follower"
    #: Copying the partition for a pending move (named in the route's ``adding``); serves nothing.
    CATCHING_UP = "catching_up"


def role_of(route: PartitionRoute, node_id: str) -> Role | None:
    """The role ``node_id`` has in ``route``, or None if the route does not name it."""
    if node_id in route.replicas:
        return Role.LEADER if route.leader == node_id else Role.FOLLOWER
    if node_id in route.adding:
        return Role.CATCHING_UP
    return None


@dataclass(frozen=True)
class Assignment:
    """A partition this node holds: its ``epoch`` (the fencing epoch to serve it under), the
    node's ``role``, and the whole ``route`` (replicas, leader, the replica being added).
    ``held_since`` is the revision at which the node began holding it, this time: it tells a
    partition released and assigned again from one held all along."""

    resource: str
    partition: int
    epoch: int
    role: Role
    route: PartitionRoute
    held_since: int

    @property
    def key(self) -> Key:
        """``(resource, partition)``."""
        return (self.resource, self.partition)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data."""
        return {"resource": self.resource, "partition": self.partition, "epoch": self.epoch,
                "role": self.role.value, "replicas": list(self.route.replicas),
                "leader": self.route.leader, "adding": list(self.route.adding),
                "held_since": self.held_since}


@dataclass(frozen=True)
class Change:
    """One change to what the node holds: ``before`` and ``after`` (None: not held). A change
    with ``after`` None is a release; otherwise the node now holds ``after``."""

    before: Assignment | None
    after: Assignment | None

    @property
    def key(self) -> Key:
        held = self.after or self.before
        assert held is not None
        return held.key


class AssignmentBook:
    """The assignments of node ``node_id``, fed with routes as they are seen."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._held: dict[Key, Assignment] = {}
        #: The revision of the newest information applied, per partition.
        self._seen: dict[Key, int] = {}
        #: The revision each resource was last seen deleted at.
        self._gone: dict[str, int] = {}

    def held(self) -> dict[Key, Assignment]:
        """Every partition held, by ``(resource, partition)`` (a copy)."""
        return dict(self._held)

    def get(self, resource: str, partition: int) -> Assignment | None:
        """The assignment of one partition, or None if it is not held."""
        return self._held.get((resource, partition))

    def apply_route(self, route: PartitionRoute, revision: int) -> list[Change]:
        """Take ``route`` as the partition's state at ``revision``; the change it makes, if any.
        A route older than what is known of the partition (or of its resource) is ignored."""
        key = (route.resource, route.partition)
        if revision < self._seen.get(key, -1) or revision <= self._gone.get(route.resource, -1):
            return []
        self._seen[key] = revision
        before = self._held.get(key)
        role = role_of(route, self.node_id)
        if role is None:
            return self._set(key, before, None)
        if before is not None and before.role is role and before.epoch == route.epoch:
            return []
        since = before.held_since if before is not None else revision
        return self._set(key, before, Assignment(route.resource, route.partition, route.epoch, role,
                                                 route, since))

    def apply_table(self, table: RoutingTable) -> list[Change]:
        """Take a routing table of every resource as the state at its revision: each route is
        applied, and partitions of resources the table lacks are released."""
        changes = []
        for route in table:
            changes += self.apply_route(route, table.revision)
        present = set(table.resources)
        for name in {r for r, _ in self._seen if r not in present}:
            changes += self.drop_resource(name, table.revision)
        return changes

    def apply_event(self, event: WatchEvent) -> list[Change]:
        """The changes a change-feed event makes (none for events that carry no route)."""
        data = event.payload if event.type in ev.PARTITION_EVENTS else None
        if isinstance(data, ev.PartitionChanged):
            route = PartitionRoute(data.resource, data.partition, tuple(data.replicas), data.leader,
                                   data.epoch, tuple(data.adding))
            return self.apply_route(route, event.revision)
        if isinstance(data, ev.ResourceCreated | ev.PartitionsAdded):
            # A large resource is created in slices: the first in ResourceCreated, the rest in
            # PartitionsAdded, each numbering its partitions from its ``start``.
            name, start, partitions = data.slice()
            changes = []
            for offset, part in enumerate(partitions):
                route = PartitionRoute(name, start + offset, tuple(part["replicas"]),
                                       part["leader"], int(part["epoch"]),
                                       tuple(part.get("adding", ())))
                changes += self.apply_route(route, event.revision)
            return changes
        if isinstance(data, ev.ResourceDeleted):
            return self.drop_resource(data.name, event.revision)
        return []

    def drop_resource(self, name: str, revision: int) -> list[Change]:
        """Resource ``name`` was deleted at ``revision``: release its partitions and forget them."""
        if revision <= self._gone.get(name, -1):
            return []
        self._gone[name] = revision
        changes = []
        for key in sorted(k for k in self._seen if k[0] == name and self._seen[k] <= revision):
            del self._seen[key]
            changes += self._set(key, self._held.get(key), None)
        return changes

    def clear(self) -> list[Change]:
        """Release everything (the node's session is over)."""
        changes = [Change(a, None) for _, a in sorted(self._held.items())]
        self._held.clear()
        return changes

    def _set(self, key: Key, before: Assignment | None, after: Assignment | None) -> list[Change]:
        if after is None:
            if before is None:
                return []
            del self._held[key]
        else:
            self._held[key] = after
        return [Change(before, after)]
