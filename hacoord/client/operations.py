"""The API calls, written once: each function builds an :class:`~hacoord.client.calls.Op` (the
request and how its answer is read) and does no I/O. :class:`~hacoord.client.Client` runs them
and returns the result; :class:`~hacoord.client.AsyncClient` runs them as coroutines. The
docstrings are the methods'."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from hacoord.client.calls import Call, FileOp, Op, segment
from hacoord.client.errors import ApiError, error_for
from hacoord.client.models import (
    AuditEntry,
    Heartbeat,
    MemberInfo,
    MembershipChange,
    NewToken,
    NodeInfo,
    NodeSession,
    PartitionRoute,
    ResourceInfo,
    RoutingTable,
    TokenInfo,
    WatchEvent,
    WriteResult,
)
from hacoord.protocol import ErrorCode
from hacoord.protocol.tokens import new_token


def read(path: str, consistent: bool, params: dict[str, Any] | None = None) -> Call:
    """A read; ``consistent`` sends it through the leader."""
    params = dict(params or {})
    if consistent:
        params["consistent"] = "true"
    return Call("GET", path, params=params or None, to_leader=consistent)


def raw(data: dict[str, Any]) -> dict[str, Any]:
    """The answer as it came."""
    return data


def write(method: str, path: str, body: Any, request_id: str | None,
          params: dict[str, Any] | None = None) -> Op[WriteResult]:
    """A write, with its request id (generated if not given: the same on every attempt)."""
    call = Call(method, path, params=params, body=body, to_leader=True,
                request_id=request_id or uuid.uuid4().hex)

    def parse(data: dict[str, Any]) -> WriteResult:
        node = NodeInfo.from_api(data["node"]) if "node" in data else None
        resource = ResourceInfo.from_api(data["resource"]) if "resource" in data else None
        part = data.get("partition")
        route = PartitionRoute.from_api(part["resource"], part) if part else None
        return WriteResult(revision=int(data["revision"]), request_id=call.request_id or "",
                           data=data, node=node, resource=resource, partition=route)

    return Op(call, parse)


def written_data(op: Op[WriteResult], key: str | None = None) -> Op[dict[str, Any]]:
    """``op``, answering the write's data (or one key of it)."""
    return Op(op.call, lambda data: op.parse(data).data if key is None else op.parse(data).data[key])


# --- status ----------------------------------------------------------------------------------

def request_status(request_id: str, consistent: bool = True) -> Op[int | None]:
    """The revision the write with ``request_id`` was applied at, or None if it was not
    (or so long ago that the cluster forgot: ids are kept five minutes, at most 50,000). Use
    it after a write ended in :class:`UnavailableError` to learn whether it landed; with
    ``consistent`` (the default) the answer covers every write committed before the call."""
    return Op(read(f"/v1/requests/{segment(request_id)}", consistent),
              lambda data: int(data["applied_revision"]) if data["applied"] else None)


# --- nodes -----------------------------------------------------------------------------------

def node_add(id: str, address: str, *, zone: str | None = None, capacity: float | None = None,
             tags: Mapping[str, str] | None = None, request_id: str | None = None) -> Op[WriteResult]:
    """Register data node ``id`` listening on ``address`` (``host:port``). ``zone`` and
    ``capacity`` default on the server (``default``, 1.0). Raises :class:`Conflict` if the id
    is taken, :class:`InvalidArgument` for malformed fields."""
    body: dict[str, Any] = {"id": id, "address": address}
    if zone is not None:
        body["zone"] = zone
    if capacity is not None:
        body["capacity"] = capacity
    if tags:
        body["tags"] = dict(tags)
    return write("POST", "/v1/nodes", body, request_id)


def node_add_batch(nodes: Iterable[Mapping[str, Any]], *,
                   request_id: str | None = None) -> Op[list[NodeInfo | ApiError]]:
    """Register many nodes in one request (at most 1,000; each a mapping of ``node_add``'s
    arguments: ``id``, ``address`` and optionally ``zone``, ``capacity``, ``tags``). Returns one
    result per node, in order: its :class:`NodeInfo`, or the :class:`ApiError` its own request
    would have raised (returned, not raised: the others are registered). Retrying with the same
    ``request_id`` registers each node once."""
    body = {"nodes": [dict(n) for n in nodes]}
    op = write("POST", "/v1/batch/nodes", body, request_id)

    def parse(data: dict[str, Any]) -> list[NodeInfo | ApiError]:
        return [NodeInfo.from_api(item["node"]) if item["ok"] and item.get("node")
                else item_error(item) for item in data["results"]]

    return Op(op.call, parse)


