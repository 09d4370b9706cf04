"""The HTTP/JSON API of one member (FastAPI). Handlers translate; the coordinator decides.

Any member accepts any call. Writes, and reads asked with ``consistent=true``, are served by the
leader: a follower forwards them over HTTP (once; a forwarded request that lands on a non-leader
is answered ``not_leader`` with a hint, and the client library retries). Ordinary reads are served
from the member's own applied state and say which revision they reflect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from hacoord import __version__
from hacoord.core.codec import canonical_json
from hacoord.core.codec import digest as state_digest
from hacoord.core.model import REQUEST_RETENTION
from hacoord.placement import explain
from hacoord.placement.schedule import eta_seconds, inputs, plan_for, waves
from hacoord.replication.base import Replicator
from hacoord.replication.feed import Compacted
from hacoord.server import responses as r
from hacoord.server.coordinator import Coordinator, replica_count, request_fingerprint
from hacoord.server.errors import ApiError, install_error_handlers
from hacoord.server.health import HealthCache
from hacoord.server.limits import HttpLimits, LimitsMiddleware
from hacoord.server.liveness import DEFAULT_DOWN_AFTER, DEFAULT_SUSPECT_AFTER, LivenessMonitor
from hacoord.server.looplag import LagMonitor
from hacoord.server.metrics import install_metrics, refusals
from hacoord.server.offload import offload
from hacoord.server.openapi import document_errors
from hacoord.server.reads import HeavyReads
from hacoord.server.rebalancer import DEFAULT_INTERVAL as DEFAULT_REBALANCE_INTERVAL
from hacoord.server.rebalancer import Rebalancer
from hacoord.server.schemas import (
    ID,
    CaughtUp,
    NodeCreate,
    NodeHeartbeat,
    NodeMetrics,
    NodeSession,
    NodeUpdate,
    PartitionLeader,
    PartitionMove,
    RebalanceSettings,
    ResourceCreate,
    ResourceUpdate,
)
from hacoord.server.views import node_view, resource_summary, routing, routing_from

FORWARDED_HEADER = "x-hacoord-forwarded"
LEADER_HEADER = "x-hacoord-leader"
REQUEST_ID_HEADER = "x-request-id"
REVISION_HEADER = "x-hacoord-revision"
CLIENT_HEADER = "x-hacoord-client"  # who a forwarded request counts for (hacoord.server.limits)
FORWARD_CHECK = 0.05  # seconds between checks that the leader a forward went to still leads
#: Partitions a watch page carries at most (whole revisions: a page holds at least one); the
#: slices of a resource of 100,000 partitions take several pages.
WATCH_PAGE_PARTITIONS = 10_000
MAX_REVISION = 2**53  # revisions asked for are bounded (JSON numbers are exact up to here)

# Path parameters are checked before a handler runs (and before a follower forwards them).
NodeId = Annotated[str, Path(pattern=ID, description="a data node's id")]
ResourceName = Annotated[str, Path(pattern=ID, description="a resource's name")]
PartitionIndex = Annotated[int, Path(ge=0, le=10_000_000, description="a partition's index")]
RequestIdPath = Annotated[str, Path(pattern=r"^[\x21-\x7e]{1,128}$",
                                    description="a write's X-Request-Id")]


async def _request_id(request: Request) -> str:
    """The write's request id (``X-Request-Id``, or a new one), and its fingerprint set for the
    coordinator: a digest of method, path and body (JSON bodies in canonical form), so that
    the id reused with another request is refused (409 ``request_id_reused``)."""
    rid = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    if len(rid) > 128:
        raise ApiError("invalid_argument", "X-Request-Id longer than 128 characters")
    body = await request.body()
    try:
        body = canonical_json(json.loads(body)) if body else b""
    except ValueError:
        pass  # not JSON: the bytes themselves
    digest = hashlib.blake2b(digest_size=12)
    for part in (request.method.encode(), request.url.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    request_fingerprint.set(digest.hexdigest())
    return rid


def create_app(replicator: Replicator, submit_timeout: float = 5.0,
               manage_replicator: bool = True, unsafe_stale_reads: bool = False, *,
               suspect_after: float = DEFAULT_SUSPECT_AFTER, down_after: float = DEFAULT_DOWN_AFTER,
               liveness_clock: Callable[[], float] = time.monotonic,
               liveness_check_interval: float | None = None,
               rebalance_interval: float = DEFAULT_REBALANCE_INTERVAL,
               rebalance_clock: Callable[[], float] = time.time,
               limits: HttpLimits | None = None) -> FastAPI:
    """Build the API over ``replicator``. With ``manage_replicator`` the app's lifespan starts
    and stops it; otherwise the caller does. The lifespan also runs the leader's
    :class:`LivenessMonitor` (``app.state.liveness``) with the given timeouts and clock, and its
    :class:`Rebalancer` (``app.state.rebalancer``), a pass every ``rebalance_interval`` seconds
    on ``rebalance_clock`` (leader time, seconds since the epoch). ``limits`` bound what one
    client may ask (:mod:`hacoord.server.limits`).

    ``unsafe_stale_reads`` is the chaos suite's canary: "consistent" reads are then served from
    whatever state the member asked has, which a linearizability checker must catch. Never set it
    outside that test."""
    coordinator = Coordinator(replicator, submit_timeout)
    liveness = LivenessMonitor(replicator, coordinator, liveness_clock, suspect_after, down_after,
                               liveness_check_interval)
    rebalancer = Rebalancer(replicator, coordinator, rebalance_interval, rebalance_clock)
    http: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        http["client"] = httpx.AsyncClient(timeout=submit_timeout + 2.0)
        if manage_replicator:
            await replicator.start()
        await liveness.start()
        await rebalancer.start()
        await lag.start()
        try:
            yield
        finally:
            await lag.stop()
            await rebalancer.stop()
            await liveness.stop()
            if manage_replicator:
                await replicator.stop()
            await http["client"].aclose()

    app = FastAPI(title="hacoord", version=__version__, lifespan=lifespan,
                  description="Partition coordinator API: nodes, resources, routing, status.")
    install_error_handlers(app)
    document_errors(app)
    watching = {"open": 0}
    guard: dict[str, LimitsMiddleware] = {}
    heavy = HeavyReads()
    health = HealthCache(replicator, heavy)
    registry = install_metrics(app, replicator, lambda: watching["open"],
                               lambda: iter(liveness.metrics() + rebalancer.metrics()
                                            + refusals(guard["limits"].refused if guard else {})),
                               health.summary, before_scrape=health.current)
    lag = LagMonitor(registry)

    def keep(middleware: LimitsMiddleware) -> LimitsMiddleware:
        guard["limits"] = middleware
        return middleware

    app.add_middleware(lambda inner: keep(LimitsMiddleware(inner, limits or HttpLimits())))
    app.state.replicator = replicator
    app.state.coordinator = coordinator
    app.state.liveness = liveness
    app.state.rebalancer = rebalancer

    async def leader_or_forward(request: Request) -> Response | None:
        """None if this member leads; otherwise the leader's answer to the same request."""
        if replicator.is_leader():
            return None
        leader = replicator.leader_id()
        if request.headers.get(FORWARDED_HEADER):
            raise ApiError("not_leader", f"{replicator.member_id} does not lead", leader=leader)
        if leader is None or leader == replicator.member_id:
            raise ApiError("no_leader", "no leader is elected right now; retry shortly")
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        target = replicator.members[leader].api_url.rstrip("/") + raw_path.decode("ascii", "replace")
        if request.url.query:
            target += "?" + request.url.query
        headers = {FORWARDED_HEADER: replicator.member_id,
                   CLIENT_HEADER: request.client.host if request.client else "unknown"}
        for name in ("content-type", REQUEST_ID_HEADER):
            if name in request.headers:
                headers[name] = request.headers[name]
        forward = asyncio.ensure_future(http["client"].request(
            request.method, target, headers=headers, content=await request.body()))
        try:
            answer = await _unless_leader_changes(forward, leader)
        except httpx.HTTPError as exc:
            raise ApiError("unavailable", f"leader {leader} unreachable: {type(exc).__name__}",
                           leader=leader) from None
        passed = {k: v for k, v in answer.headers.items() if k.startswith("x-hacoord-")}
        # Tells the client who answered, so it can go to the leader directly next time (a data
        # node heartbeating through a follower would otherwise cost that follower a forward each
        # time, for ever).
        passed[LEADER_HEADER] = leader
        return Response(answer.content, status_code=answer.status_code,
                        media_type="application/json", headers=passed)

    async def _unless_leader_changes(forward: asyncio.Future[httpx.Response],
                                     leader: str) -> httpx.Response:
        """The leader's answer; but if this member sees another leader (or none) meanwhile, give
        up on it: a paused or cut-off leader would hold the caller until its timeout, while a
        retry can go to the new leader now. (Safe: the write keeps its request id.)"""
        for _ in range(int((submit_timeout + 2.0) / FORWARD_CHECK) + 1):
            done, _pending = await asyncio.wait([forward], timeout=FORWARD_CHECK)
            if done:
                return forward.result()
            now = replicator.leader_id()
            if now != leader:
                forward.cancel()
                raise ApiError("not_leader", f"leadership moved from {leader} to {now or 'nobody'} "
                               "while forwarding; retry", leader=now)
        forward.cancel()
        raise ApiError("unavailable", f"leader {leader} did not answer in time", leader=leader)

    def not_reached(revision: int, current: int) -> ApiError:
        return ApiError("not_found", f"revision {revision} is ahead of this member (at {current}); "
                        "ask the leader, or with consistent=true")

    def loaded() -> None:
        """Refuse reads until this member has applied everything it had (503 ``not_ready``)."""
        if not replicator.loaded:
            raise ApiError("not_ready", f"member {replicator.member_id} is still loading its state "
                           "(or reopening it after a storage failure); ask another member")

    async def read_point(request: Request, consistent: bool) -> Response | None:
        """For a consistent read: forward to the leader, or on the leader pass a barrier. A
        local read is refused while the member's state is not loaded."""
        if not consistent or unsafe_stale_reads:
            loaded()
            return None
        forwarded = await leader_or_forward(request)
        if forwarded is None:
            await coordinator.barrier()
            loaded()
        return forwarded

    def reply(body: dict[str, Any], status: int = 200) -> JSONResponse:
        revision = body.get("revision", replicator.state.revision)
        return JSONResponse(body, status_code=status, headers={REVISION_HEADER: str(revision)})

    async def reply_heavy(key: Any, fn: Callable[..., dict[str, Any]], *args: Any) -> Response:
        """``reply(fn(*args))`` for an answer that walks the whole state: built off the loop
        when the state is large, and shared by readers of the same revision (see
        :mod:`hacoord.server.reads`)."""
        state = replicator.state
        revision, body = await heavy.answer(key, state.revision, fn, *args,
                                            size=replica_count(state), name=f"read {key[0]}")
        return Response(body, media_type="application/json",
                        headers={REVISION_HEADER: str(revision)})

    # --- health and status --------------------------------------------------------------------

    @app.get("/livez", tags=["health"], response_model=r.Live)
    async def livez() -> dict[str, str]:
        """The process and its event loop answer."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=r.Ready)
    async def readyz() -> JSONResponse:
        """Ready: in a quorum, a leader known, applied index caught up, Raft ticking."""
        status = replicator.status()
        body = {"ready": status.ready, "member": status.to_dict()}
        return JSONResponse(body, status_code=200 if status.ready else 503)

    @app.get("/v1/status", tags=["status"], response_model=r.Status)
    async def get_status(digest: bool = False) -> JSONResponse:
        """This member's Raft view and the configured members; with ``digest=true`` also the
        digest of its applied state (equal on members at the same revision)."""
        status = replicator.status()
        members = {m.id: {"api_url": m.api_url, "raft_address": m.raft_address}
                   for m in replicator.members.values()}
        body = {"revision": status.revision, "member": status.to_dict(), "leader": status.leader_id,
                "members": members, "pid": os.getpid(), "health": await health.current()}
        if digest:
            state = replicator.state
            answer = await heavy.answer(("digest",), state.revision, _digest_body, state,
                                        size=replica_count(state), name="read digest")
            body["revision"], body["digest"] = answer[0], json.loads(answer[1])["digest"]
        return reply(body)

    @app.get("/v1/requests/{request_id}", tags=["status"], response_model=r.RequestStatus)
    async def request_status(request_id: RequestIdPath, request: Request,
                             consistent: bool = False) -> Response:
        """Whether the write with this request id was applied, and at which revision: the
        answer to "did my write land?" after a timeout. Request ids are remembered for
        ``retention`` seconds of leader time (at most 50,000 of them); an older or unknown id is
        ``applied: false``. With ``consistent=true`` the answer covers every write committed
        before the question (read through the leader)."""
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        state = replicator.state
        record = state.requests.get(request_id)
        body: dict[str, Any] = {"revision": state.revision, "request_id": request_id,
                                "applied": record is not None, "retention": REQUEST_RETENTION}
        if record is not None:
            body["applied_revision"] = record["revision"]
            body["applied_at"] = record["time"]
        return reply(body)

    # --- nodes --------------------------------------------------------------------------------

    @app.get("/v1/nodes", tags=["nodes"], response_model=r.NodeList)
    async def list_nodes(request: Request, consistent: bool = False) -> Response:
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        state = replicator.state
        return reply({"revision": state.revision,
                      "nodes": [state.nodes[n].to_dict() for n in sorted(state.nodes)]})

    @app.get("/v1/nodes/{node_id}", tags=["nodes"], response_model=r.NodeShown)
    async def show_node(node_id: NodeId, request: Request, consistent: bool = False) -> Response:
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        state = replicator.state
        if node_id not in state.nodes:
            raise ApiError("not_found", f"unknown node {node_id!r}")
        return await reply_heavy(("node", node_id), _node_body, state, node_id)

    @app.post("/v1/nodes", tags=["nodes"], status_code=201, response_model=r.NodeWritten)
    async def add_node(body: NodeCreate, request: Request) -> Response:
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.register_node(
            await _request_id(request), node_id=body.id, address=body.address, zone=body.zone,
            capacity=body.capacity, tags=body.tags)
        return reply({"revision": applied.revision, **applied.result}, 201)

    @app.patch("/v1/nodes/{node_id}", tags=["nodes"], response_model=r.NodeWritten)
    async def set_node_state(node_id: NodeId, body: NodeUpdate, request: Request) -> Response:
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.set_node_state(
            await _request_id(request), node_id, **body.model_dump(exclude_unset=True))
        return reply({"revision": applied.revision, **applied.result})

    @app.delete("/v1/nodes/{node_id}", tags=["nodes"], response_model=r.NodeRemoved)
    async def remove_node(node_id: NodeId, request: Request, force: bool = False) -> Response:
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.remove_node(await _request_id(request), node_id, force)
        return reply({"revision": applied.revision, **applied.result})

    @app.post("/v1/nodes/{node_id}/session", tags=["nodes"], response_model=r.SessionStarted)
    async def start_node_session(node_id: NodeId, request: Request,
                                 body: NodeSession | None = None) -> Response:
        """A node (re)starts: its epoch grows by one and it is marked up. Answers the new
        ``epoch``, which its heartbeats and reports must carry from now on."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        address = body.address if body is not None else None
        applied = await coordinator.start_node_session(await _request_id(request), node_id, address)
        liveness.session_started(node_id)
        return reply({"revision": applied.revision, **applied.result})

    @app.post("/v1/nodes/{node_id}/heartbeat", tags=["nodes"], response_model=r.HeartbeatAnswer)
    async def node_heartbeat(node_id: NodeId, body: NodeHeartbeat, request: Request) -> Response:
        """The node is alive at ``epoch``. Held in the leader's memory, not logged (unless the
        node was suspect or down: then it is judged up before the answer). 409 ``stale_epoch``
        if the node has started a newer session."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        return reply(await liveness.heartbeat(node_id, body.epoch))

    @app.post("/v1/nodes/{node_id}/metrics", tags=["nodes"], response_model=r.NodeWritten)
    async def report_node_metrics(node_id: NodeId, body: NodeMetrics, request: Request) -> Response:
        """The node reports metrics (merged into its record; a resource may balance on one). 409
        ``stale_epoch`` if the node has started a newer session."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.set_node_state(await _request_id(request), node_id,
                                                   metrics=body.metrics, epoch=body.epoch)
        return reply({"revision": applied.revision, **applied.result})

    @app.post("/v1/nodes/{node_id}/caught-up", tags=["nodes"], response_model=r.PartitionWritten)
    async def report_caught_up(node_id: NodeId, body: CaughtUp, request: Request) -> Response:
        """Phase two of a move: the node's new replica has caught up. The move completes (the new
        replica replaces the old one, leadership follows, the epoch grows). 409 ``stale_epoch``
        for an older node session or partition epoch, ``no_move`` if no move goes to this node."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.report_caught_up(await _request_id(request), node_id, body.epoch,
                                                     body.resource, body.partition,
                                                     body.partition_epoch)
        return reply({"revision": applied.revision, **applied.result})

    # --- resources ----------------------------------------------------------------------------

    @app.get("/v1/resources", tags=["resources"], response_model=r.ResourceList)
    async def list_resources(request: Request, consistent: bool = False) -> Response:
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        state = replicator.state
        return reply({"revision": state.revision,
                      "resources": [resource_summary(state.resources[n])
                                    for n in sorted(state.resources)]})

    @app.post("/v1/resources", tags=["resources"], status_code=201, response_model=r.ResourceWritten)
    async def create_resource(body: ResourceCreate, request: Request) -> Response:
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.create_resource(await _request_id(request), body.name,
                                                    body.partitions, body.replicas,
                                                    body.balance_metric)
        return reply({"revision": applied.revision, **applied.result}, 201)

    @app.patch("/v1/resources/{name}", tags=["resources"], response_model=r.ResourceWritten)
    async def update_resource(name: ResourceName, body: ResourceUpdate, request: Request) -> Response:
        """Change the replication factor (missing replicas are added two-phase by the rebalancer;
        extra ones dropped at once) or the balance metric."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.update_resource(await _request_id(request), name,
                                                    **body.model_dump(exclude_unset=True))
        return reply({"revision": applied.revision, **applied.result})

    @app.delete("/v1/resources/{name}", tags=["resources"], response_model=r.ResourceDeleted)
    async def delete_resource(name: ResourceName, request: Request) -> Response:
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.delete_resource(await _request_id(request), name)
        return reply({"revision": applied.revision, **applied.result})

    @app.post("/v1/resources/{name}/partitions/{partition}/move", tags=["resources"],
              response_model=r.PartitionWritten)
    async def move_partition(name: ResourceName, partition: PartitionIndex, body: PartitionMove,
                             request: Request) -> Response:
        """Move the replica on ``from`` to ``to``: at once, or two-phase (``two_phase``: the
        answer is the pending move; the move completes when ``to`` reports caught up)."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        if body.two_phase:
            applied = await coordinator.start_move(await _request_id(request), name, partition,
                                                   body.from_node, body.to_node, "operator")
        else:
            applied = await coordinator.move_partition(await _request_id(request), name, partition,
                                                       body.from_node, body.to_node)
        return reply({"revision": applied.revision, **applied.result})

    @app.post("/v1/resources/{name}/partitions/{partition}/leader", tags=["resources"],
              response_model=r.PartitionWritten)
    async def set_partition_leader(name: ResourceName, partition: PartitionIndex, body: PartitionLeader,
                                   request: Request) -> Response:
        """Hand the partition's leadership to one of its replicas on an up node; the epoch grows."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.set_partition_leader(await _request_id(request), name, partition,
                                                         body.node)
        return reply({"revision": applied.revision, **applied.result})

    @app.delete("/v1/resources/{name}/partitions/{partition}/move", tags=["resources"],
                response_model=r.PartitionWritten)
    async def cancel_move(name: ResourceName, partition: PartitionIndex, request: Request) -> Response:
        """Abandon the partition's pending move (the copy being made is dropped)."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.cancel_move(await _request_id(request), name, partition, "operator")
        return reply({"revision": applied.revision, **applied.result})

    # --- rebalance ----------------------------------------------------------------------------

    @app.get("/v1/rebalance", tags=["placement"], response_model=r.RebalanceProgress)
    async def rebalance_status(request: Request, consistent: bool = False) -> Response:
        """Rebalance progress: settings, maintenance, the run, pending moves with their age, the
        moves left, the ETA."""
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        return reply(await rebalancer.progress())

    @app.post("/v1/rebalance", tags=["placement"], status_code=201, response_model=r.RebalanceStarted)
    async def start_rebalance(request: Request) -> Response:
        """Apply the plan: start a rebalance run. The leader makes its moves under the throttles
        (see ``GET /v1/rebalance`` for progress) and ends the run when nothing is left."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        rid = await _request_id(request)
        applied = await coordinator.start_rebalance(rid, f"run-{rid[:12]}")
        return reply({"revision": applied.revision, **applied.result,
                      "progress": await rebalancer.progress()}, 201)

    @app.delete("/v1/rebalance", tags=["placement"], response_model=r.RebalanceEnded)
    async def cancel_rebalance(request: Request, cancel_moves: bool = False) -> Response:
        """End the running rebalance (pending moves complete, unless ``cancel_moves``)."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        run = replicator.state.rebalance.run
        if run is None:
            raise ApiError("not_found", "no rebalance is running")
        rid = await _request_id(request)
        applied = await coordinator.end_rebalance(rid, run["id"], "cancelled")
        cancelled = 0
        if cancel_moves:
            for k, move in enumerate(list(replicator.state.moves.values())):
                await coordinator.cancel_move(f"{rid}-{k}", move.resource, move.partition,
                                              "rebalance cancelled")
                cancelled += 1
        return reply({"revision": applied.revision, **applied.result, "moves_cancelled": cancelled})

    @app.patch("/v1/rebalance", tags=["placement"], response_model=r.RebalanceConfigured)
    async def configure_rebalance(body: RebalanceSettings, request: Request) -> Response:
        """Throttles (moves in flight per node and in the cluster), the delay before a down
        node's replicas are re-created, and maintenance mode (freezes rebalancing; a reason is
        required)."""
        if (fwd := await leader_or_forward(request)) is not None:
            return fwd
        applied = await coordinator.configure_rebalance(await _request_id(request),
                                                        **body.model_dump(exclude_unset=True))
        return reply({"revision": applied.revision, **applied.result})

    # --- watch --------------------------------------------------------------------------------

    @app.get("/v1/watch", tags=["watch"], response_model=r.Watched)
    async def watch(since: int | None = Query(None, ge=0, le=MAX_REVISION, description=(
                        "last revision seen (a lagging member waits until it gets there)")),
                    timeout: float = Query(25.0, ge=0, le=60, description="seconds to wait"),
                    limit: int = Query(1000, ge=1, le=10_000)) -> Response:
        """Long poll: the events after revision ``since`` (whole revisions, in order), waiting up
        to ``timeout`` seconds for one. Without ``since``, from the current revision. A revision
        older than this member keeps is answered 410 ``compacted``: re-read the state (its
        revision) and watch from there."""
        loaded()
        feed = replicator.feed
        start = replicator.state.revision if since is None else since
        watching["open"] += 1
        try:
            await feed.wait(start, timeout)
        finally:
            watching["open"] -= 1
        try:
            events = feed.since(start, limit, max_partitions=WATCH_PAGE_PARTITIONS)
        except Compacted as exc:
            raise ApiError("compacted", str(exc), status=410) from None
        return reply({"revision": replicator.state.revision, "since": start,
                      "events": [e.to_dict() for e in events]})

    @app.get("/v1/routing", tags=["routing"], response_model=r.Routing)
    async def get_routing(request: Request, consistent: bool = False,
                          resource: str | None = Query(None),
                          revision: int | None = Query(None, ge=0, le=MAX_REVISION, description=(
                              "as of this past revision (within the kept history)"))) -> Response:
        """Routing table: partition -> replicas, leader, fencing epoch; with the revision. With
        ``revision``, as it was then (410 ``compacted`` if older than this member keeps)."""
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        state = replicator.state
        if revision is not None and revision != state.revision:
            if revision > state.revision:
                raise not_reached(revision, state.revision)
            try:
                past = replicator.feed.routing_at(revision)
            except Compacted as exc:
                raise ApiError("compacted", str(exc), status=410) from None
            if resource is not None and resource not in past:
                raise ApiError("not_found", f"no resource {resource!r} at revision {revision}")
            return await reply_heavy(("routing", resource, revision), routing_from, past, state,
                                     revision, resource)
        if resource is not None and resource not in state.resources:
            raise ApiError("not_found", f"unknown resource {resource!r}")
        return await reply_heavy(("routing", resource), routing, state, resource)

    @app.get("/v1/rebalance/plan", tags=["placement"], response_model=r.RebalancePlan)
    async def rebalance_plan(request: Request, consistent: bool = False,
                             exclude: Annotated[list[str] | None, Query(description=(
                                 "nodes to plan as if drained (repeat)"))] = None) -> Response:
        """Dry run: the moves and leadership changes that would restore balance from the current
        assignment (pending moves as if done; draining and long-down nodes drained, cordoned,
        suspect and recently down ones held), their count against the lower bound, balance
        before and after, and how long they would take under the throttles. Nothing is applied."""
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        state = replicator.state
        exclude = exclude or []
        unknown = [n for n in exclude if n not in state.nodes]
        if unknown:
            raise ApiError("not_found", f"unknown node(s) {', '.join(map(repr, unknown))}")
        now = rebalancer.clock()
        plan = await offload(plan_for, state, inputs(state, now, drain=exclude),
                             size=replica_count(state), name="dry-run plan")
        state = replicator.state
        settings = state.rebalance
        return reply({"revision": state.revision, "dry_run": True, "plan": plan.to_dict(),
                      "throttle": {"max_moves": settings.max_moves,
                                   "max_moves_per_node": settings.max_moves_per_node},
                      "waves": waves([(m.from_node, m.to_node) for m in plan.moves],
                                     settings.max_moves, settings.max_moves_per_node),
                      "mean_move_seconds": settings.mean_move_seconds(),
                      "eta_seconds": eta_seconds(state, plan.moves, now)})

    @app.get("/v1/resources/{name}/partitions/{partition}/explain", tags=["placement"],
              response_model=r.Explanation)
    async def explain_partition(name: ResourceName, partition: PartitionIndex, request: Request,
                                consistent: bool = False) -> Response:
        """Why each replica of the partition is where it is, and whether the current rebalance
        plan would move it, and why."""
        if (fwd := await read_point(request, consistent)) is not None:
            return fwd
        state = replicator.state
        res = state.resources.get(name)
        if res is None or not 0 <= partition < len(res.partitions):
            raise ApiError("not_found", f"no partition {name}/{partition}")
        plan, _ = await rebalancer.plan()
        return reply({"revision": state.revision, **explain(state, name, partition, plan)})

    @app.get("/v1/routing/diff", tags=["routing"], response_model=r.RoutingDiff)
    async def routing_diff(since: int = Query(alias="from", ge=0, le=MAX_REVISION),
                           until: int | None = Query(None, alias="to", ge=0, le=MAX_REVISION)) -> Response:
        """Partitions whose replicas, leader or epoch differ between revisions ``from`` and ``to``
        (default: now), each with its before and after; ``from`` may be the later one."""
        loaded()
        current = replicator.state.revision
        until = current if until is None else until
        if max(since, until) > current:
            raise not_reached(max(since, until), current)
        feed = replicator.feed
        if min(since, until) < feed.floor:
            raise ApiError("compacted", str(Compacted(min(since, until), feed.floor)), status=410)
        return await reply_heavy(("diff", since, until), _diff_body, feed, since, until, current)

    return app


def _node_body(state: Any, node_id: str) -> dict[str, Any]:
    return {"revision": state.revision, "node": node_view(state, node_id)}


def _digest_body(state: Any) -> dict[str, Any]:
    return {"revision": state.revision, "digest": state_digest(state)}


def _diff_body(feed: Any, since: int, until: int, current: int) -> dict[str, Any]:
    return {"revision": current, "from": since, "to": until, "changes": feed.diff(since, until)}
