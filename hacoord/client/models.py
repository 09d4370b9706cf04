"""Typed results of :class:`hacoord.client.Client` calls: frozen dataclasses built from the API's JSON.

Each ``from_api`` constructor reads the shape one route answers with and raises ``KeyError`` or
``TypeError`` on anything else (the client turns that into :class:`~hacoord.client.ProtocolError`).
``to_dict`` gives plain JSON-ready data. Mapping fields are excluded from hashing (dicts are not
hashable); compare instances with ``==``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hacoord.protocol.events import EventData, parse_event


def _no_hash_dict() -> Any:
    return field(default_factory=dict, hash=False)


class _Model:
    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (tuples become lists)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class NodeReplica(_Model):
    """A replica a node holds: ``partition`` of ``resource``, whether it leads it, and its epoch.
    ``catching_up``: the node is copying it for a pending move and serves nothing of it yet."""

    resource: str
    partition: int
    leader: bool
    epoch: int
    catching_up: bool = False


@dataclass(frozen=True)
class NodeInfo(_Model):
    """A data node as registered. ``status`` is ``up``, ``suspect`` (missed heartbeats, keeps its
    leaderships) or ``down``; ``epoch`` is its incarnation (grows with each session it starts).
    ``replicas`` is filled only by ``node_show``."""

    id: str
    address: str
    zone: str
    capacity: float
    status: str
    tags: Mapping[str, str] = _no_hash_dict()
    metrics: Mapping[str, float] = _no_hash_dict()
    registered_at: float = 0.0
    updated_at: float = 0.0
    replicas: tuple[NodeReplica, ...] = ()
    epoch: int = 1
    admin: str = "active"
    admin_reason: str = ""
    moves: int = 0

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> NodeInfo:
        return cls(
            id=data["id"], address=data["address"], zone=data["zone"],
            capacity=float(data["capacity"]), status=data["status"], tags=dict(data.get("tags", {})),
            metrics=dict(data.get("metrics", {})), registered_at=data.get("registered_at", 0.0),
            updated_at=data.get("updated_at", 0.0),
            replicas=tuple(NodeReplica(r["resource"], r["partition"], bool(r["leader"]), r["epoch"],
                                       bool(r.get("catching_up", False)))
                           for r in data.get("replicas", ())),
            epoch=int(data.get("epoch", 1)),
            admin=data.get("admin", "active"), admin_reason=data.get("admin_reason", ""),
            moves=int(data.get("moves", 0)),
        )


@dataclass(frozen=True)
class ResourceInfo(_Model):
    """A resource: its name, number of partitions and copies of each, and the node metric it
    balances on (None: replica counts)."""

    name: str
    partitions: int
    replication_factor: int
    created_at: float | None = None
    balance_metric: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ResourceInfo:
        return cls(name=data["name"], partitions=int(data["partitions"]),
                   replication_factor=int(data["replication_factor"]), created_at=data.get("created_at"),
                   balance_metric=data.get("balance_metric"))


@dataclass(frozen=True)
class PartitionRoute(_Model):
    """Where one partition lives: its replicas (leader first when placed), leader and fencing epoch,
    and ``adding``: the node catching up for a pending move (it copies, serves nothing yet).

    A data node must refuse requests stamped with an epoch older than the one it holds."""

    resource: str
    partition: int
    replicas: tuple[str, ...]
    leader: str | None
    epoch: int
    adding: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, resource: str, data: Mapping[str, Any]) -> PartitionRoute:
        return cls(resource=resource, partition=int(data["partition"]),
                   replicas=tuple(data["replicas"]), leader=data["leader"], epoch=int(data["epoch"]),
                   adding=tuple(data.get("adding", ())))


@dataclass(frozen=True)
class RoutingTable(_Model):
    """Partition -> replicas, leader and epoch for some resources, as of ``revision``.

    ``partitions`` lists every partition, resource by resource (sorted by name) and in partition
    order, so for a table of one resource ``partitions[p]`` is partition ``p``.
    ``replication_factors`` gives each resource's number of copies; ``addresses`` the ``host:port``
    of every node the table names."""

    revision: int
    partitions: tuple[PartitionRoute, ...] = ()
    replication_factors: Mapping[str, int] = _no_hash_dict()
    addresses: Mapping[str, str] = _no_hash_dict()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RoutingTable:
        resources = data["resources"]
        partitions = tuple(PartitionRoute.from_api(name, p)
                           for name in sorted(resources) for p in resources[name]["partitions"])
        factors = {name: int(resources[name]["replication_factor"]) for name in sorted(resources)}
        return cls(revision=int(data["revision"]), partitions=partitions, replication_factors=factors,
                   addresses=dict(data.get("addresses", {})))

    def __iter__(self) -> Iterator[PartitionRoute]:
        return iter(self.partitions)

    @property
    def resources(self) -> tuple[str, ...]:
        """The resources in the table, sorted."""
        return tuple(self.replication_factors)

    def for_resource(self, resource: str) -> tuple[PartitionRoute, ...]:
        """The routes of one resource in partition order (empty if the table lacks it)."""
        return tuple(r for r in self.partitions if r.resource == resource)

    def route(self, resource: str, partition: int) -> PartitionRoute:
        """The route of one partition; ``KeyError`` if the table lacks it."""
        for r in self.partitions:
            if r.resource == resource and r.partition == partition:
                return r
        raise KeyError(f"{resource}/{partition}")

    def leader_address(self, resource: str, partition: int) -> str | None:
        """``host:port`` of the partition's leader, or None if it has none."""
        leader = self.route(resource, partition).leader
        return self.addresses.get(leader) if leader is not None else None