def item_error(item: Mapping[str, Any]) -> ApiError:
    """The error one item of a batch was refused with, typed as its own request's would be."""
    if item["ok"]:  # a retried batch: registered then, removed since
        return error_for("not_found", "registered by this batch, but removed since", 404)
    code = str(item["code"])
    known = ErrorCode.lookup(code)
    return error_for(code, str(item["message"]), known.status if known is not None else 400)


def node_remove(id: str, force: bool = False, *, request_id: str | None = None) -> Op[WriteResult]:
    """Remove node ``id``. A node holding replicas is refused (:class:`Conflict`,
    ``node_not_empty``) unless ``force``, which first re-places its replicas elsewhere."""
    params = {"force": "true"} if force else None
    return write("DELETE", f"/v1/nodes/{segment(id)}", None, request_id, params=params)


def node_list(consistent: bool = False) -> Op[list[NodeInfo]]:
    """All registered nodes, sorted by id. ``consistent``: linearizable (the member answers
    once the leader confirmed a read index); otherwise from the member's applied state."""
    return Op(read("/v1/nodes", consistent), lambda data: [NodeInfo.from_api(n) for n in data["nodes"]])


def node_show(id: str, consistent: bool = False) -> Op[NodeInfo]:
    """Node ``id`` with the replicas it holds; :class:`NotFound` if unknown."""
    return Op(read(f"/v1/nodes/{segment(id)}", consistent), lambda data: NodeInfo.from_api(data["node"]))


def node_set_state(id: str, status: str | None = None, address: str | None = None,
                   zone: str | None = None, capacity: float | None = None,
                   tags: Mapping[str, str | None] | None = None,
                   metrics: Mapping[str, float | None] | None = None, *,
                   expect_tags: Mapping[str, str | None] | None = None,
                   admin: str | None = None, admin_reason: str | None = None,
                   request_id: str | None = None) -> Op[WriteResult]:
    """Change node ``id``: ``status`` (``up``/``down``; partition leadership follows), address,
    zone, capacity. ``tags`` and ``metrics`` are merged into the node's; a ``None`` value deletes
    that key. Arguments left ``None`` are unchanged. With ``expect_tags`` the change is a
    compare-and-set: :class:`Conflict` with code ``precondition_failed`` unless each named tag
    has the given value (``None``: absent). ``admin`` is ``active``, ``cordoned`` (no new
    replicas) or ``draining`` (everything moves off); ``admin_reason`` records why."""
    body: dict[str, Any] = {}
    for key, value in (("status", status), ("address", address), ("zone", zone),
                       ("capacity", capacity), ("tags", tags), ("metrics", metrics),
                       ("expect_tags", expect_tags), ("admin", admin),
                       ("admin_reason", admin_reason)):
        if value is not None:
            body[key] = dict(value) if isinstance(value, Mapping) else value
    return write("PATCH", f"/v1/nodes/{segment(id)}", body, request_id)


def node_start_session(id: str, address: str | None = None, *,
                       request_id: str | None = None) -> Op[NodeSession]:
    """Start a new session of node ``id`` (call it when the node process starts): its epoch
    grows by one, it is marked up, and ``address`` (if given) replaces the registered one.
    Heartbeats and reports must carry the returned ``epoch``; older epochs are refused."""
    body = {"address": address} if address is not None else None
    call = Call("POST", f"/v1/nodes/{segment(id)}/session", body=body, to_leader=True,
                request_id=request_id or uuid.uuid4().hex)
    return Op(call, lambda data: NodeSession.from_api(data, call.request_id or ""))


