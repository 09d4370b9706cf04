"""Resources and their partitions: creation, changes, deletion, moves and leaderships."""

from fastapi import FastAPI, Request, Response

from hacoord.protocol import responses as r
from hacoord.protocol.requests import PartitionLeader, PartitionMove, ResourceCreate, ResourceUpdate
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext, PartitionIndex, ResourceName, request_id
from hacoord.server.views import resource_summary


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator, coordinator, leading = ctx.replicator, ctx.coordinator, ctx.leading

    @app.get("/v1/resources", dependencies=[needs(P.ROUTE)],
             tags=["resources"], response_model=r.ResourceList)
    @ctx.reading
    async def list_resources(request: Request, consistent: bool = False) -> Response:
        state = replicator.state
        return ctx.reply({"revision": state.revision,
                          "resources": [resource_summary(state.resources[n])
                                        for n in sorted(state.resources)]})

    @app.post("/v1/resources", dependencies=[needs(P.OPERATE)],
              tags=["resources"], status_code=201, response_model=r.ResourceWritten)
    @leading
    async def create_resource(body: ResourceCreate, request: Request) -> Response:
        applied = await coordinator.create_resource(await request_id(request), body.name,
                                                    body.partitions, body.replicas,
                                                    body.balance_metric)
        return ctx.written(applied, 201)

    @app.patch("/v1/resources/{name}", dependencies=[needs(P.OPERATE)],
               tags=["resources"], response_model=r.ResourceWritten)
    @leading
    async def update_resource(name: ResourceName, body: ResourceUpdate, request: Request) -> Response:
        """Change the replication factor (missing replicas are added two-phase by the rebalancer;
        extra ones dropped at once) or the balance metric."""
        applied = await coordinator.update_resource(await request_id(request), name,
                                                    **body.model_dump(exclude_unset=True))
        return ctx.written(applied)

    @app.delete("/v1/resources/{name}", dependencies=[needs(P.OPERATE)],
                tags=["resources"], response_model=r.ResourceDeletedAnswer)
    @leading
    async def delete_resource(name: ResourceName, request: Request) -> Response:
        applied = await coordinator.delete_resource(await request_id(request), name)
        return ctx.written(applied)

    @app.post("/v1/resources/{name}/partitions/{partition}/move", dependencies=[needs(P.OPERATE)],
              tags=["resources"],
                 response_model=r.PartitionWritten)
    @leading
    async def move_partition(name: ResourceName, partition: PartitionIndex, body: PartitionMove,
                             request: Request) -> Response:
        """Move the replica on ``from`` to ``to``: at once, or two-phase (``two_phase``: the
        answer is the pending move; the move completes when ``to`` reports caught up)."""
        if body.two_phase:
            applied = await coordinator.start_move(await request_id(request), name, partition,
                                                   body.from_node, body.to_node, "operator")
        else:
            applied = await coordinator.move_partition(await request_id(request), name, partition,
                                                       body.from_node, body.to_node)
        return ctx.written(applied)

    @app.post("/v1/resources/{name}/partitions/{partition}/leader", dependencies=[needs(P.OPERATE)],
              tags=["resources"],
                 response_model=r.PartitionWritten)
    @leading
    async def set_partition_leader(name: ResourceName, partition: PartitionIndex,
                                   body: PartitionLeader, request: Request) -> Response:
        """Hand the partition's leadership to one of its replicas on an up node; the epoch grows."""
        applied = await coordinator.set_partition_leader(await request_id(request), name,
                                                         partition, body.node)
        return ctx.written(applied)

    @app.delete("/v1/resources/{name}/partitions/{partition}/move", dependencies=[needs(P.OPERATE)],
                tags=["resources"],
                   response_model=r.PartitionWritten)
    @leading
    async def cancel_move(name: ResourceName, partition: PartitionIndex, request: Request) -> Response:
        """Abandon the partition's pending move (the copy being made is dropped)."""
        applied = await coordinator.cancel_move(await request_id(request), name, partition,
                                                "operator")
        return ctx.written(applied)

