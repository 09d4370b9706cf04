"""The replicated record: nodes, resources, partitions, replicas, leaders and fencing epochs.

Everything here is plain data. ``ClusterState`` is mutated only by :func:`hacoord.core.apply.apply`,
which checks a command completely before it changes anything, so a rejected command leaves the
state untouched. Dictionaries keep insertion order, which every replica reproduces exactly because
they all apply the same commands in the same order; nothing here iterates over a set of strings or
uses the per-process salted ``hash()``.

Serialisation: ``to_dict``/``from_dict`` round-trip exactly; :mod:`hacoord.core.codec` turns the
dict into a canonical byte string (sorted keys, no whitespace) and a digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hacoord.core.access import ApiToken
from hacoord.core.leadership import LeaderIndex
from hacoord.protocol.formats import ADDRESS, ID

SCHEMA_VERSION = 1


class NewerSchema(ValueError):
    """A state written by a newer hacoord than this build (a higher ``schema``)."""

#: Identifiers of nodes and resources (:data:`hacoord.protocol.formats.ID`).
ID_PATTERN = re.compile(ID)
#: ``host:port`` (:data:`hacoord.protocol.formats.ADDRESS`).
ADDRESS_PATTERN = re.compile(ADDRESS)

#: ``up``: serving. ``suspect``: missed heartbeats for a while; keeps its leaderships until it is
#: judged ``down``, which moves them to an up replica (see ``apply``).
NODE_STATUSES = ("up", "suspect", "down")

#: What the operator wants of a node, apart from its liveness. ``active``: takes replicas.
#: ``cordoned``: keeps what it holds, gets no new replicas or leaderships. ``draining``: everything
#: it holds moves off (two-phase moves), then it can be removed.
NODE_ADMIN = ("active", "cordoned", "draining")

#: Request ids are remembered (for de-duplication of retried writes) for this many seconds of
#: leader time, and at most ``REQUEST_HISTORY`` of them, oldest forgotten first.
REQUEST_RETENTION = 300.0
REQUEST_HISTORY = 50_000

#: A removed node's id and last epoch are remembered this long (seconds of leader time), so that a
#: node registered again under the same id continues from a higher epoch: a process of the old
#: incarnation cannot pass for the new one.
REMOVED_RETENTION = 86_400.0

#: Rebalance defaults: moves in flight per node (as source or target) and in the cluster, and how
#: long a down node's replicas wait before they are re-created elsewhere.
DEFAULT_MAX_MOVES_PER_NODE = 2
DEFAULT_MAX_MOVES = 16
DEFAULT_REREPLICATE_AFTER = 300.0


def valid_id(value: object) -> bool:
    """True if ``value`` is a well-formed node or resource identifier."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def valid_address(value: object) -> bool:
    """True if ``value`` is ``host:port`` with a port in 1..65535."""
    if not isinstance(value, str):
        return False
    match = ADDRESS_PATTERN.fullmatch(value)
    return match is not None and 1 <= int(match.group(2)) <= 65535


@dataclass
class Node:
    """A data node: where it listens, where it stands, how much it can hold.

    ``epoch`` is the node's incarnation number: 1 on registration, one more each time the node
    starts a session (``StartNodeSession``). Heartbeats and reports carrying another epoch are
    refused, so a restarted or cut-off process cannot act on the state of an older incarnation.
    """

    id: str
    address: str
    zone: str = "default"
    capacity: float = 1.0
    status: str = "up"
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    registered_at: float = 0.0
    updated_at: float = 0.0
    epoch: int = 1
    admin: str = "active"
    admin_reason: str = ""
    status_since: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "zone": self.zone,
            "capacity": self.capacity,
            "status": self.status,
            "status_since": self.status_since,
            "admin": self.admin,
            "admin_reason": self.admin_reason,
            "epoch": self.epoch,
            "tags": dict(sorted(self.tags.items())),
            "metrics": dict(sorted(self.metrics.items())),
            "registered_at": self.registered_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        return cls(
            id=data["id"],
            address=data["address"],
            zone=data["zone"],
            capacity=data["capacity"],
            status=data["status"],
            tags=dict(data["tags"]),
            metrics=dict(data["metrics"]),
            registered_at=data["registered_at"],
            updated_at=data["updated_at"],
            # Snapshots written before node epochs existed hold first incarnations.
            epoch=data.get("epoch", 1),
            admin=data.get("admin", "active"),
            admin_reason=data.get("admin_reason", ""),
            status_since=data.get("status_since", data["updated_at"]),
        )