def node_heartbeat(id: str, epoch: int) -> Op[Heartbeat]:
    """Tell the leader node ``id`` is alive in the session of ``epoch`` (any member forwards
    it). Not logged; a suspect or down node is judged up again before the answer. Raises
    :class:`StaleEpoch` if the node started a newer session, :class:`NotFound` if unknown."""
    call = Call("POST", f"/v1/nodes/{segment(id)}/heartbeat", body={"epoch": epoch}, to_leader=True)
    return Op(call, Heartbeat.from_api)


def node_report_metrics(id: str, epoch: int, metrics: Mapping[str, float | None], *,
                        request_id: str | None = None) -> Op[WriteResult]:
    """Node ``id`` (in the session of ``epoch``) reports metrics, merged into its record (a
    ``None`` value deletes one). A resource may balance on such a metric. Raises
    :class:`StaleEpoch` if the node started a newer session."""
    body = {"epoch": epoch, "metrics": dict(metrics)}
    return write("POST", f"/v1/nodes/{segment(id)}/metrics", body, request_id)


def node_caught_up(id: str, epoch: int, resource: str, partition: int, partition_epoch: int,
                   *, request_id: str | None = None) -> Op[WriteResult]:
    """Node ``id`` (session ``epoch``) reports its new replica of ``resource``/``partition``
    caught up, as of ``partition_epoch`` (the epoch of the route that named it ``adding``). The
    move completes; the result's ``partition`` is the new route. :class:`StaleEpoch` for an
    older session or partition epoch; :class:`Conflict` (``no_move``) if no move goes there."""
    body = {"epoch": epoch, "resource": resource, "partition": partition,
            "partition_epoch": partition_epoch}
    return write("POST", f"/v1/nodes/{segment(id)}/caught-up", body, request_id)


# --- resources and routing -------------------------------------------------------------------

def resource_create(name: str, partitions: int, replicas: int, *, balance_metric: str | None = None,
                    request_id: str | None = None) -> Op[WriteResult]:
    """Create resource ``name`` with ``partitions`` partitions of ``replicas`` copies each,
    placed by the leader. :class:`Conflict` (``not_enough_nodes``) if fewer nodes than copies.
    ``balance_metric`` names a node metric (reported by the data nodes, e.g. ``disk_bytes``)
    that rebalancing evens out for this resource instead of replica counts."""
    body: dict[str, Any] = {"name": name, "partitions": partitions, "replicas": replicas}
    if balance_metric is not None:
        body["balance_metric"] = balance_metric
    return write("POST", "/v1/resources", body, request_id)


def resource_update(name: str, *, replicas: int | None = None, balance_metric: str | None = None,
                    request_id: str | None = None) -> Op[WriteResult]:
    """Change resource ``name``'s replication factor (more: the missing copies are added
    two-phase by the rebalancer; fewer: dropped at once) or balance metric (``""``: back to
    replica counts)."""
    body = {k: v for k, v in (("replicas", replicas), ("balance_metric", balance_metric))
            if v is not None}
    return write("PATCH", f"/v1/resources/{segment(name)}", body, request_id)


def resource_list(consistent: bool = False) -> Op[list[ResourceInfo]]:
    """All resources, sorted by name."""
    return Op(read("/v1/resources", consistent),
              lambda data: [ResourceInfo.from_api(r) for r in data["resources"]])


def resource_delete(name: str, *, request_id: str | None = None) -> Op[WriteResult]:
    """Delete resource ``name`` and all its partitions; :class:`NotFound` if unknown."""
    return write("DELETE", f"/v1/resources/{segment(name)}", None, request_id)


def _partition_path(resource: str, partition: int, action: str) -> str:
    return f"/v1/resources/{segment(resource)}/partitions/{segment(partition)}/{action}"


def partition_move(resource: str, partition: int, from_node: str, to_node: str, *,
                   two_phase: bool = False, request_id: str | None = None) -> Op[WriteResult]:
    """Move the replica of ``resource``/``partition`` held by ``from_node`` to ``to_node``. The
    partition's epoch grows; the result's ``partition`` is its new route. By default the move
    is forced, at once; with ``two_phase`` ``to_node`` is only added (the route's ``adding``)
    and replaces ``from_node`` when it reports caught up (:class:`Conflict` ``throttled`` or
    ``maintenance`` when the rebalance settings forbid a move now)."""
    body: dict[str, Any] = {"from": from_node, "to": to_node}
    if two_phase:
        body["two_phase"] = True
    return write("POST", _partition_path(resource, partition, "move"), body, request_id)


