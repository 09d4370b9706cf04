"""Request bodies of the HTTP API (pydantic).

Strict: unknown fields are refused, and so are values of another JSON type (``true`` or ``"7"``
for a number of partitions); every size is bounded here, at the edge, so input that a limit
refuses never reaches the Raft log.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
MAX_TAGS = 64          # tags or metrics per node
MAX_TAG_VALUE = 256    # characters of a tag value

Key = Annotated[str, StringConstraints(pattern=ID)]
TagValue = Annotated[str, StringConstraints(max_length=MAX_TAG_VALUE)]
Number = Annotated[float, Field(allow_inf_nan=False, ge=-1e18, le=1e18)]
Tags = Annotated[dict[Key, TagValue], Field(max_length=MAX_TAGS)]
TagChanges = Annotated[dict[Key, TagValue | None], Field(max_length=MAX_TAGS)]
Metrics = Annotated[dict[Key, Number | None], Field(max_length=MAX_TAGS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NodeCreate(_Body):
    """Register a data node."""

    id: str = Field(pattern=ID)
    address: str = Field(min_length=3, max_length=260, description="host:port")
    zone: str = Field("default", pattern=ID)
    capacity: float = Field(1.0, gt=0, le=1e6, allow_inf_nan=False)
    tags: Tags = Field(default_factory=dict)


class NodeUpdate(_Body):
    """Change a node's status and metadata; omitted fields stay as they are, a ``null`` tag or
    metric value deletes it."""

    status: str | None = Field(None, pattern="^(up|down)$")
    admin: str | None = Field(None, pattern="^(active|cordoned|draining)$",
                              description="cordoned: no new replicas; draining: move all off")
    admin_reason: str | None = Field(None, max_length=256)
    address: str | None = Field(None, min_length=3, max_length=260)
    zone: str | None = Field(None, pattern=ID)
    capacity: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False)
    tags: TagChanges | None = None
    metrics: Metrics | None = None
    expect_tags: TagChanges | None = Field(
        None, description="compare-and-set: apply only if these tags have these values "
                          "(null: absent); else 409 precondition_failed")


class NodeSession(_Body):
    """Start a node's new session; an ``address`` given replaces the registered one."""

    address: str | None = Field(None, min_length=3, max_length=260, description="host:port")


class NodeHeartbeat(_Body):
    """A node is alive, in the session of ``epoch``."""

    epoch: int = Field(ge=1, le=2**62, description="the node epoch its session was given")


class ResourceCreate(_Body):
    """Create a resource; the leader places its replicas."""

    name: str = Field(pattern=ID)
    partitions: int = Field(ge=1, le=100_000)
    replicas: int = Field(ge=1, le=15)
    balance_metric: str | None = Field(None, pattern=ID, description=(
        "node metric to balance on instead of replica count (e.g. disk_bytes)"))


class ResourceUpdate(_Body):
    """Change a resource's replication factor (more: added two-phase by the rebalancer; fewer:
    dropped at once) or balance metric (empty string: back to replica count)."""

    replicas: int | None = Field(None, ge=1, le=15)
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

    epoch: int = Field(ge=1, le=2**62, description="the node epoch its session was given")
    metrics: Metrics


class CaughtUp(_Body):
    """A data node's new replica of ``resource``/``partition`` has caught up (phase two of a move),
    as of the partition epoch it was told."""

    epoch: int = Field(ge=1, le=2**62, description="the node epoch its session was given")
    resource: str = Field(pattern=ID)
    partition: int = Field(ge=0, le=10_000_000)
    partition_epoch: int = Field(ge=1, le=2**62)


class PartitionLeader(_Body):
    """Hand the partition's leadership to one of its replicas."""

    node: str = Field(pattern=ID)


class RebalanceSettings(_Body):
    """Rebalance throttles, re-replication delay and maintenance mode; omitted fields unchanged."""

    max_moves_per_node: int | None = Field(None, ge=1, le=10_000)
    max_moves: int | None = Field(None, ge=1, le=10_000)
    rereplicate_after: float | None = Field(None, ge=0, le=1e7, allow_inf_nan=False,
                                            description="seconds")
    maintenance: bool | None = Field(None, description="true freezes rebalancing (reason needed)")
    reason: str = Field("", max_length=256)