@dataclass
class Partition:
    """One partition of a resource: its replicas (leader first), its leader and fencing epoch.

    The epoch grows by one whenever the replica set or the leader changes, so a data node can
    refuse a request stamped with an older epoch.
    """

    replicas: list[str]
    leader: str | None
    epoch: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"replicas": list(self.replicas), "leader": self.leader, "epoch": self.epoch}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        return cls(replicas=list(data["replicas"]), leader=data["leader"], epoch=data["epoch"])


@dataclass
class PendingMove:
    """A replica being added to a partition (phase one of a move): ``to_node`` copies the data
    while the old replicas keep serving; when the data node reports it caught up, it takes
    ``from_node``'s place (or is added, when ``from_node`` is None) and leadership follows if
    ``from_node`` led. ``started_at`` is leader time; ``term`` the Raft term that started it."""

    resource: str
    partition: int
    from_node: str | None
    to_node: str
    reason: str
    started_at: float
    term: int = 0

    @property
    def key(self) -> str:
        return move_key(self.resource, self.partition)

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "partition": self.partition, "from_node": self.from_node,
                "to_node": self.to_node, "reason": self.reason, "started_at": self.started_at,
                "term": self.term}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingMove:
        return cls(**data)


def move_key(resource: str, partition: int) -> str:
    """The key of a partition's pending move in ``ClusterState.moves``."""
    return f"{resource}/{partition}"


@dataclass
class RebalanceState:
    """Replicated rebalance settings and bookkeeping.

    ``maintenance``: ``{"reason", "since"}`` while rebalancing is frozen (no move starts), else
    None. ``run``: the rebalance an operator started (``{"id", "started_at", "completed"}``), during
    which balance moves and leadership changes are made; without one only repairs run (draining
    nodes, nodes down longer than ``rereplicate_after``, missing replicas, zone spread).
    ``last_run`` is the previous run's record with its ``ended_at`` and ``outcome``.
    ``completed``/``move_seconds`` count every completed move and their total duration, for ETAs.
    """

    max_moves_per_node: int = DEFAULT_MAX_MOVES_PER_NODE
    max_moves: int = DEFAULT_MAX_MOVES
    rereplicate_after: float = DEFAULT_REREPLICATE_AFTER
    maintenance: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    last_run: dict[str, Any] | None = None
    completed: int = 0
    move_seconds: float = 0.0

    def mean_move_seconds(self) -> float | None:
        """Average duration of a completed move, or None before the first."""
        return self.move_seconds / self.completed if self.completed else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_moves_per_node": self.max_moves_per_node,
            "max_moves": self.max_moves,
            "rereplicate_after": self.rereplicate_after,
            "maintenance": None if self.maintenance is None else dict(self.maintenance),
            "run": None if self.run is None else dict(self.run),
            "last_run": None if self.last_run is None else dict(self.last_run),
            "completed": self.completed,
            "move_seconds": self.move_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RebalanceState:
        return cls(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()})


@dataclass
class Resource:
    """A named data set split into ``len(partitions)`` partitions of ``replication_factor`` copies.

    ``balance_metric`` names a node metric (``Node.metrics``, reported by the data nodes, e.g. disk
    bytes) that rebalancing evens out for this resource instead of replica counts; None: counts.
    """

    name: str
    replication_factor: int
    partitions: list[Partition]
    created_at: float = 0.0
    balance_metric: str | None = None
    #: Partitions the resource was created with; while ``len(partitions)`` is below it, the
    #: resource is still being created (its slices arrive in ``AddPartitions``). 0: complete.
    size: int = 0

    @property
    def creating(self) -> bool:
        """True while slices of the resource are still to come."""
        return len(self.partitions) < self.size

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "replication_factor": self.replication_factor,
            "partitions": [p.to_dict() for p in self.partitions],
            "created_at": self.created_at,
            "balance_metric": self.balance_metric,
        }
        if self.creating:
            data["size"] = self.size
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resource:
        return cls(
            name=data["name"],
            replication_factor=data["replication_factor"],
            partitions=[Partition.from_dict(p) for p in data["partitions"]],
            created_at=data["created_at"],
            balance_metric=data.get("balance_metric"),
            size=data.get("size", 0),
        )


