"""Backups: the whole state at one revision, as one checksummed file (:mod:`hacoord.core.backup`)."""

from fastapi import FastAPI, Request, Response

from hacoord.core.backup import encode_backup
from hacoord.core.model import ClusterState
from hacoord.protocol import REVISION_HEADER
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext
from hacoord.server.offload import offload

MEDIA_TYPE = "application/vnd.hacoord.backup"


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator = ctx.replicator

    @app.get("/v1/backup", dependencies=[needs(P.ADMIN)], tags=["status"],
             response_class=Response,
             responses={200: {"content": {MEDIA_TYPE: {"schema": {"type": "string",
                                                                   "format": "binary"}}},
                              "description": "the backup file (see hacoord.core.backup)"}})
    async def backup(request: Request) -> Response:
        """A backup of the whole state: every write acknowledged before the request is in it
        (a consistent read: any member, once the leader confirmed a read index). The file is
        compressed and checksummed and names its revision, cluster id, state digest and
        schema; ``hacoord restore`` builds a new cluster from it. It holds the API tokens'
        digests, hence admin only. Encoded off the event loop when the state is large."""
        if (fwd := await ctx.read_point(request, consistent=True)) is not None:
            return fwd
        state = replicator.state
        # Always in a child: nodes, tokens and remembered requests weigh too, not only
        # partitions (20,000 nodes and request ids took 332 ms inline).
        revision, cluster_id, data = await offload(_encode, state, inline_below=0,
                                                   name="encode backup")
        name = f"hacoord-{cluster_id or 'unnamed'}-{revision}.backup"
        return Response(data, media_type=MEDIA_TYPE,
                        headers={REVISION_HEADER: str(revision),
                                 "content-disposition": f'attachment; filename="{name}"'})


def _encode(state: ClusterState) -> tuple[int, str, bytes]:
    """The backup with the revision and id it holds (the state may move on meanwhile: these
    are taken with it, in the same place)."""
    return state.revision, state.cluster_id, encode_backup(state)
