"""The change feed's events: one dataclass per event type, each with one set of fields.

An event travels as ``{"type": ..., "revision": ..., "data": {...}}``; ``data`` is the
:meth:`~EventData.to_data` of the class named by ``type``. ``apply`` builds its events from these
classes (node events, the many of a liveness batch, as the node's record itself, which the
protocol's test holds equal to :class:`NodeRecordEvent`), and the consumers (the member's
routing history, the invariant check, the data-node agent, the chaos checker) read them back
with :func:`parse_event`, so the two sides cannot drift apart.

Naming rule: an event names what it is about by the key of that thing's record. A node is ``id``
(the node events carry the whole record, :class:`NodeRemoved` only the key); a resource is
``name``; a partition is ``resource`` and ``partition``, and a slice of new partitions
``resource`` and ``start``. ``partitions`` is always a list of partition states
(``{"replicas", "leader", "epoch"}``), never a count.

Reading is lenient in one direction only: keys a class does not know are ignored (a newer member
may add fields), keys it knows but cannot find take the field's default, and a key a class must
have raises :class:`EventFormatError`. An unknown event type parses to None, for the same reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

E = TypeVar("E", bound="EventData")


class EventFormatError(ValueError):
    """The data of an event of a known type lacks a field its type needs."""


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """The names of the dataclass ``cls``'s fields, in order, and those without a default."""
    fields = dataclasses.fields(cls)
    return (tuple(f.name for f in fields),
            frozenset(f.name for f in fields if f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING))


@dataclass(slots=True)
class EventData:
    """Base of every event's data. ``TYPE`` is the past-tense name the event travels under.
    Instances are not frozen (that would make every event cost three times as much to build,
    on the Raft loop); treat them as read-only."""

    TYPE: ClassVar[str] = ""

    def to_data(self) -> dict[str, Any]:
        """The event's ``data`` as it travels (JSON-ready, one key per field)."""
        return {name: getattr(self, name) for name in _fields(type(self))[0]}

    @classmethod
    def from_data(cls: type[E], data: Mapping[str, Any]) -> E:
        """Read an event's ``data`` (see the module's rule for unknown and missing keys)."""
        with contextlib.suppress(TypeError):  # unknown keys, or missing ones: see below
            return cls(**data)  # the usual case: every key a field, every field given
        names, required = _fields(cls)
        kwargs = {name: data[name] for name in names if name in data}
        if not required <= kwargs.keys():
            missing = sorted(required - kwargs.keys())
            raise EventFormatError(f"a {cls.TYPE} event has no {missing[0]!r}")
        return cls(**kwargs)


# --- nodes ------------------------------------------------------------------------------------


@dataclass(slots=True)
class NodeRecordEvent(EventData):
    """A node's whole record after a change (the fields of ``GET /v1/nodes/{id}``'s ``node``)."""

    id: str
    address: str
    zone: str
    capacity: float
    status: str
    status_since: float
    admin: str
    admin_reason: str
    epoch: int
    tags: Mapping[str, str]
    metrics: Mapping[str, float]
    registered_at: float
    updated_at: float


@dataclass(slots=True)
class NodeRegistered(NodeRecordEvent):
    """A node was registered (or registered again after its removal: its epochs continue)."""

    TYPE: ClassVar[str] = "NodeRegistered"


@dataclass(slots=True)
class NodeSessionStarted(NodeRecordEvent):
    """A node started a session: ``epoch`` grew by one and the node is up."""

    TYPE: ClassVar[str] = "NodeSessionStarted"


#: Why a node's record changed: the leader judged its liveness, or a write changed it (an
#: operator's update, the node's metrics).
LIVENESS, UPDATE = "liveness", "update"


@dataclass(slots=True)
class NodeStateChanged(NodeRecordEvent):
    """A node's record changed; ``reason`` is :data:`LIVENESS` or :data:`UPDATE`."""

    TYPE: ClassVar[str] = "NodeStateChanged"
    reason: str = UPDATE


@dataclass(slots=True)
class NodeRemoved(EventData):
    """A node was removed (its replicas were re-homed in the same revision)."""

    TYPE: ClassVar[str] = "NodeRemoved"
    id: str

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> NodeRemoved:
        # Members before the protocol package named the node ``node_id`` here.
        if "id" not in data and "node_id" in data:
            return cls(id=data["node_id"])
        return super(NodeRemoved, cls).from_data(data)


# --- resources and partitions -----------------------------------------------------------------


class PartitionSlice(NamedTuple):
    """Consecutive partitions of a resource, numbered from ``start``, in the state given."""

    resource: str
    start: int
    partitions: Sequence[Mapping[str, Any]]


@dataclass(slots=True)
class ResourceCreated(EventData):
    """A resource was created with its first partitions (all of them unless ``size`` says more
    are coming: a large resource is created in slices, the rest in :class:`PartitionsAdded`)."""

    TYPE: ClassVar[str] = "ResourceCreated"
    name: str
    replication_factor: int
    partitions: Sequence[Mapping[str, Any]]
    created_at: float
    balance_metric: str | None = None
    size: int = 0

    def slice(self) -> PartitionSlice:
        """The partitions this event places."""
        return PartitionSlice(self.name, 0, self.partitions)


