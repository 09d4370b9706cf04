"""What each route answers on success, for the OpenAPI document.

The handlers build their JSON themselves (heavy reads are encoded off the loop and sent as
bytes), so these models describe answers without checking them at run time; the API fuzz test
(``tests/security/test_fuzz.py``) checks every answer it gets against them. Every model allows
fields it does not name, so a client written against this document keeps working when an answer
grows a field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NodeStatus = Literal["up", "suspect", "down"]
NodeAdmin = Literal["active", "cordoned", "draining"]


class Answer(BaseModel):
    """Base of every answer: further fields may appear."""

    model_config = ConfigDict(extra="allow")


class Revisioned(Answer):
    revision: int = Field(description="the state revision the answer reflects (or a write "
                                      "was applied at)")


# --- parts ------------------------------------------------------------------------------------


class NodeRecord(Answer):
    id: str
    address: str
    zone: str
    capacity: float
    status: NodeStatus
    status_since: float
    admin: NodeAdmin
    admin_reason: str
    epoch: int = Field(description="the node's session number; reports must carry it")
    tags: dict[str, str]
    metrics: dict[str, float]
    registered_at: float
    updated_at: float


class HeldReplica(Answer):
    resource: str
    partition: int
    leader: bool
    epoch: int
    catching_up: bool = Field(description="the target of a pending move, still copying")


class NodeDetail(NodeRecord):
    replicas: list[HeldReplica]
    moves: int = Field(description="pending moves the node takes part in")


class ResourceSummary(Answer):
    name: str
    partitions: int
    replication_factor: int
    created_at: float
    balance_metric: str | None
    creating: bool = Field(description="slices of the resource are still being added")
    size: int


class ResourceBrief(Answer):
    name: str
    partitions: int
    replication_factor: int
    balance_metric: str | None


class PartitionChange(Answer):
    resource: str
    partition: int
    replicas: list[str]
    leader: str | None
    epoch: int = Field(description="fencing epoch: grows with every change of replicas or leader")
    adding: list[str] = Field(description="the node catching up for a pending move, if any")
    reason: str


class PendingMove(Answer):
    resource: str
    partition: int
    from_node: str | None
    to_node: str
    reason: str
    started_at: float
    term: int


class RoutedPartition(Answer):
    partition: int
    replicas: list[str]
    leader: str | None
    epoch: int
    adding: list[str]


class RoutedResource(Answer):
    replication_factor: int
    partitions: list[RoutedPartition]


class MemberView(Answer):
    member_id: str
    role: str
    term: int
    leader_id: str | None
    commit_index: int
    applied_index: int
    revision: int
    ready: bool
    has_quorum: bool
    loaded: bool
    storage_failure: str | None
    rejoining: bool
    listening: bool


class MemberAddresses(Answer):
    api_url: str
    raft_address: str


class MemberInfo(MemberAddresses):
    id: str
    leader: bool = Field(description="the member the answering one believes leads")


class MemberList(Revisioned):
    member: str = Field(description="the member that answered")
    leader: str | None = Field(description="the member it believes leads (None: none known)")
    members: list[MemberInfo]


class MembershipChanged(MemberList):
    changed: bool = Field(description="false when the membership already was as asked (a "
                                      "retried request)")


class UnhealthyPartition(Answer):
    resource: str
    partition: int
    health: str


class Health(Answer):
    nodes: dict[str, int] = Field(description="nodes by liveness status")
    partitions: dict[str, int] = Field(description="partitions by health")
    status: str = Field(description="the worst partition health present")
    unhealthy: list[UnhealthyPartition] = Field(description="the first 100 unhealthy ones")


class Event(Answer):
    type: str = Field(description="past-tense name, e.g. NodeRegistered, PartitionChanged")
    revision: int
    data: dict[str, Any]


# --- answers ----------------------------------------------------------------------------------


class Live(Answer):
    status: Literal["ok"]


class Ready(Answer):
    ready: bool
    member: MemberView


class LoopLag(Answer):
    interval: float = Field(description="seconds between the monitor's timers")
    noted_over: float = Field(description="samples over this lag (seconds) are kept")
    worst: float = Field(description="the worst lag since start, seconds")
    stalls: int = Field(description="lags over 100 ms (each logged with the steps that ran)")
    kept: int = Field(description="at most this many samples are kept, the oldest go first")
    samples: list[tuple[float, float, str | None]] = Field(
        description="[time (seconds since the epoch), lag (seconds), the longest steps that ran "
                    "on the loop meanwhile, longest first (\"raft tick 25 ms, apply X 20 ms\"; "
                    "a step may contain the next; null: none over 5 ms)]")


class Status(Revisioned):
    member: MemberView
    leader: str | None
    members: dict[str, MemberAddresses]
    pid: int
    health: Health
    bootstrapped: bool = Field(description="the first admin token is in the log")
    cluster_id: str | None = Field(None, description="the cluster's id (None until it is named)")
    digest: str | None = Field(None, description="with digest=true: the applied state's digest")
    loop_lag: LoopLag | None = Field(None, description="with lag=true: the event loop's lag")


class RequestStatus(Revisioned):
    request_id: str
    applied: bool
    retention: float
    applied_revision: int | None = None
    applied_at: float | None = None


class NodeList(Revisioned):
    nodes: list[NodeRecord]


class NodeShown(Revisioned):
    node: NodeDetail


class NodeWritten(Revisioned):
    node: NodeRecord


class BatchItem(Answer):
    ok: bool = Field(description="applied (else code and message say why not)")
    revision: int | None = Field(None, description="the revision it was applied at")
    node: NodeRecord | None = None
    code: str | None = Field(None, description="the error code, as a single request's")
    message: str | None = None


class BatchWritten(Revisioned):
    results: list[BatchItem] = Field(description="one per item, in the request's order")


class NodeRemovedAnswer(Revisioned):
    node_id: str
    moved: int = Field(description="replicas re-homed by a forced removal")


class SessionStarted(Revisioned):
    node: NodeRecord
    epoch: int


class HeartbeatAnswer(Revisioned):
    node_id: str
    status: NodeStatus
    epoch: int


class ResourceList(Revisioned):
    resources: list[ResourceSummary]


class ResourceWritten(Revisioned):
    resource: ResourceBrief


class ResourceDeletedAnswer(Revisioned):
    name: str


class PartitionWritten(Revisioned):
    partition: PartitionChange
    move: PendingMove | None = Field(None, description="the move started, completed or "
                                                        "cancelled")


class RebalanceProgress(Revisioned):
    settings: dict[str, float]
    maintenance: dict[str, Any] | None
    run: dict[str, Any] | None
    last_run: dict[str, Any] | None
    pending: list[dict[str, Any]]
    remaining: int
    eta_seconds: float | None


class RebalanceStartedAnswer(Revisioned):
    run: dict[str, Any]
    progress: RebalanceProgress


class RebalanceEndedAnswer(Revisioned):
    run: dict[str, Any]
    moves_cancelled: int


class RebalanceConfiguredAnswer(Revisioned):
    rebalance: dict[str, Any]


class Watched(Revisioned):
    since: int
    events: list[Event]


class Routing(Revisioned):
    resources: dict[str, RoutedResource]
    addresses: dict[str, str] = Field(description="node -> address, for the nodes named")


class RebalancePlan(Revisioned):
    dry_run: bool
    plan: dict[str, Any]
    throttle: dict[str, int]
    waves: int | None
    mean_move_seconds: float | None
    eta_seconds: float | None


class Explanation(Revisioned):
    resource: str
    partition: int
    replication_factor: int
    leader: str | None
    epoch: int
    replicas: list[dict[str, Any]] = Field(description="each replica with why it is where it is")
    balance: dict[str, Any]


class RoutingDiff(Revisioned):
    from_: int = Field(alias="from")
    to: int
    changes: list[dict[str, Any]]


class TokenRecord(Answer):
    name: str
    role: Literal["admin", "operator", "node", "reader"]
    node: str | None = Field(description="the node a node token speaks for")
    created_at: float
    expires_at: float | None = Field(description="when it is refused (None: never)")


class TokenShown(TokenRecord):
    expired: bool


class TokenCreatedAnswer(Revisioned):
    token: TokenRecord
    secret: str | None = Field(description="the token itself: shown this once, kept nowhere "
                                           "(absent from the answer to a retried request)")
    applied_on: list[str] = Field(description="members known to accept the token now")
    unconfirmed: list[str] = Field(description="members that did not confirm in time")


class TokenList(Revisioned):
    tokens: list[TokenShown]


class TokenRevokedAnswer(Revisioned):
    token: TokenRecord
    applied_on: list[str] = Field(description="members known to refuse the token now")
    unconfirmed: list[str] = Field(description="members that did not confirm in time")


class WhoAmI(Answer):
    name: str
    role: str
    node: str | None


class AuditEntry(Answer):
    revision: int
    command: str | None = None
    request_id: str | None = None
    time: float | None = None
    principal: str | None = Field(None, description="the token's name, or system")
    role: str | None = None
    source: str | None = Field(None, description="the address the request came from")
    via: str | None = Field(None, description="the member that forwarded it, if one did")
    client: str | None = Field(None, description="the client's address, as that member said")
    changes: list[str] = Field(description="the kinds of change made (event types)")


class AuditTrail(Revisioned):
    since: int
    entries: list[AuditEntry]
