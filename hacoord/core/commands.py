"""Commands: the only way the replicated state changes.

Each command is an imperative (``RegisterNode``), carries the ``request_id`` the client chose (a
retried write reuses it and is applied once) and the ``time`` at which the leader accepted it: time
enters the state machine only through this field, never from a clock.

Commands that place replicas carry the placement the leader computed (``assignment``); ``apply``
checks it against the state it is applied to and rejects it if it no longer fits, which keeps
``apply`` free of placement policy and makes the decision visible in the log.

``encode``/``decode`` give the wire form replicated through Raft: canonical JSON. ``decode``
never raises on bad input; it returns a :class:`DecodeError` value instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Command:
    """Base of all commands. ``TYPE`` names the command on the wire.

    ``fingerprint`` identifies the client request behind a write (a digest of its method, path
    and body, made by the API): a request id used again with another request is refused
    (``request_id_reused``) instead of being answered with the first request's outcome.

    ``audit`` says who asked (the API stamps it: the token's ``principal`` and ``role``, the
    ``source`` address, and ``via``, the member that forwarded it); None for the leader's own
    decisions (liveness judgements, rebalancing moves).
    """

    TYPE: ClassVar[str] = ""
    request_id: str = ""
    time: float = 0.0
    fingerprint: str = ""
    audit: dict[str, str | None] | None = None


@dataclass(frozen=True)
class RegisterNode(Command):
    """Add a data node to the cluster."""

    TYPE: ClassVar[str] = "RegisterNode"
    node_id: str = ""
    address: str = ""
    zone: str = "default"
    capacity: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoveNode(Command):
    """Remove a node. A node that still holds replicas is refused unless ``force`` is set, and
    then ``replacements`` (resource -> partition index -> node id) says where its replicas go."""

    TYPE: ClassVar[str] = "RemoveNode"
    node_id: str = ""
    force: bool = False
    replacements: dict[str, dict[str, str | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class SetNodeState(Command):
    """Change a node's status and metadata. Fields left ``None`` are unchanged; ``tags`` and
    ``metrics`` are merged, a ``None`` value deleting that key. ``admin`` cordons, drains or
    re-activates the node (``admin_reason`` says why). ``epoch`` (a data node's own report) is
    refused as ``stale_epoch`` unless it is the node's current epoch. With ``expect_tags`` it is a
    compare-and-set: refused (``precondition_failed``) unless each named tag has the expected
    value (``None``: absent) right before it applies."""

    TYPE: ClassVar[str] = "SetNodeState"
    node_id: str = ""
    status: str | None = None
    address: str | None = None
    zone: str | None = None
    capacity: float | None = None
    tags: dict[str, str | None] | None = None
    metrics: dict[str, float | None] | None = None
    expect_tags: dict[str, str | None] | None = None
    admin: str | None = None
    admin_reason: str | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class StartNodeSession(Command):
    """A node (re)starts: its epoch grows by one and it is marked up (an ``address`` given
    replaces the old one). The result carries the new ``epoch``, which the node then puts on its
    heartbeats and reports; anything still carrying an older epoch is refused."""

    TYPE: ClassVar[str] = "StartNodeSession"
    node_id: str = ""
    address: str | None = None


@dataclass(frozen=True)
class SetNodeLiveness(Command):
    """The leader's liveness monitor judges a node ``up``, ``suspect`` or ``down``. Refused as
    ``stale_epoch`` unless ``epoch`` is the node's current epoch (the judgement was about an older
    incarnation), and as ``stale_term`` if ``term`` (the Raft term the leader judged in) is below
    the highest term seen (a deposed leader's late judgement). The monitor now sends
    :class:`SetNodesLiveness`; this one stays applicable for the logs that hold it."""

    TYPE: ClassVar[str] = "SetNodeLiveness"
    node_id: str = ""
    status: str = ""
    epoch: int = 0
    term: int = 0


@dataclass(frozen=True)
class SetNodesLiveness(Command):
    """Several of the leader's liveness judgements at once (one pass of its monitor): each of
    ``judgements`` is ``[node_id, status, epoch]``, applied as :class:`SetNodeLiveness` would
    be, except that one about a node that is gone or at another epoch is skipped (listed in the
    result), not a refusal of the others. Leaderships then follow every change in one pass over
    the partitions. Refused as a whole as ``stale_term`` (see SetNodeLiveness)."""

    TYPE: ClassVar[str] = "SetNodesLiveness"
    judgements: list[list[Any]] = field(default_factory=list)
    term: int = 0


@dataclass(frozen=True)
class CreateResource(Command):
    """Create a resource with the replicas the leader placed: ``assignment[p]`` lists partition
    p's replicas, its leader first. A large resource comes in slices: ``assignment`` may cover
    only its first partitions, the rest following in :class:`AddPartitions` commands (one log
    entry each, so that no entry costs a member more than a few milliseconds to apply)."""

    TYPE: ClassVar[str] = "CreateResource"
    name: str = ""
    partitions: int = 0
    replication_factor: int = 0
    assignment: list[list[str]] = field(default_factory=list)
    balance_metric: str | None = None


@dataclass(frozen=True)
class AddPartitions(Command):
    """The next slice of a resource being created: partitions ``start`` onwards (``start`` must
    be how many it has), placed like ``CreateResource``'s."""

    TYPE: ClassVar[str] = "AddPartitions"
    name: str = ""
    start: int = 0
    assignment: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class UpdateResource(Command):
    """Change a resource: its ``replication_factor`` (more: the rebalancer adds the missing
    replicas two-phase; fewer: the extra replicas are dropped at once, followers first, from the
    end of the replica list), or its ``balance_metric`` (``""`` clears it). None: unchanged."""

    TYPE: ClassVar[str] = "UpdateResource"
    name: str = ""
    replication_factor: int | None = None
    balance_metric: str | None = None


@dataclass(frozen=True)
class DeleteResource(Command):
    """Delete a resource and all its partitions."""

    TYPE: ClassVar[str] = "DeleteResource"
    name: str = ""


@dataclass(frozen=True)
class MovePartition(Command):
    """Move one replica of a partition from one node to another (the new replica takes the old
    one's place, leadership included)."""

    TYPE: ClassVar[str] = "MovePartition"
    resource: str = ""
    partition: int = -1
    from_node: str = ""
    to_node: str = ""


@dataclass(frozen=True)
class StartMove(Command):
    """Phase one of a two-phase move, decided by the leader's rebalancer: ``to_node`` starts
    copying ``resource``/``partition`` (it replaces ``from_node`` later, or adds a replica when
    ``from_node`` is None). Refused under maintenance, when the partition already has a move, when
    ``to_node`` cannot take a replica (not up, not active, already a replica), beyond the throttles
    (``throttled``), or with a ``term`` below the highest seen (``stale_term``)."""

    TYPE: ClassVar[str] = "StartMove"
    resource: str = ""
    partition: int = -1
    from_node: str | None = None
    to_node: str = ""
    reason: str = ""
    term: int = 0


@dataclass(frozen=True)
class ReportCaughtUp(Command):
    """Phase two: the data node ``node_id`` (at node ``epoch``) reports that its new replica of
    ``resource``/``partition`` has caught up, as of the partition's ``partition_epoch`` it was
    told. The move completes: the new replica takes the old one's place, leadership follows, the
    partition's epoch grows. A report from an older node epoch, or about an older partition epoch,
    is refused as ``stale_epoch``."""

    TYPE: ClassVar[str] = "ReportCaughtUp"
    node_id: str = ""
    epoch: int = 0
    resource: str = ""
    partition: int = -1
    partition_epoch: int = 0


@dataclass(frozen=True)
class CancelMove(Command):
    """Abandon a partition's pending move (its target went away, an operator cancelled it): the
    catching-up replica is dropped and the partition's epoch grows."""

    TYPE: ClassVar[str] = "CancelMove"
    resource: str = ""
    partition: int = -1
    reason: str = ""
    term: int = 0


@dataclass(frozen=True)
class SetPartitionLeader(Command):
    """Hand a partition's leadership to ``leader``, one of its replicas on a node that is up; the
    epoch grows. Refused while the partition has a pending move."""

    TYPE: ClassVar[str] = "SetPartitionLeader"
    resource: str = ""
    partition: int = -1
    leader: str = ""
    reason: str = ""
    term: int = 0


@dataclass(frozen=True)
class ConfigureRebalance(Command):
    """Change the rebalance throttles and the re-replication delay (fields left None unchanged),
    and enter (``maintenance=True``, with a ``reason``) or leave maintenance mode."""

    TYPE: ClassVar[str] = "ConfigureRebalance"
    max_moves_per_node: int | None = None
    max_moves: int | None = None
    rereplicate_after: float | None = None
    maintenance: bool | None = None
    reason: str = ""


@dataclass(frozen=True)
class StartRebalance(Command):
    """Start a rebalance run (``run_id`` names it): until it ends, the leader also makes balance
    moves and leadership changes. Refused while another run is going or under maintenance."""

    TYPE: ClassVar[str] = "StartRebalance"
    run_id: str = ""


@dataclass(frozen=True)
class EndRebalance(Command):
    """End run ``run_id`` with ``outcome`` ``done`` (nothing left to move) or ``cancelled``."""

    TYPE: ClassVar[str] = "EndRebalance"
    run_id: str = ""
    outcome: str = "done"
    term: int = 0


@dataclass(frozen=True)
class Barrier(Command):
    """Change nothing; its result is the revision at the point it was applied. Used for
    linearizable reads through the log."""

    TYPE: ClassVar[str] = "Barrier"


@dataclass(frozen=True)
class CreateToken(Command):
    """Add an API token: its ``name``, ``role``, the ``node`` a node token speaks for, the
    SHA-256 ``hash`` of its secret (the secret itself never enters the log) and when it
    expires (seconds since the epoch, leader time; None: never)."""

    TYPE: ClassVar[str] = "CreateToken"
    name: str = ""
    role: str = ""
    hash: str = ""
    node: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class RevokeToken(Command):
    """Delete the API token ``name``: every member refuses it once this is applied."""

    TYPE: ClassVar[str] = "RevokeToken"
    name: str = ""


@dataclass(frozen=True)
class BootstrapAdmin(Command):
    """Write the first admin token (digest ``hash``), the one the members were started with;
    refused once the cluster is bootstrapped."""

    TYPE: ClassVar[str] = "BootstrapAdmin"
    hash: str = ""


@dataclass(frozen=True)
class SetClusterId(Command):
    """Name the cluster (its first leader draws ``cluster_id``); refused once it has a name."""

    TYPE: ClassVar[str] = "SetClusterId"
    cluster_id: str = ""


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.TYPE: cls
    for cls in (
        RegisterNode,
        RemoveNode,
        SetNodeState,
        StartNodeSession,
        SetNodeLiveness,
        SetNodesLiveness,
        CreateResource,
        AddPartitions,
        UpdateResource,
        DeleteResource,
        MovePartition,
        StartMove,
        ReportCaughtUp,
        CancelMove,
        SetPartitionLeader,
        ConfigureRebalance,
        StartRebalance,
        EndRebalance,
        CreateToken,
        RevokeToken,
        BootstrapAdmin,
        SetClusterId,
        Barrier,
    )
}


