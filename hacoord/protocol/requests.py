"""Request bodies of the HTTP API (pydantic).

Strict: unknown fields are refused, and so are values of another JSON type (``true`` or ``"7"``
for a number of partitions); every size is bounded here, at the edge, so input that a limit
refuses never reaches the Raft log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from hacoord.protocol.formats import ADDRESS, API_URL, ID, MAX_CAPACITY, MIN_CAPACITY

MAX_TAGS = 64          # tags or metrics per node
MAX_TAG_VALUE = 256    # characters of a tag value
MAX_EPOCH = 2**53 - 1  # the largest integer every JSON reader holds exactly


def _integral(value: Any) -> Any:
    """JSON Schema counts 7.0 as an integer (the document says "integer"); a float with a
    fraction, a bool or a string stays refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_INTEGRAL = BeforeValidator(_integral)  # after the bounds: pydantic then documents them
Epoch = Annotated[int, Field(ge=1, le=MAX_EPOCH), _INTEGRAL]
Replicas = Annotated[int, Field(ge=1, le=15), _INTEGRAL]
Partitions = Annotated[int, Field(ge=1, le=100_000), _INTEGRAL]
PartitionIndex = Annotated[int, Field(ge=0, le=10_000_000), _INTEGRAL]
Moves = Annotated[int, Field(ge=1, le=10_000), _INTEGRAL]
Key = Annotated[str, StringConstraints(pattern=ID)]
TagValue = Annotated[str, StringConstraints(max_length=MAX_TAG_VALUE)]
Number = Annotated[float, Field(allow_inf_nan=False, ge=-1e18, le=1e18)]
#: A map's keys are ids: pydantic says so with ``patternProperties``, which alone would let
#: other keys through in the OpenAPI document; ``additionalProperties: false`` closes it.
_IDS_ONLY = {"additionalProperties": False}
Tags = Annotated[dict[Key, TagValue], Field(max_length=MAX_TAGS, json_schema_extra=_IDS_ONLY)]
TagChanges = Annotated[dict[Key, TagValue | None],
                       Field(max_length=MAX_TAGS, json_schema_extra=_IDS_ONLY)]