@dataclass
class ClusterState:
    """The whole replicated record, at one ``revision``.

    ``revision`` grows by one with every applied change (rejections and barriers do not change
    it). ``requests`` maps the request id of each recent write to a small record of it (revision,
    time, and what to answer a retry with), oldest first, so that a write retried across a
    failover is applied once and answered with its original revision.

    ``moves`` holds the partitions' pending moves (at most one per partition), keyed by
    :func:`move_key`; ``rebalance`` the rebalance settings and progress; ``removed`` the last
    epoch of recently removed nodes (kept ``REMOVED_RETENTION`` seconds).

    ``leader_term`` is the highest Raft term any leader-only command (``SetNodeLiveness``,
    ``StartMove``, ...) was stamped with; such a command stamped with a lower term is refused,
    so a deposed leader's late decision cannot undo a newer leader's.
    """

    revision: int = 0
    nodes: dict[str, Node] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_time: float = 0.0
    leader_term: int = 0
    moves: dict[str, PendingMove] = field(default_factory=dict)
    rebalance: RebalanceState = field(default_factory=RebalanceState)
    removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: API tokens by name (:mod:`hacoord.core.access`), and whether the first admin token has
    #: been written (until then each member accepts the admin token it was started with).
    tokens: dict[str, ApiToken] = field(default_factory=dict)
    auth_bootstrapped: bool = False
    #: The cluster's identity, written once by its first leader (``SetClusterId``) and replaced
    #: only by a restore, which makes a new cluster; members of different clusters refuse each
    #: other, and clients refuse a member whose answers carry another cluster's id.
    cluster_id: str = ""
    #: Derived from the partitions on first use, kept current by the methods below, never
    #: serialized (see :mod:`hacoord.core.leadership`).
    _leaders: LeaderIndex | None = field(default=None, init=False, repr=False, compare=False)
    #: Token names by digest; derived like ``_leaders``.
    _token_hashes: dict[str, str] | None = field(default=None, init=False, repr=False,
                                                 compare=False)
    #: The revision of the last change the placement planner and the health summary read (not
    #: tokens, not a node's metric report: only a resource balancing on a metric reads those).
    #: Local bookkeeping, like ``_leaders``: never serialized or compared.
    planning_revision: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.planning_revision = self.revision

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "revision": self.revision,
            "last_time": self.last_time,
            "leader_term": self.leader_term,
            # Lists in insertion order, which every replica reproduces (same log, same order) and
            # from_dict restores: a member restored from a snapshot iterates exactly like one
            # that applied the log. Request eviction is oldest-first, so order matters there too.
            "nodes": [node.to_dict() for node in self.nodes.values()],
            "resources": [res.to_dict() for res in self.resources.values()],
            "requests": [[rid, outcome] for rid, outcome in self.requests.items()],
            "moves": [move.to_dict() for move in self.moves.values()],
            "rebalance": self.rebalance.to_dict(),
            "removed": [[node_id, record] for node_id, record in self.removed.items()],
            "tokens": [token.to_dict() for token in self.tokens.values()],
            "auth_bootstrapped": self.auth_bootstrapped,
            "cluster_id": self.cluster_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterState:
        schema = data.get("schema")
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            raise NewerSchema(f"state of schema {schema}, written by a newer hacoord (this build "
                             f"reads schema {SCHEMA_VERSION}): run the newer release")
        if schema != SCHEMA_VERSION:
            raise ValueError(f"unsupported state schema {schema!r} (this build reads {SCHEMA_VERSION})")
        return cls(
            revision=data["revision"],
            last_time=data["last_time"],
            leader_term=data.get("leader_term", 0),  # absent from snapshots before node liveness
            nodes={n["id"]: Node.from_dict(n) for n in data["nodes"]},
            resources={r["name"]: Resource.from_dict(r) for r in data["resources"]},
            requests={rid: dict(outcome) for rid, outcome in data["requests"]},
            # Absent from snapshots written before two-phase moves.
            moves={m.key: m for m in map(PendingMove.from_dict, data.get("moves", []))},
            rebalance=RebalanceState.from_dict(data.get("rebalance", {})),
            removed={node_id: dict(record) for node_id, record in data.get("removed", [])},
            # Absent from snapshots written before API tokens.
            tokens={t["name"]: ApiToken.from_dict(t) for t in data.get("tokens", [])},
            auth_bootstrapped=data.get("auth_bootstrapped", False),
            cluster_id=data.get("cluster_id", ""),  # absent before cluster ids
        )

    # --- leaderships ---------------------------------------------------------------------------
    # Code that changes a partition's leader, or adds or deletes partitions, in a state whose
    # index may be built goes through these (``apply`` does); a state built by hand and changed
    # in place before its first use needs nothing, since the index is built on first use.

    def leader_index(self) -> LeaderIndex:
        """Which partitions each node leads (built from the partitions on first use)."""
        if self._leaders is None:
            self._leaders = LeaderIndex.build(self.resources)
        return self._leaders

    def set_leader(self, resource: str, index: int, leader: str | None) -> None:
        """Make ``leader`` the leader of ``resource``/``index`` (epochs are the caller's)."""
        part = self.resources[resource].partitions[index]
        if self._leaders is not None:
            self._leaders.move(part.leader, leader, resource, index)
        part.leader = leader

    def partitions_added(self, resource: str, start: int) -> None:
        """The partitions of ``resource`` from ``start`` on are new (a resource or a slice).
        The index is built here if it was not yet (it then includes them), so that it grows
        with the state instead of being built whole by the first change that needs it."""
        if self._leaders is None:
            self._leaders = LeaderIndex.build(self.resources)
        else:
            self._leaders.add_resource(resource, self.resources[resource], start)

    def tidy(self) -> None:
        """A bounded step of upkeep of derived indexes (see :meth:`LeaderIndex.tidy`): the
        state machine takes one after each log entry (a few milliseconds at most; the indexes
        answer the same whenever it runs)."""
        if self._leaders is not None:
            self._leaders.tidy()

    def delete_resource(self, resource: str) -> None:
        """Delete ``resource`` with its partitions (its pending moves are the caller's)."""
        res = self.resources.pop(resource)
        if self._leaders is not None:
            self._leaders.remove_resource(resource, res)

    # --- tokens ------------------------------------------------------------------------------

    def token_by_hash(self, digest: str) -> ApiToken | None:
        """The token whose digest is ``digest``, or None."""
        if self._token_hashes is None:
            self._token_hashes = {t.hash: t.name for t in self.tokens.values()}
        name = self._token_hashes.get(digest)
        return self.tokens.get(name) if name is not None else None

    def add_token(self, token: ApiToken) -> None:
        self.tokens[token.name] = token
        if self._token_hashes is not None:
            self._token_hashes[token.hash] = token.name

    def remove_token(self, name: str) -> ApiToken:
        token = self.tokens.pop(name)
        if self._token_hashes is not None:
            self._token_hashes.pop(token.hash, None)
        return token

    def move_of(self, resource: str, partition: int) -> PendingMove | None:
        """The pending move of ``resource``/``partition``, or None."""
        return self.moves.get(move_key(resource, partition)) if self.moves else None

    def moves_per_node(self) -> dict[str, int]:
        """Pending moves each node takes part in (as source or target); nodes in none are left
        out."""
        per_node: dict[str, int] = {}
        for move in self.moves.values():
            for node_id in (move.from_node, move.to_node):
                if node_id is not None:
                    per_node[node_id] = per_node.get(node_id, 0) + 1
        return per_node

    def replica_counts(self) -> dict[str, int]:
        """Replicas held by each known node (nodes holding none included, with 0)."""
        counts = {node_id: 0 for node_id in self.nodes}
        for resource in self.resources.values():
            for partition in resource.partitions:
                for node_id in partition.replicas:
                    counts[node_id] = counts.get(node_id, 0) + 1
        return counts

    def leader_counts(self) -> dict[str, int]:
        """Partition leaderships held by each known node (0 for nodes leading none)."""
        counts = {node_id: 0 for node_id in self.nodes}
        for resource in self.resources.values():
            for partition in resource.partitions:
                if partition.leader is not None:
                    counts[partition.leader] = counts.get(partition.leader, 0) + 1
        return counts