@dataclass(frozen=True)
class DecodeError:
    """A command that could not be decoded; ``apply`` turns it into a rejection."""

    message: str
    request_id: str = ""


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type[Command]) -> tuple[str, ...]:
    """A command class's field names, in order, remembered (``dataclasses.fields`` was 10% of
    decoding and applying a small command)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def to_dict(command: Command) -> dict[str, Any]:
    """The command as a plain dict with its ``type`` (an empty fingerprint and a missing audit
    are left out).
    Fields hold JSON values only, so the dict shares them with the command instead of copying
    them (``dataclasses.asdict`` took 8% of a leader's time copying 1,000-partition slices)."""
    data = {name: getattr(command, name) for name in field_names(type(command))}
    if not data["fingerprint"]:
        del data["fingerprint"]
    if data["audit"] is None:
        del data["audit"]
    data["type"] = command.TYPE
    return data


def encode(command: Command) -> bytes:
    """Canonical JSON bytes of ``command``."""
    return json.dumps(to_dict(command), sort_keys=True, separators=(",", ":")).encode()


def from_dict(data: Any) -> Command | DecodeError:
    """Build a command from its dict form; wrong shapes come back as :class:`DecodeError`."""
    if not isinstance(data, dict):
        return DecodeError("command is not an object")
    request_id = data.get("request_id", "")
    if not isinstance(request_id, str):
        return DecodeError("request_id must be a string")
    cls = COMMAND_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return DecodeError(f"unknown command type {data.get('type')!r}", request_id)
    unknown = sorted(set(data).difference(field_names(cls), ("type",)))
    if unknown:
        return DecodeError(f"unknown fields for {cls.TYPE}: {', '.join(unknown)}", request_id)
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if not isinstance(kwargs.get("time", 0.0), int | float):
        return DecodeError("time must be a number", request_id)
    if not isinstance(kwargs.get("fingerprint", ""), str):
        return DecodeError("fingerprint must be a string", request_id)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # defensive: dataclass construction with bad arguments
        return DecodeError(f"malformed {cls.TYPE}: {exc}", request_id)


def decode(raw: bytes | str) -> Command | DecodeError:
    """Parse wire bytes into a command, or a :class:`DecodeError` (never raises)."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as exc:
        return DecodeError(f"command is not valid JSON: {exc}")
    return from_dict(data)