@dataclass(slots=True)
class PartitionsAdded(EventData):
    """A slice of a resource being created; ``complete`` once it is the last."""

    TYPE: ClassVar[str] = "PartitionsAdded"
    resource: str
    start: int
    partitions: Sequence[Mapping[str, Any]]
    complete: bool = False

    def slice(self) -> PartitionSlice:
        """The partitions this event places."""
        return PartitionSlice(self.resource, self.start, self.partitions)


@dataclass(slots=True)
class ResourceUpdated(EventData):
    """A resource's settings changed (a lowered replication factor is followed by the
    :class:`PartitionChanged` events of the partitions that lost replicas)."""

    TYPE: ClassVar[str] = "ResourceUpdated"
    name: str
    replication_factor: int
    balance_metric: str | None = None


@dataclass(slots=True)
class ResourceDeleted(EventData):
    """A resource was deleted with its partitions."""

    TYPE: ClassVar[str] = "ResourceDeleted"
    name: str


@dataclass(slots=True)
class PartitionChanged(EventData):
    """A partition's replicas, leader or epoch changed; ``adding`` is the target of its pending
    move (empty when none), ``reason`` says why in words ("moved", "node removed", ...)."""

    TYPE: ClassVar[str] = "PartitionChanged"
    resource: str
    partition: int
    replicas: Sequence[str]
    leader: str | None
    epoch: int
    adding: Sequence[str] = ()
    reason: str = ""


# --- rebalancing ------------------------------------------------------------------------------


@dataclass(slots=True)
class RebalanceConfigured(EventData):
    """The rebalance settings after a change (the fields of ``GET /v1/rebalance``)."""

    TYPE: ClassVar[str] = "RebalanceConfigured"
    max_moves_per_node: int
    max_moves: int
    rereplicate_after: float
    maintenance: Mapping[str, Any] | None = None
    run: Mapping[str, Any] | None = None
    last_run: Mapping[str, Any] | None = None
    completed: int = 0
    move_seconds: float = 0.0


@dataclass(slots=True)
class RebalanceStarted(EventData):
    """An operator started rebalance run ``id`` at ``revision``."""

    TYPE: ClassVar[str] = "RebalanceStarted"
    id: str
    started_at: float
    revision: int = 0
    completed: int = 0


@dataclass(slots=True)
class RebalanceEnded(EventData):
    """Rebalance run ``id`` ended: ``outcome`` is "done" or "cancelled"; ``completed`` moves."""

    TYPE: ClassVar[str] = "RebalanceEnded"
    id: str
    started_at: float
    ended_at: float
    outcome: str
    revision: int = 0
    completed: int = 0


# --- tokens -----------------------------------------------------------------------------------


@dataclass(slots=True)
class TokenEvent(EventData):
    """An API token as the cluster shows it (never its secret or digest)."""

    name: str
    role: str
    node: str | None = None
    created_at: float = 0.0
    expires_at: float | None = None


@dataclass(slots=True)
class TokenCreated(TokenEvent):
    """A token was created (the first is the bootstrap admin token)."""

    TYPE: ClassVar[str] = "TokenCreated"


@dataclass(slots=True)
class TokenRevoked(TokenEvent):
    """A token was revoked: requests carrying it are refused from this revision on."""

    TYPE: ClassVar[str] = "TokenRevoked"


#: Every event type, by the name it travels under.
EVENT_TYPES: Mapping[str, type[EventData]] = {cls.TYPE: cls for cls in (
    NodeRegistered, NodeSessionStarted, NodeStateChanged, NodeRemoved,
    ResourceCreated, PartitionsAdded, ResourceUpdated, ResourceDeleted, PartitionChanged,
    RebalanceConfigured, RebalanceStarted, RebalanceEnded, TokenCreated, TokenRevoked)}

#: The events about a node (its record, or its removal).
NODE_EVENTS = frozenset({NodeRegistered.TYPE, NodeSessionStarted.TYPE, NodeStateChanged.TYPE,
                         NodeRemoved.TYPE})

#: The events that change where partitions are (what a data node follows).
PARTITION_EVENTS = frozenset({PartitionChanged.TYPE, ResourceCreated.TYPE, PartitionsAdded.TYPE,
                              ResourceDeleted.TYPE})


def parse_event(event_type: str, data: Mapping[str, Any]) -> EventData | None:
    """The typed data of an event, or None for a type this release does not know."""
    cls = EVENT_TYPES.get(event_type)
    return None if cls is None else cls.from_data(data)


__all__ = [
    "EVENT_TYPES", "LIVENESS", "NODE_EVENTS", "PARTITION_EVENTS", "UPDATE", "EventData",
    "EventFormatError", "NodeRecordEvent", "NodeRegistered", "NodeRemoved", "NodeSessionStarted",
    "NodeStateChanged", "PartitionChanged", "PartitionSlice", "PartitionsAdded",
    "RebalanceConfigured", "RebalanceEnded", "RebalanceStarted", "ResourceCreated",
    "ResourceDeleted", "ResourceUpdated", "TokenCreated", "TokenEvent", "TokenRevoked",
    "parse_event",
]
