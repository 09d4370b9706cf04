"""The audit trail: who changed what, read from the change feed (every event carries who made
it: the token's name and role, the source address and the forwarding member, the command and
its request id). Kept as long as the change feed keeps events; older is answered ``compacted``."""

from typing import Any

from fastapi import FastAPI, Query, Response

from hacoord.protocol import responses as r
from hacoord.replication.feed import HistoryCompacted
from hacoord.server.auth import Permission as P
from hacoord.server.auth import needs
from hacoord.server.context import MAX_REVISION, ApiContext
from hacoord.server.errors import ErrorReply


def install(app: FastAPI, ctx: ApiContext) -> None:
    """Add this area's routes to ``app``."""
    replicator = ctx.replicator

    @app.get("/v1/audit", dependencies=[needs(P.READ)], tags=["audit"], response_model=r.AuditTrail)
    async def audit(since: int = Query(0, ge=0, le=MAX_REVISION, description=(
                        "list the changes after this revision")),
                    limit: int = Query(1000, ge=1, le=10_000)) -> Response:
        """Who made each change after revision ``since``, oldest first: one entry per revision
        (the command, its request id and time, the token's name and role or "system" for the
        leader's own decisions, the source address, the forwarding member) with the kinds of
        change it made. 410 ``compacted`` beyond the kept history."""
        ctx.loaded()
        try:
            events = replicator.feed.since(since, limit)
        except HistoryCompacted as exc:
            raise ErrorReply("compacted", str(exc), status=410) from None
        return ctx.reply({"revision": replicator.state.revision, "since": since,
                          "entries": _entries(events)})


def _entries(events: list[Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for event in events:
        if entries and entries[-1]["revision"] == event.revision:
            entries[-1]["changes"].append(event.type)
            continue
        entries.append({"revision": event.revision, **(event.audit or {}), "changes": [event.type]})
    return entries