@dataclass(frozen=True)
class DataPlaneHealth(_Model):
    """The data nodes and partitions as one member sees them: nodes by status (``up``,
    ``suspect``, ``down``), partitions by health (``healthy``, ``under_replicated``,
    ``leaderless``, ``unavailable``), the worst health found (``status``), and the first
    unhealthy partitions (at most 100) as ``(resource, partition, health)``."""

    nodes: Mapping[str, int] = _no_hash_dict()
    partitions: Mapping[str, int] = _no_hash_dict()
    status: str = "healthy"
    unhealthy: tuple[tuple[str, int, str], ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DataPlaneHealth:
        return cls(nodes=dict(data.get("nodes", {})), partitions=dict(data.get("partitions", {})),
                   status=data.get("status", "healthy"),
                   unhealthy=tuple((u["resource"], int(u["partition"]), u["health"])
                                   for u in data.get("unhealthy", ())))

    @property
    def healthy(self) -> bool:
        """Every node up and every partition healthy."""
        nodes_down = sum(n for status, n in self.nodes.items() if status != "up")
        return self.status == "healthy" and nodes_down == 0


@dataclass(frozen=True)
class MemberStatus(_Model):
    """One coordinator member as seen through ``endpoint``. When ``reachable`` is false only
    ``endpoint`` (and ``member_id`` if known from another member) and ``error`` are set."""

    endpoint: str
    reachable: bool
    member_id: str | None = None
    role: str | None = None
    term: int | None = None
    leader: str | None = None
    commit_index: int | None = None
    applied_index: int | None = None
    revision: int | None = None
    ready: bool = False
    has_quorum: bool = False
    error: str | None = None
    health: DataPlaneHealth | None = None

    @classmethod
    def from_api(cls, endpoint: str, data: Mapping[str, Any]) -> MemberStatus:
        member = data["member"]
        health = data.get("health")
        return cls(endpoint=endpoint, reachable=True, member_id=member["member_id"], role=member["role"],
                   term=member["term"], leader=data.get("leader", member.get("leader_id")),
                   commit_index=member["commit_index"], applied_index=member["applied_index"],
                   revision=member["revision"], ready=bool(member.get("ready")),
                   has_quorum=bool(member.get("has_quorum")),
                   health=DataPlaneHealth.from_api(health) if health is not None else None)


@dataclass(frozen=True)
class ClusterStatus(_Model):
    """Every member the client could ask, with the leader and highest revision they report.

    ``leader`` is the member that reports itself leader in the highest term (or, failing that,
    the leader named by the reachable member with the highest term); ``member_urls`` maps member
    ids to their API URLs as configured on the members."""

    members: tuple[MemberStatus, ...]
    leader: str | None
    revision: int | None
    member_urls: Mapping[str, str] = _no_hash_dict()

    @property
    def reachable(self) -> tuple[MemberStatus, ...]:
        """The members that answered."""
        return tuple(m for m in self.members if m.reachable)

    @property
    def healthy(self) -> bool:
        """The coordinator itself: a leader is known and a majority of the members answered
        and are ready. (The data nodes and partitions: :attr:`health`.)"""
        ready = sum(1 for m in self.members if m.reachable and m.ready)
        return self.leader is not None and ready * 2 > len(self.members)

    @property
    def health(self) -> DataPlaneHealth | None:
        """The data plane as the leader sees it (or, without a reachable leader, the reachable
        member with the highest revision); None if no member reported it."""
        reported = [m for m in self.members if m.reachable and m.health is not None]
        if not reported:
            return None
        leading = [m for m in reported if m.member_id == self.leader]
        best = leading[0] if leading else max(reported, key=lambda m: m.revision or 0)
        return best.health


@dataclass(frozen=True)
class WriteResult(_Model):
    """What a write returned: the ``revision`` it produced and the ``request_id`` it carried (a
    retry with that id is applied once). ``data`` is the raw answer; ``node``, ``resource`` and
    ``partition`` are set by the writes that return one."""

    revision: int
    request_id: str
    data: Mapping[str, Any] = _no_hash_dict()
    node: NodeInfo | None = None
    resource: ResourceInfo | None = None
    partition: PartitionRoute | None = None


@dataclass(frozen=True)
class NodeSession(_Model):
    """A session a node started (``node_start_session``): the ``epoch`` its heartbeats and reports
    must carry from now on, the ``revision`` it was applied at, and the node as it now stands."""

    node_id: str
    epoch: int
    revision: int
    request_id: str
    node: NodeInfo

    @classmethod
    def from_api(cls, data: Mapping[str, Any], request_id: str) -> NodeSession:
        node = NodeInfo.from_api(data["node"])
        return cls(node_id=node.id, epoch=int(data["epoch"]), revision=int(data["revision"]),
                   request_id=request_id, node=node)


@dataclass(frozen=True)
class Heartbeat(_Model):
    """The leader's answer to a heartbeat: the node's ``status`` and ``epoch`` as of ``revision``
    (a suspect or down node is judged up again before the answer)."""

    node_id: str
    status: str
    epoch: int
    revision: int

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Heartbeat:
        return cls(node_id=str(data["node_id"]), status=str(data["status"]), epoch=int(data["epoch"]),
                   revision=int(data["revision"]))


@dataclass(frozen=True)
class WatchEvent(_Model):
    """One change, as the watch feed reports it: ``type`` in the past tense (``NodeRegistered``,
    ``PartitionChanged``, ...), the ``revision`` it happened at, its ``data``, and who made it
    (``audit``: the command, its request id and time, the token's ``principal`` and ``role``,
    ``source``, ``via``; see :class:`AuditEntry`)."""

    type: str
    revision: int
    data: Mapping[str, Any] = _no_hash_dict()
    audit: Mapping[str, Any] = _no_hash_dict()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> WatchEvent:
        return cls(type=str(data["type"]), revision=int(data["revision"]),
                   data=dict(data.get("data", {})), audit=dict(data.get("audit") or {}))

    @property
    def payload(self) -> EventData | None:
        """``data`` as the :mod:`hacoord.protocol.events` class of its ``type`` (``NodeRemoved``
        with its ``id``, ...); None for a type this release does not know. Raises
        :class:`~hacoord.protocol.events.EventFormatError` if a field its type needs is missing."""
        return parse_event(self.type, self.data)


@dataclass(frozen=True)
class MemberInfo(_Model):
    """A coordinator member: its ``id``, the ``api_url`` clients reach it at and the
    ``raft_address`` its peers do; ``leader`` if the member that answered believes it leads."""

    id: str
    api_url: str
    raft_address: str
    leader: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> MemberInfo:
        return cls(id=str(data["id"]), api_url=str(data["api_url"]),
                   raft_address=str(data["raft_address"]), leader=bool(data.get("leader")))


@dataclass(frozen=True)
class MembershipChange(_Model):
    """The answer to adding or removing a coordinator member: whether the membership changed
    (False: it already was as asked) and the members now."""

    changed: bool
    members: tuple[MemberInfo, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> MembershipChange:
        return cls(changed=bool(data["changed"]),
                   members=tuple(MemberInfo.from_api(m) for m in data["members"]))


@dataclass(frozen=True)
class TokenInfo(_Model):
    """An API token as the cluster shows it (never its secret). ``node`` is the node a ``node``
    token speaks for; ``expires_at`` is seconds since the epoch (None: never)."""

    name: str
    role: str
    node: str | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    expired: bool = False

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> TokenInfo:
        return cls(name=str(data["name"]), role=str(data["role"]), node=data.get("node"),
                   created_at=float(data.get("created_at", 0.0)),
                   expires_at=None if data.get("expires_at") is None else float(data["expires_at"]),
                   expired=bool(data.get("expired", False)))


@dataclass(frozen=True)
class NewToken(_Model):
    """A token just created: its record and its ``secret``, the only copy there is."""

    token: TokenInfo
    secret: str
    revision: int


@dataclass(frozen=True)
class AuditEntry(_Model):
    """Who made the change at ``revision``: the ``command``, its ``request_id`` and ``time``, the
    token's name (``principal``; "system" for the leader's own decisions) and ``role``, the
    ``source`` address, the member it came ``via`` (and the ``client`` that member named), and the
    kinds of change made (``changes``, event types)."""

    revision: int
    command: str | None
    request_id: str | None
    time: float | None
    principal: str | None
    role: str | None
    source: str | None = None
    via: str | None = None
    client: str | None = None
    changes: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> AuditEntry:
        return cls(revision=int(data["revision"]), command=data.get("command"),
                   request_id=data.get("request_id"), time=data.get("time"),
                   principal=data.get("principal"), role=data.get("role"),
                   source=data.get("source"), via=data.get("via"), client=data.get("client"),
                   changes=tuple(str(c) for c in data["changes"]))
