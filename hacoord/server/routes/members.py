"""The coordinator's own members: who they are and where to reach them, so that a client given
one live endpoint finds the others; and adding or removing one, online (see
:mod:`hacoord.replication.membership` for the rules)."""

from typing import Annotated

from fastapi import FastAPI, Path, Request, Response

from hacoord.protocol import responses as r
from hacoord.protocol.formats import ID
from hacoord.protocol.requests import MemberAdd
from hacoord.replication.base import MemberInfo
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import ApiContext

MemberId = Annotated[str, Path(pattern=ID, description="a coordinator member's id")]


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator, coordinator, leading = ctx.replicator, ctx.coordinator, ctx.leading

    def members_body() -> dict[str, object]:
        leader = replicator.leader_id()
        members = [{"id": m.id, "api_url": m.api_url, "raft_address": m.raft_address,
                    "leader": m.id == leader} for m in sorted(replicator.members.values(),
                                                              key=lambda m: m.id)]
        return {"revision": replicator.state.revision, "member": replicator.member_id,
                "leader": leader, "members": members}

    @app.get("/v1/members", dependencies=[needs(P.ROUTE)], tags=["members"],
             response_model=r.MemberList)
    async def list_members() -> Response:
        """Every coordinator member as this member knows them: its id, API URL and Raft
        address, and which one it believes leads (``leader``, None when it knows of none).
        Answered from the membership in force on this member (the latest in its log), without
        asking the others; the client library reads it to learn every endpoint from any one."""
        return ctx.reply(members_body())

    @app.post("/v1/members", dependencies=[needs(P.ADMIN)], tags=["members"], status_code=201,
              response_model=r.MembershipChanged,
              responses={200: {"model": r.MembershipChanged,
                               "description": "already a member: nothing changed"}})
    @leading
    async def add_member(body: MemberAdd, request: Request) -> Response:
        """Add a coordinator member. Start it first, with an empty data directory and the
        current members as its peers: once added it catches up from the leader (a snapshot,
        then the log). It counts toward the quorum from the moment the change is in the
        leader's log, so the leader first connects to it (refused if it does not answer on its
        Raft port within 2 s), and refuses unless the members it reaches are a majority of the
        new membership (remove an unreachable member first). One change at a time; answered
        once the change is committed. Asking again for a member already added answers
        ``changed: false``."""
        added = MemberInfo(body.id, body.raft_address, body.api_url)
        changed = await coordinator.change_members(add=added)
        return ctx.reply({**members_body(), "changed": changed}, 201 if changed else 200)

    @app.delete("/v1/members/{member_id}", dependencies=[needs(P.ADMIN)], tags=["members"],
                response_model=r.MembershipChanged)
    @leading
    async def remove_member(member_id: MemberId, request: Request) -> Response:
        """Remove a coordinator member (to replace a dead one: remove it, then add its
        successor). Answered once the change is committed; the removed member takes no part
        from then on, and should be stopped. The leader itself is removed by handing over
        first: it answers ``not_leader`` and the client library retries at the next leader.
        Removing a member that is not one answers ``changed: false``."""
        changed = await coordinator.change_members(remove=member_id)
        return ctx.reply({**members_body(), "changed": changed})
