"""The change feed (long polls), the routing table now and as of a past revision, and what
changed between two revisions."""

from typing import Any

from fastapi import FastAPI, Query, Request, Response

from hacoord.protocol import responses as r
from hacoord.replication.feed import HistoryCompacted
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import MAX_REVISION, ApiContext
from hacoord.server.errors import ErrorReply
from hacoord.server.views import routing, routing_from

#: Partitions a watch page carries at most (whole revisions: a page holds at least one); the
#: slices of a resource of 100,000 partitions take several pages.
WATCH_PAGE_PARTITIONS = 10_000


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator = ctx.replicator

    @app.get("/v1/watch", dependencies=[needs(P.ROUTE)], tags=["watch"], response_model=r.Watched)
    async def watch(since: int | None = Query(None, ge=0, le=MAX_REVISION, description=(
                        "last revision seen (a lagging member waits until it gets there)")),
                    timeout: float = Query(25.0, ge=0, le=60, description="seconds to wait"),
                    limit: int = Query(1000, ge=1, le=10_000)) -> Response:
        """Long poll: the events after revision ``since`` (whole revisions, in order), waiting up
        to ``timeout`` seconds for one. Without ``since``, from the current revision. A revision
        older than this member keeps is answered 410 ``compacted``: re-read the state (its
        revision) and watch from there."""
        ctx.loaded()
        feed = replicator.feed
        start = replicator.state.revision if since is None else since
        ctx.watching += 1
        try:
            await feed.wait(start, timeout)
        finally:
            ctx.watching -= 1
        try:
            events = feed.since(start, limit, max_partitions=WATCH_PAGE_PARTITIONS)
        except HistoryCompacted as exc:
            raise ErrorReply("compacted", str(exc), status=410) from None
        return ctx.reply({"revision": replicator.state.revision, "since": start,
                          "events": [e.to_dict() for e in events]})

    @app.get("/v1/routing", dependencies=[needs(P.ROUTE)], tags=["routing"], response_model=r.Routing)
    @ctx.reading
    async def get_routing(request: Request, consistent: bool = False,
                          resource: str | None = Query(None),
                          revision: int | None = Query(None, ge=0, le=MAX_REVISION, description=(
                              "as of this past revision (within the kept history)"))) -> Response:
        """Routing table: partition -> replicas, leader, fencing epoch; with the revision. With
        ``revision``, as it was then (410 ``compacted`` if older than this member keeps)."""
        state = replicator.state
        if revision is not None and revision != state.revision:
            if revision > state.revision:
                raise ctx.not_reached(revision, state.revision)
            try:
                past = replicator.feed.routing_at(revision)
            except HistoryCompacted as exc:
                raise ErrorReply("compacted", str(exc), status=410) from None
            if resource is not None and resource not in past:
                raise ErrorReply("not_found", f"no resource {resource!r} at revision {revision}")
            return await ctx.reply_heavy(("routing", resource, revision), routing_from, past,
                                         state, revision, resource)
        if resource is not None and resource not in state.resources:
            raise ErrorReply("not_found", f"unknown resource {resource!r}")
        return await ctx.reply_heavy(("routing", resource), routing, state, resource)

    @app.get("/v1/routing/diff", dependencies=[needs(P.ROUTE)],
             tags=["routing"], response_model=r.RoutingDiff)
    async def routing_diff(since: int = Query(alias="from", ge=0, le=MAX_REVISION),
                           until: int | None = Query(None, alias="to", ge=0,
                                                     le=MAX_REVISION)) -> Response:
        """Partitions whose replicas, leader or epoch differ between revisions ``from`` and ``to``
        (default: now), each with its before and after; ``from`` may be the later one."""
        ctx.loaded()
        current = replicator.state.revision
        until = current if until is None else until
        if max(since, until) > current:
            raise ctx.not_reached(max(since, until), current)
        feed = replicator.feed
        if min(since, until) < feed.floor:
            raise ErrorReply("compacted", str(HistoryCompacted(min(since, until), feed.floor)), status=410)
        return await ctx.reply_heavy(("diff", since, until), _diff_body, feed, since, until,
                                     current)



def _diff_body(feed: Any, since: int, until: int, current: int) -> dict[str, Any]:
    return {"revision": current, "from": since, "to": until, "changes": feed.diff(since, until)}
