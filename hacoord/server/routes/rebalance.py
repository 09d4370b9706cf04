"""Placement: rebalance runs (progress, start, cancel, settings), the dry-run plan, and why a
partition's replicas are where they are."""

from typing import Annotated

from fastapi import FastAPI, Query, Request, Response

from hacoord.placement import explain
from hacoord.placement.schedule import eta_seconds, inputs, plan_for, waves
from hacoord.protocol import responses as r
from hacoord.protocol.requests import RebalanceSettings
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext, PartitionIndex, ResourceName, request_id
from hacoord.server.coordinator import replica_count
from hacoord.server.errors import ErrorReply
from hacoord.server.offload import offload


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator, coordinator, rebalancer = ctx.replicator, ctx.coordinator, ctx.rebalancer
    leading = ctx.leading

    @app.get("/v1/rebalance", dependencies=[needs(P.READ)],
             tags=["placement"], response_model=r.RebalanceProgress)
    @ctx.reading
    async def rebalance_status(request: Request, consistent: bool = False) -> Response:
        """Rebalance progress: settings, maintenance, the run, pending moves with their age, the
        moves left, the ETA."""
        return ctx.reply(await rebalancer.progress())

    @app.post("/v1/rebalance", dependencies=[needs(P.OPERATE)],
              tags=["placement"], status_code=201, response_model=r.RebalanceStartedAnswer)
    @leading
    async def start_rebalance(request: Request) -> Response:
        """Apply the plan: start a rebalance run. The leader makes its moves under the throttles
        (see ``GET /v1/rebalance`` for progress) and ends the run when nothing is left."""
        rid = await request_id(request)
        applied = await coordinator.start_rebalance(rid, f"run-{rid[:12]}")
        return ctx.written(applied, 201, progress=await rebalancer.progress())

    @app.delete("/v1/rebalance", dependencies=[needs(P.OPERATE)],
                tags=["placement"], response_model=r.RebalanceEndedAnswer)
    @leading
    async def cancel_rebalance(request: Request, cancel_moves: bool = False) -> Response:
        """End the running rebalance (pending moves complete, unless ``cancel_moves``)."""
        run = replicator.state.rebalance.run
        if run is None:
            raise ErrorReply("not_found", "no rebalance is running")
        rid = await request_id(request)
        applied = await coordinator.end_rebalance(rid, run["id"], "cancelled")
        cancelled = 0
        if cancel_moves:
            for k, move in enumerate(list(replicator.state.moves.values())):
                await coordinator.cancel_move(f"{rid}-{k}", move.resource, move.partition,
                                              "rebalance cancelled")
                cancelled += 1
        return ctx.written(applied, moves_cancelled=cancelled)

    @app.patch("/v1/rebalance", dependencies=[needs(P.OPERATE)],
               tags=["placement"], response_model=r.RebalanceConfiguredAnswer)
    @leading
    async def configure_rebalance(body: RebalanceSettings, request: Request) -> Response:
        """Throttles (moves in flight per node and in the cluster), the delay before a down
        node's replicas are re-created, and maintenance mode (freezes rebalancing; a reason is
        required)."""
        applied = await coordinator.configure_rebalance(await request_id(request),
                                                        **body.model_dump(exclude_unset=True))
        return ctx.written(applied)

    @app.get("/v1/rebalance/plan", dependencies=[needs(P.READ)],
             tags=["placement"], response_model=r.RebalancePlan)
    @ctx.reading
    async def rebalance_plan(request: Request, consistent: bool = False,
                             exclude: Annotated[list[str] | None, Query(description=(
                                 "nodes to plan as if drained (repeat)"))] = None) -> Response:
        """Dry run: the moves and leadership changes that would restore balance from the current
        assignment (pending moves as if done; draining and long-down nodes drained, cordoned,
        suspect and recently down ones held), their count against the lower bound, balance
        before and after, and how long they would take under the throttles. Nothing is applied."""
        state = replicator.state
        exclude = exclude or []
        unknown = [n for n in exclude if n not in state.nodes]
        if unknown:
            raise ErrorReply("not_found", f"unknown node(s) {', '.join(map(repr, unknown))}")
        now = rebalancer.clock()
        plan = await offload(plan_for, state, inputs(state, now, drain=exclude),
                             size=replica_count(state), name="dry-run plan")
        state = replicator.state
        settings = state.rebalance
        return ctx.reply({"revision": state.revision, "dry_run": True, "plan": plan.to_dict(),
                          "throttle": {"max_moves": settings.max_moves,
                                       "max_moves_per_node": settings.max_moves_per_node},
                          "waves": waves([(m.from_node, m.to_node) for m in plan.moves],
                                         settings.max_moves, settings.max_moves_per_node),
                          "mean_move_seconds": settings.mean_move_seconds(),
                          "eta_seconds": eta_seconds(state, plan.moves, now)})

    @app.get("/v1/resources/{name}/partitions/{partition}/explain", dependencies=[needs(P.READ)],
             tags=["placement"],
                response_model=r.Explanation)
    @ctx.reading
    async def explain_partition(name: ResourceName, partition: PartitionIndex, request: Request,
                                consistent: bool = False) -> Response:
        """Why each replica of the partition is where it is, and whether the current rebalance
        plan would move it, and why."""
        state = replicator.state
        res = state.resources.get(name)
        if res is None or not 0 <= partition < len(res.partitions):
            raise ErrorReply("not_found", f"no partition {name}/{partition}")
        plan, _ = await rebalancer.plan()
        return ctx.reply({"revision": state.revision, **explain(state, name, partition, plan)})

