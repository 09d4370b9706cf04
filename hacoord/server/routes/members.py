"""The coordinator's own members: who they are and where to reach them, so that a client given
one live endpoint finds the others."""

from fastapi import FastAPI, Response

from hacoord.protocol import responses as r
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator = ctx.replicator

    @app.get("/v1/members", dependencies=[needs(P.ROUTE)], tags=["status"],
             response_model=r.MemberList)
    async def list_members() -> Response:
        """Every coordinator member as this member knows them: its id, API URL and Raft
        address, and which one it believes leads (``leader``, None when it knows of none).
        Answered from the member's own configuration, without asking the others; the client
        library reads it to learn every endpoint from any one."""
        leader = replicator.leader_id()
        members = [{"id": m.id, "api_url": m.api_url, "raft_address": m.raft_address,
                    "leader": m.id == leader} for m in sorted(replicator.members.values(),
                                                              key=lambda m: m.id)]
        return ctx.reply({"revision": replicator.state.revision, "member": replicator.member_id,
                          "leader": leader, "members": members})