Metrics = Annotated[dict[Key, Number | None], Field(max_length=MAX_TAGS, json_schema_extra=_IDS_ONLY)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NodeCreate(_Body):
    """Register a data node."""

    id: str = Field(pattern=ID)
    address: str = Field(min_length=3, max_length=260, pattern=ADDRESS, description="host:port")
    zone: str = Field("default", pattern=ID)
    capacity: float = Field(1.0, ge=MIN_CAPACITY, le=MAX_CAPACITY, allow_inf_nan=False)
    tags: Tags = Field(default_factory=dict)


MAX_BATCH = 1000  # items of one batch request


class NodeBatch(_Body):
    """Register many data nodes in one request (bulk work): one result per node."""

    nodes: list[NodeCreate] = Field(min_length=1, max_length=MAX_BATCH)


class NodeUpdate(_Body):
    """Change a node's status and metadata; omitted fields stay as they are, a ``null`` tag or
    metric value deletes it."""

    status: str | None = Field(None, pattern="^(up|down)$")
    admin: str | None = Field(None, pattern="^(active|cordoned|draining)$",
                              description="cordoned: no new replicas; draining: move all off")
    admin_reason: str | None = Field(None, max_length=256)
    address: str | None = Field(None, min_length=3, max_length=260, pattern=ADDRESS)
    zone: str | None = Field(None, pattern=ID)
    capacity: float | None = Field(None, ge=MIN_CAPACITY, le=MAX_CAPACITY, allow_inf_nan=False)
    tags: TagChanges | None = None
    metrics: Metrics | None = None
    expect_tags: TagChanges | None = Field(
        None, description="compare-and-set: apply only if these tags have these values "
                          "(null: absent); else 409 precondition_failed")


class SessionStart(_Body):
    """Start a node's new session; an ``address`` given replaces the registered one."""

    address: str | None = Field(None, min_length=3, max_length=260, pattern=ADDRESS,
                                description="host:port")


class NodeHeartbeat(_Body):
    """A node is alive, in the session of ``epoch``."""

    epoch: Epoch = Field(description="the node epoch its session was given")


class ResourceCreate(_Body):
    """Create a resource; the leader places its replicas."""

    name: str = Field(pattern=ID)
    partitions: Partitions
    replicas: Replicas
    balance_metric: str | None = Field(None, pattern=ID, description=(
        "node metric to balance on instead of replica count (e.g. disk_bytes)"))


class ResourceUpdate(_Body):
    """Change a resource's replication factor (more: added two-phase by the rebalancer; fewer:
    dropped at once) or balance metric (empty string: back to replica count)."""

    replicas: Replicas | None = None
    balance_metric: str | None = Field(None, pattern=r"^$|" + ID)


class PartitionMove(_Body):
    """Move one replica of a partition: at once (the new replica replaces the old one without a
    catch-up), or with ``two_phase`` as the rebalancer does (``to`` catches up first and reports;
    only then does ``from`` go). Two-phase moves count against the throttles."""

    from_node: str = Field(alias="from", pattern=ID)
    to_node: str = Field(alias="to", pattern=ID)
    two_phase: bool = False


class NodeMetrics(_Body):
    """A data node reports its metrics (merged into the node's; null deletes one) in the session
    of ``epoch``."""

    epoch: Epoch = Field(description="the node epoch its session was given")
    metrics: Metrics


class CaughtUp(_Body):
    """A data node's new replica of ``resource``/``partition`` has caught up (phase two of a move),
    as of the partition epoch it was told."""

    epoch: Epoch = Field(description="the node epoch its session was given")
    resource: str = Field(pattern=ID)
    partition: PartitionIndex
    partition_epoch: Epoch


class PartitionLeader(_Body):
    """Hand the partition's leadership to one of its replicas."""

    node: str = Field(pattern=ID)


class RebalanceSettings(_Body):
    """Rebalance throttles, re-replication delay and maintenance mode; omitted fields unchanged."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        # Entering maintenance needs a reason (some text that is not all blanks).
        "if": {"properties": {"maintenance": {"const": True}}, "required": ["maintenance"]},
        "then": {"properties": {"reason": {"pattern": r"\S"}}, "required": ["reason"]}})

    max_moves_per_node: Moves | None = None
    max_moves: Moves | None = None
    rereplicate_after: float | None = Field(None, ge=0, le=1e7, allow_inf_nan=False,
                                            description="seconds")
    maintenance: bool | None = Field(None, description="true freezes rebalancing (reason needed)")
    reason: str = Field("", max_length=256)


class MemberAdd(_Body):
    """Add a coordinator member: start it first, with the current members as its peers and an
    empty data directory; it catches up from the leader once added."""

    id: str = Field(pattern=ID, description="the new member's id")
    raft_address: str = Field(min_length=3, max_length=260, pattern=ADDRESS,
                              description="host:port of its Raft peer port")
    api_url: str = Field(min_length=10, max_length=300, pattern=API_URL,
                         description="the URL clients and members reach its API at")


#: The longest a token may live (ten years, in seconds).
MAX_TOKEN_LIFETIME = 10 * 365 * 86_400.0


class _TokenCreate(_Body):
    name: str = Field(pattern=ID)
    expires_in: float | None = Field(None, ge=1, le=MAX_TOKEN_LIFETIME, allow_inf_nan=False,
                                     description="seconds until the token is refused")
    token: str | None = Field(None, pattern=r"^hc_[A-Za-z0-9_-]{43}$",
                              description="the secret: hc_ and 43 URL-safe characters")


class PersonTokenCreate(_TokenCreate):
    """Create an admin, operator or reader token. ``token`` lets the caller choose the secret
    (the client library does, so that a retried request cannot lose it); otherwise the leader
    draws one."""

    role: Literal["admin", "operator", "reader"]
    node: None = Field(None, description="only node tokens are bound to a node")


class NodeTokenCreate(_TokenCreate):
    """Create a node token, bound to the node it speaks for."""

    role: Literal["node"]
    node: str = Field(pattern=ID, description="the node this token speaks for")


TokenCreate = Annotated[PersonTokenCreate | NodeTokenCreate, Field(discriminator="role")]