def partition_set_leader(resource: str, partition: int, node: str, *,
                         request_id: str | None = None) -> Op[WriteResult]:
    """Hand the leadership of ``resource``/``partition`` to its replica on ``node`` (up); the
    epoch grows. :class:`Conflict` (``move_pending``) while the partition is moving."""
    return write("POST", _partition_path(resource, partition, "leader"), {"node": node}, request_id)


def partition_cancel_move(resource: str, partition: int, *,
                          request_id: str | None = None) -> Op[WriteResult]:
    """Abandon the pending move of ``resource``/``partition``; :class:`Conflict` (``no_move``)
    if it has none."""
    return write("DELETE", _partition_path(resource, partition, "move"), None, request_id)


def routing(resource: str | None = None, consistent: bool = False) -> Op[RoutingTable]:
    """The routing table of ``resource`` (or of every resource) with the revision it reflects;
    :class:`NotFound` if the resource is unknown."""
    params = {"resource": resource} if resource is not None else {}
    return Op(read("/v1/routing", consistent, params), RoutingTable.from_api)


def watch_poll(last: int | None, poll: float, timeout: float) -> Op[tuple[int, list[WatchEvent]]]:
    """One long poll of the change feed after revision ``last`` (None: from now): the revision
    to poll after next, and the events (whole revisions, in order)."""
    params: dict[str, Any] = {"timeout": poll}
    if last is not None:
        params["since"] = last
    # The member holds the poll up to ``poll`` seconds: that much on top of the deadline.
    call = Call("GET", "/v1/watch", params=params, attempt_timeout=poll + timeout, extra_time=poll)

    def parse(data: dict[str, Any]) -> tuple[int, list[WatchEvent]]:
        events = [WatchEvent.from_api(raw) for raw in data["events"]]
        start = int(data["since"]) if last is None else last
        return max([start] + [e.revision for e in events]), events

    return Op(call, parse)


# --- rebalancing -----------------------------------------------------------------------------

def rebalance_status(consistent: bool = False) -> Op[dict[str, Any]]:
    """Rebalance progress: ``settings``, ``maintenance``, ``run``, ``pending`` moves (with
    ``age``), ``remaining`` moves, ``eta_seconds``, ``stuck``..."""
    return Op(read("/v1/rebalance", consistent), raw)


def rebalance_start(*, request_id: str | None = None) -> Op[dict[str, Any]]:
    """Apply the rebalance plan: start a run (``{"run", "progress", "revision"}``). The leader
    moves replicas two-phase under the throttles and ends the run when done.
    :class:`Conflict` if a run is going or in maintenance."""
    return written_data(write("POST", "/v1/rebalance", None, request_id))


def rebalance_cancel(cancel_moves: bool = False, *, request_id: str | None = None) -> Op[dict[str, Any]]:
    """End the running rebalance; pending moves complete unless ``cancel_moves``."""
    params = {"cancel_moves": "true"} if cancel_moves else None
    return written_data(write("DELETE", "/v1/rebalance", None, request_id, params=params))


def rebalance_configure(*, max_moves_per_node: int | None = None, max_moves: int | None = None,
                        rereplicate_after: float | None = None, maintenance: bool | None = None,
                        reason: str | None = None, request_id: str | None = None) -> Op[dict[str, Any]]:
    """Set throttles, the re-replication delay (seconds a down node's replicas wait), or
    maintenance mode (``maintenance=True`` needs a ``reason``); None leaves a field as is."""
    body = {k: v for k, v in (("max_moves_per_node", max_moves_per_node),
                              ("max_moves", max_moves), ("rereplicate_after", rereplicate_after),
                              ("maintenance", maintenance), ("reason", reason)) if v is not None}
    return written_data(write("PATCH", "/v1/rebalance", body, request_id), "rebalance")


