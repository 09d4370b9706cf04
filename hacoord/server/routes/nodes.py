"""Data nodes: registration, state, removal, and what a node reports about itself (sessions,
heartbeats, metrics, caught-up replicas)."""

from typing import Any

from fastapi import FastAPI, Request, Response

from hacoord.core.results import Applied
from hacoord.protocol import responses as r
from hacoord.protocol.requests import (
    CaughtUp,
    NodeBatch,
    NodeCreate,
    NodeHeartbeat,
    NodeMetrics,
    NodeUpdate,
    SessionStart,
)
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext, NodeId, request_id
from hacoord.server.errors import ErrorReply
from hacoord.server.hot import HotSpec
from hacoord.server.views import node_view

#: What :mod:`hacoord.server.hot` serves past FastAPI's routing: what data nodes and clients
#: call most.
HOT_ROUTES = [
    HotSpec("GET", "/v1/nodes/{node_id}", consistent=True),
    HotSpec("PATCH", "/v1/nodes/{node_id}", NodeUpdate),
    HotSpec("POST", "/v1/nodes/{node_id}/heartbeat", NodeHeartbeat),
    HotSpec("POST", "/v1/nodes/{node_id}/metrics", NodeMetrics),
]


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator, coordinator, leading = ctx.replicator, ctx.coordinator, ctx.leading

    @app.get("/v1/nodes", dependencies=[needs(P.ROUTE)], tags=["nodes"], response_model=r.NodeList)
    @ctx.reading
    async def list_nodes(request: Request, consistent: bool = False) -> Response:
        state = replicator.state
        return ctx.reply({"revision": state.revision,
                          "nodes": [state.nodes[n].to_dict() for n in sorted(state.nodes)]})

    @app.get("/v1/nodes/{node_id}", dependencies=[needs(P.ROUTE)], tags=["nodes"], response_model=r.NodeShown)
    @ctx.reading
    async def show_node(node_id: NodeId, request: Request, consistent: bool = False) -> Response:
        state = replicator.state
        if node_id not in state.nodes:
            raise ErrorReply("not_found", f"unknown node {node_id!r}")
        return await ctx.reply_heavy(("node", node_id), _node_body, state, node_id)

    @app.post("/v1/nodes", dependencies=[needs(P.NODE)],
              tags=["nodes"], status_code=201, response_model=r.NodeWritten)
    @leading
    async def add_node(body: NodeCreate, request: Request) -> Response:
        applied = await coordinator.register_node(
            await request_id(request), node_id=body.id, address=body.address, zone=body.zone,
            capacity=body.capacity, tags=body.tags)
        return ctx.written(applied, 201)

    @app.post("/v1/batch/nodes", dependencies=[needs(P.OPERATE)],
              tags=["nodes"], response_model=r.BatchWritten)
    @leading
    async def add_nodes(body: NodeBatch, request: Request) -> Response:
        """Register up to 1,000 nodes in one request, for bulk work: they are replicated
        together (sharing log entries), and each gets its own result, as its own request would
        (``already_exists`` for one does not stop the others). Retried with the same
        ``X-Request-Id``, every node is registered once."""
        outcomes = await coordinator.register_nodes(
            await request_id(request),
            [{"node_id": n.id, "address": n.address, "zone": n.zone, "capacity": n.capacity,
              "tags": n.tags} for n in body.nodes])
        results = [{"ok": True, "revision": o.revision, "node": o.result.get("node")}
                   if isinstance(o, Applied) else {"ok": False, "code": o.code, "message": o.message}
                   for o in outcomes]
        return ctx.reply({"revision": replicator.state.revision, "results": results})

    @app.patch("/v1/nodes/{node_id}", dependencies=[needs(P.OPERATE)],
               tags=["nodes"], response_model=r.NodeWritten)
    @leading
    async def set_node_state(node_id: NodeId, body: NodeUpdate, request: Request) -> Response:
        applied = await coordinator.set_node_state(
            await request_id(request), node_id, **body.model_dump(exclude_unset=True))
        return ctx.written(applied)

    @app.delete("/v1/nodes/{node_id}", dependencies=[needs(P.OPERATE)],
                tags=["nodes"], response_model=r.NodeRemovedAnswer)
    @leading
    async def remove_node(node_id: NodeId, request: Request, force: bool = False) -> Response:
        applied = await coordinator.remove_node(await request_id(request), node_id, force)
        return ctx.written(applied)

    @app.post("/v1/nodes/{node_id}/session", dependencies=[needs(P.NODE)],
              tags=["nodes"], response_model=r.SessionStarted)
    @leading
    async def start_node_session(node_id: NodeId, request: Request,
                                 body: SessionStart | None = None) -> Response:
        """A node (re)starts: its epoch grows by one and it is marked up. Answers the new
        ``epoch``, which its heartbeats and reports must carry from now on."""
        address = body.address if body is not None else None
        applied = await coordinator.start_node_session(await request_id(request), node_id, address)
        ctx.liveness.session_started(node_id)
        return ctx.written(applied)

    @app.post("/v1/nodes/{node_id}/heartbeat", dependencies=[needs(P.NODE)],
              tags=["nodes"], response_model=r.HeartbeatAnswer)
    @leading
    async def node_heartbeat(node_id: NodeId, body: NodeHeartbeat, request: Request) -> Response:
        """The node is alive at ``epoch``. Held in the leader's memory, not logged (unless the
        node was suspect or down: then it is judged up before the answer). 409 ``stale_epoch``
        if the node has started a newer session."""
        return ctx.reply(await ctx.liveness.heartbeat(node_id, body.epoch))

    @app.post("/v1/nodes/{node_id}/metrics", dependencies=[needs(P.NODE)],
              tags=["nodes"], response_model=r.NodeWritten)
    @leading
    async def report_node_metrics(node_id: NodeId, body: NodeMetrics, request: Request) -> Response:
        """The node reports metrics (merged into its record; a resource may balance on one). 409
        ``stale_epoch`` if the node has started a newer session."""
        applied = await coordinator.set_node_state(await request_id(request), node_id,
                                                   metrics=body.metrics, epoch=body.epoch)
        return ctx.written(applied)

    @app.post("/v1/nodes/{node_id}/caught-up", dependencies=[needs(P.NODE)],
              tags=["nodes"], response_model=r.PartitionWritten)
    @leading
    async def report_caught_up(node_id: NodeId, body: CaughtUp, request: Request) -> Response:
        """Phase two of a move: the node's new replica has caught up. The move completes (the new
        replica replaces the old one, leadership follows, the epoch grows). 409 ``stale_epoch``
        for an older node session or partition epoch, ``no_move`` if no move goes to this node."""
        applied = await coordinator.report_caught_up(await request_id(request), node_id, body.epoch,
                                                     body.resource, body.partition,
                                                     body.partition_epoch)
        return ctx.written(applied)



def _node_body(state: Any, node_id: str) -> dict[str, Any]:
    return {"revision": state.revision, "node": node_view(state, node_id)}