def rebalance_plan(exclude: Iterable[str] = (), consistent: bool = False) -> Op[dict[str, Any]]:
    """Dry run of a rebalance: ``{"revision", "plan": {"moves", "leader_changes",
    "lower_bound", "before", "after", "stuck", ...}}``, planning as if the ``exclude``d nodes
    were drained. Nothing is applied."""
    params = {"exclude": list(exclude)} if exclude else None
    return Op(read("/v1/rebalance/plan", consistent, params), raw)


def explain(resource: str, partition: int, consistent: bool = False) -> Op[dict[str, Any]]:
    """Why each replica of ``resource``/``partition`` is where it is (constraints, score, the
    runner-up node), and whether the current rebalance plan would move it and why."""
    return Op(read(_partition_path(resource, partition, "explain"), consistent), raw)


# --- tokens and audit ------------------------------------------------------------------------

def token_create(name: str, role: str, *, node: str | None = None, expires_in: float | None = None,
                 request_id: str | None = None) -> Op[NewToken]:
    """Create an API token (needs an admin token). The secret is drawn here and sent once,
    so a retried request keeps it; the answer is the only place it is shown."""
    secret = new_token()
    body: dict[str, Any] = {"name": name, "role": role, "token": secret}
    if node is not None:
        body["node"] = node
    if expires_in is not None:
        body["expires_in"] = expires_in
    op = write("POST", "/v1/tokens", body, request_id)

    def parse(data: dict[str, Any]) -> NewToken:
        result = op.parse(data)
        return NewToken(TokenInfo.from_api(result.data["token"]), secret, result.revision)

    return Op(op.call, parse)


def token_list(consistent: bool = False) -> Op[list[TokenInfo]]:
    """Every token (needs an admin token), in creation order."""
    return Op(read("/v1/tokens", consistent), lambda data: [TokenInfo.from_api(t) for t in data["tokens"]])


def token_revoke(name: str, *, request_id: str | None = None) -> Op[WriteResult]:
    """Revoke token ``name``; answered once the members have applied it (``data`` has
    ``applied_on`` and ``unconfirmed``)."""
    return write("DELETE", f"/v1/tokens/{segment(name)}", None, request_id)


def audit(since: int = 0, limit: int = 1000) -> Op[list[AuditEntry]]:
    """Who made each change after revision ``since`` (oldest first, at most about ``limit``
    events' worth); :class:`Compacted` if the member no longer keeps them."""
    return Op(read("/v1/audit", False, {"since": since, "limit": limit}),
              lambda data: [AuditEntry.from_api(e) for e in data["entries"]])


def member_list() -> Op[list[MemberInfo]]:
    """The coordinator's members, as the member that answers knows them (any member). The
    client also learns them from its answers, so that one endpoint is enough to find the
    others."""
    return Op(read("/v1/members", False), lambda data: [MemberInfo.from_api(m)
                                                         for m in data["members"]])


def member_add(member_id: str, raft_address: str, api_url: str) -> Op[MembershipChange]:
    """Add a coordinator member (admin). Start it first, with an empty data directory and the
    current members as its peers; it catches up once added. Answered once the change is
    committed; asking again for a member already added answers ``changed=False``."""
    body = {"id": member_id, "raft_address": raft_address, "api_url": api_url}
    return Op(Call("POST", "/v1/members", body=body, to_leader=True), MembershipChange.from_api)


def member_remove(member_id: str) -> Op[MembershipChange]:
    """Remove a coordinator member (admin); the leader hands over first when it is the one.
    Answered once the change is committed; ``changed=False`` if it was no member."""
    return Op(Call("DELETE", f"/v1/members/{segment(member_id)}", to_leader=True),
              MembershipChange.from_api)


def whoami() -> Op[TokenInfo]:
    """The token this client sends, as the cluster knows it."""
    return Op(read("/v1/whoami", False), TokenInfo.from_api)


def backup() -> Op[bytes]:
    """A backup of the whole state, as the file's bytes: every write acknowledged before the
    call is in it. Needs an admin token (it holds the tokens' digests). See
    :mod:`hacoord.core.backup` for the format and ``hacoord restore`` for its use."""
    return FileOp(Call("GET", "/v1/backup", to_leader=True, attempt_timeout=60.0, extra_time=60.0))
